package redisstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

func wantCalls(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: calls %q, want %q", what, got, want)
	} else {
		t.Logf("%s: %d round trip(s): %s", what, len(got), strings.Join(got, ", "))
	}
}

// TestRoundTrips counts, with a go-redis hook, the calls each store
// operation makes on a standalone server: a hit is one MGET, a miss that
// MGET and a script, every other operation a single script.
func TestRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	rec := new(calls)
	client.AddHook(rec)
	s := newStore(t, client)
	ctx := t.Context()
	warm(t, s)
	rec.take()

	req := store.LookupRequest{Lease: 7, LeaseTTL: time.Minute}
	lk, err := s.Lookup(ctx, "rt:k", req)
	if err != nil || !lk.Lease {
		t.Fatalf("miss: %+v, %v", lk, err)
	}
	wantCalls(t, "miss (lease + ticket)", rec.take(), "mget", "lookup")

	if _, err := s.Lookup(ctx, "rt:k", store.LookupRequest{Lease: 8, LeaseTTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "miss (wait: lease held)", rec.take(), "mget", "lookup")

	ok, err := s.Fill(ctx, "rt:k", &store.Fill{Value: []byte("v"), Ticket: lk.Ticket, Lease: 7, TTL: time.Minute,
		Tags: []string{"rt-a", "rt-b"}, Stale: time.Minute})
	if err != nil || !ok {
		t.Fatalf("fill: %v, %v", ok, err)
	}
	wantCalls(t, "fill (2 tags)", rec.take(), "fill")

	if lk, err = s.Lookup(ctx, "rt:k", req); err != nil || lk.State != store.StateFresh {
		t.Fatalf("hit: %+v, %v", lk, err)
	}
	wantCalls(t, "hit (2 tags checked)", rec.take(), "mget")

	if err := s.Invalidate(ctx, store.Invalidation{Keys: []string{"rt:k", "rt:x"}, Tags: []string{"rt-a"}}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "invalidate (2 keys, 1 tag)", rec.take(), "invalidate")

	if err := s.Release(ctx, "rt:k", 7); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "release", rec.take(), "release")
}

// warm runs every script once on s's server, so that later calls find
// them cached (EVALSHA, not NOSCRIPT then EVAL), and verifies the servers
// (see redisstore.CheckServers), so that hits are MGETs.
func warm(t testing.TB, s *redisstore.Store) {
	t.Helper()
	ctx := context.Background()
	defer func() {
		if err := redisstore.CheckServers(ctx, s); err != nil {
			t.Fatal(err)
		}
	}()
	lk, err := s.Lookup(ctx, "warm:k", store.LookupRequest{Lease: 1, LeaseTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fill(ctx, "warm:k", &store.Fill{Value: []byte("x"), Ticket: lk.Ticket, TTL: time.Second, Tags: []string{"warm-t"}, Set: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, "warm:k", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Invalidate(ctx, store.Invalidation{Keys: []string{"warm:k"}, Tags: []string{"warm-t"}}); err != nil {
		t.Fatal(err)
	}
}

// TestCacheRoundTrips counts the calls of Gets through a Cache: a warm hit
// is one MGET; a cold Get is the MGET, one lookup and one fill; a stampede
// of one process on a cold key asks Redis once.
func TestCacheRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	rec := new(calls)
	client.AddHook(rec)
	s := newStore(t, client)
	warm(t, s)
	c := newCache(t, s)
	l := newLoader(t, c, "art", paddock.Beta(0))
	ctx := t.Context()
	rec.take()

	load := func(context.Context) (string, error) { return strings.Repeat("x", 1024), nil }
	if _, err := l.Get(ctx, "1", load); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "cold Get", rec.take(), "mget", "lookup", "fill")
	for range 3 {
		r, err := l.Fetch(ctx, "1", load)
		if err != nil || r.Status != paddock.StatusHit {
			t.Fatalf("warm Get: %v, %v", r.Status, err)
		}
		wantCalls(t, "warm Get", rec.take(), "mget")
	}

	// A stampede of 64 callers in one process on a cold key.
	const callers = 64
	var (
		loads   atomic.Int64
		entered sync.WaitGroup
		release = make(gate)
		wg      sync.WaitGroup
		status  = make([]paddock.Status, callers)
	)
	entered.Add(callers)
	for i := range callers {
		wg.Go(func() {
			entered.Done()
			r, err := l.Fetch(ctx, "2", func(ctx context.Context) (string, error) {
				loads.Add(1)
				return "v2", release.wait(ctx)
			})
			if err != nil || r.Value != "v2" {
				t.Errorf("caller %d: %q, %v", i, r.Value, err)
			}
			status[i] = r.Status
		})
	}
	entered.Wait()
	release.open()
	wg.Wait()
	if loads.Load() != 1 {
		t.Fatalf("stampede: %d loads, want 1", loads.Load())
	}
	// Callers that joined the process's flight made no call; one that came
	// after the load finished looked up for itself and hit.
	var hits int
	for _, st := range status {
		if st == paddock.StatusHit {
			hits++
		}
	}
	got := rec.take()
	count := map[string]int{}
	for _, c := range got {
		count[c]++
	}
	if count["mget"] != 1+hits || count["lookup"] != 1 || count["fill"] != 1 || len(got) != hits+3 {
		t.Fatalf("stampede of %d callers (%d late hits): calls %q, want %d MGETs, one lookup and one fill", callers, hits, got, 1+hits)
	}
	t.Logf("stampede of %d callers in one process: %d load, %d round trips (%d late hits)", callers, loads.Load(), len(got), hits)
}

// TestCacheGetManyRoundTrips counts the calls of GetMany through a Cache on
// a standalone server: one pipeline of MGETs when warm; that one, one of
// lookups and one of fills when cold, each key still fenced by its own
// ticket.
func TestCacheGetManyRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	rec := new(calls)
	client.AddHook(rec)
	s := newStore(t, client)
	warm(t, s)
	c := newCache(t, s)
	l := newLoader(t, c, "gm", paddock.Beta(0))
	ctx := t.Context()
	const n = 50
	keys, full := make([]string, n), make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint(i)
		full[i] = l.Key(keys[i])
	}
	warmPipelines(t, s, full)
	rec.take()

	var loads atomic.Int64
	load := func(ctx context.Context, keys []string) (map[string]string, error) {
		loads.Add(1)
		paddock.Tag(ctx, "gm-all")
		m := make(map[string]string, len(keys))
		for _, k := range keys {
			if k != "7" { // 7 does not exist: a negative entry
				m[k] = "v" + k
			}
		}
		return m, nil
	}
	got, err := l.GetMany(ctx, keys, load)
	if err != nil || len(got) != n-1 || got["3"] != "v3" || loads.Load() != 1 {
		t.Fatalf("cold GetMany: %d values, %v, %d loads", len(got), err, loads.Load())
	}
	calls := rec.take()
	if len(calls) != 3 {
		t.Fatalf("cold GetMany of 50 keys: calls %q, want the MGETs, the lookups and the fills, one pipeline each", calls)
	}
	wantPipeline(t, "cold GetMany of 50 keys: MGETs", calls[:1], "mget", n)
	wantPipeline(t, "cold GetMany of 50 keys: lookups", calls[1:2], "lookup", n)
	wantPipeline(t, "cold GetMany of 50 keys: fills", calls[2:], "fill", n)
	got, err = l.GetMany(ctx, keys, load)
	if err != nil || len(got) != n-1 || loads.Load() != 1 {
		t.Fatalf("warm GetMany: %d values, %v, %d loads", len(got), err, loads.Load())
	}
	wantPipeline(t, "warm GetMany of 50 keys", rec.take(), "mget", n)
}
