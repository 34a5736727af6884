package memstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/store"
)

// TestBatchErrors: a bad key or request in a batch is that key's error,
// the same as the single call's; the other keys go on. A batch whose
// slices do not match is an error for every key.
func TestBatchErrors(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	long := strings.Repeat("k", 65518)
	lease := store.LookupRequest{Lease: 1, LeaseTTL: time.Hour}

	keys := []string{"a", "no-ttl", "c"}
	lks, errs := s.LookupMany(ctx, keys, []store.LookupRequest{lease, {Lease: 1}, lease})
	_, single := s.Lookup(ctx, "no-ttl", store.LookupRequest{Lease: 1})
	if len(errs) != 3 || errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], paddock.ErrInvalidOption) ||
		errs[1].Error() != single.Error() {
		t.Fatalf("LookupMany with a lease without a TTL: %v; want %q for that key only", errs, single)
	}
	if !lks[0].Lease || !lks[2].Lease {
		t.Fatalf("LookupMany: the good keys were not granted their leases: %+v", lks)
	}

	keys = []string{"a", long, "nil", "negative", "c"}
	fills := []*store.Fill{
		{Value: []byte("a"), Ticket: lks[0].Ticket, Lease: 1, TTL: time.Hour},
		{Value: []byte("v"), Ticket: lks[0].Ticket, TTL: time.Hour},
		nil,
		{Negative: true, Value: []byte("x"), Ticket: lks[0].Ticket, TTL: time.Hour},
		{Value: []byte("c"), Ticket: lks[2].Ticket, Lease: 1, TTL: time.Hour},
	}
	ok, errs := s.FillMany(ctx, keys, fills)
	if len(errs) != len(keys) || errs[0] != nil || errs[4] != nil || !ok[0] || !ok[4] {
		t.Fatalf("FillMany: %v, %v; want the good keys accepted", ok, errs)
	}
	for i := 1; i <= 3; i++ {
		_, want := s.Fill(ctx, keys[i], fills[i])
		if ok[i] || !errors.Is(errs[i], paddock.ErrInvalidOption) || errs[i].Error() != want.Error() {
			t.Errorf("FillMany: key %.10q: %v, %v; want false, %q", keys[i], ok[i], errs[i], want)
		}
	}

	_, errs = s.LookupMany(ctx, []string{"a", "b"}, []store.LookupRequest{lease})
	if len(errs) != 2 || !errors.Is(errs[0], paddock.ErrInvalidOption) || !errors.Is(errs[1], paddock.ErrInvalidOption) {
		t.Errorf("LookupMany of 2 keys with 1 request: %v; want ErrInvalidOption for both", errs)
	}
	_, errs = s.FillMany(ctx, []string{"a"}, nil)
	if len(errs) != 1 || !errors.Is(errs[0], paddock.ErrInvalidOption) {
		t.Errorf("FillMany of 1 key with no fill: %v; want ErrInvalidOption", errs)
	}
	if lks, errs := s.LookupMany(ctx, []string{"a", "c"}, []store.LookupRequest{{}, {}}); errs != nil || len(lks) != 2 {
		t.Errorf("LookupMany that succeeds: %d lookups, errors %v; want 2 and nil", len(lks), errs)
	}
}

// TestBatchIgnoresContext: like the single calls, the batch calls never
// wait, so they ignore their context, even one that has ended.
func TestBatchIgnoresContext(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	keys := []string{"a", "b"}
	lks, errs := s.LookupMany(ctx, keys, []store.LookupRequest{{Lease: 1, LeaseTTL: time.Hour}, {Lease: 2, LeaseTTL: time.Hour}})
	if errs != nil || !lks[0].Lease || !lks[1].Lease {
		t.Fatalf("LookupMany with an ended context: %+v, %v", lks, errs)
	}
	ok, errs := s.FillMany(ctx, keys, []*store.Fill{
		{Value: []byte("a"), Ticket: lks[0].Ticket, Lease: 1, TTL: time.Hour},
		{Value: []byte("b"), Ticket: lks[1].Ticket, Lease: 2, TTL: time.Hour},
	})
	if errs != nil || !ok[0] || !ok[1] {
		t.Fatalf("FillMany with an ended context: %v, %v", ok, errs)
	}
}

// TestBatchAllocs: a batch allocates what its lookups allocate, plus the
// slice of answers.
func TestBatchAllocs(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	const n = 50
	keys := make([]string, n)
	reqs := make([]store.LookupRequest, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
		reqs[i] = store.LookupRequest{Lease: 1, LeaseTTL: time.Hour}
		r := leaseOf(t, s, keys[i], 1)
		fill(t, s, keys[i], &store.Fill{Value: []byte("v"), Ticket: r.Ticket, Lease: 1, TTL: time.Hour})
	}
	one := testing.AllocsPerRun(100, func() {
		if _, err := s.Lookup(ctx, keys[0], reqs[0]); err != nil {
			t.Fatal(err)
		}
	})
	many := testing.AllocsPerRun(100, func() {
		if _, errs := s.LookupMany(ctx, keys, reqs); errs != nil {
			t.Fatal(errs)
		}
	})
	t.Logf("Lookup of a hit: %v allocations; LookupMany of %d hits: %v", one, n, many)
	if many > n*one+1 {
		t.Errorf("LookupMany of %d hits made %v allocations, more than %d Lookups (%v each) and one slice", n, many, n, one)
	}
}
