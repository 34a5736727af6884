package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paddockcache/paddock/store"
)

// RunBatched runs the suite with every Lookup and Fill of the store made
// through its [store.Batcher] instead: LookupMany and FillMany of the key
// under test together with another key. Each key of a batch must get the
// answer it would get alone, so the whole suite holds through the batch.
// It skips the subtests if the store does not implement store.Batcher.
func RunBatched(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Helper()
	run(t, func(t *testing.T) Harness {
		h := newHarness(t)
		b, ok := h.Store.(batcher)
		if !ok {
			_ = h.Store.Close()
			t.Skip("storetest: the store does not implement store.Batcher")
		}
		h.Store = Batched(b)
		return h
	}, true)
}

type batcher interface {
	store.Store
	store.Batcher
}

// Batched returns a Store whose Lookup and Fill go through the LookupMany
// and FillMany of b, each in a batch with a bystander key of its own (the
// key with "/bystander" appended); its other methods are b's, and it does
// not implement store.Batcher itself. [RunBatched] runs the suite on it;
// a store's own tests may run theirs through it as well.
func Batched(b interface {
	store.Store
	store.Batcher
}) store.Store {
	return &batched{Store: b, b: b}
}

// batched makes each Lookup and Fill of a store a batch of two keys: the
// key asked for and a bystander of its own.
type batched struct {
	store.Store
	b store.Batcher
}

func bystander(key string) string { return key + "/bystander" }

func (w *batched) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	keys := []string{key, bystander(key)}
	lks, errs := w.b.LookupMany(ctx, keys, []store.LookupRequest{req, {}})
	if err := batchShape("LookupMany", len(keys), len(lks), errs); err != nil {
		return store.Lookup{}, err
	}
	if err := errAt(errs, 0); err != nil {
		return store.Lookup{}, err
	}
	if err := errAt(errs, 1); err != nil {
		return store.Lookup{}, fmt.Errorf("storetest: LookupMany failed the bystander of %q only: %w", key, err)
	}
	return lks[0], nil
}

func (w *batched) Fill(ctx context.Context, key string, f *store.Fill) (bool, error) {
	keys := []string{bystander(key), key}
	by := &store.Fill{Value: []byte("bystander"), Tags: f.Tags, Ticket: f.Ticket, TTL: time.Minute}
	ok, errs := w.b.FillMany(ctx, keys, []*store.Fill{by, f})
	if err := batchShape("FillMany", len(keys), len(ok), errs); err != nil {
		return false, err
	}
	if err := errAt(errs, 1); err != nil {
		return ok[1], err
	}
	if err := errAt(errs, 0); err != nil {
		return false, fmt.Errorf("storetest: FillMany failed the bystander of %q only: %w", key, err)
	}
	return ok[1], nil
}

// batchShape checks the shape of a Batcher's answer: one result per key,
// and nil errs or one error per key.
func batchShape(op string, keys, results int, errs []error) error {
	if results != keys {
		return fmt.Errorf("storetest: %s of %d keys returned %d results", op, keys, results)
	}
	if errs != nil && len(errs) != keys {
		return fmt.Errorf("storetest: %s of %d keys returned %d errors, want nil or %d", op, keys, len(errs), keys)
	}
	return nil
}

func errAt(errs []error, i int) error {
	if errs == nil {
		return nil
	}
	return errs[i]
}

func (s *suite) batcher() store.Batcher { return s.h.Store.(store.Batcher) }

// lookupMany looks keys up in one batch, failing the test on any error.
func (s *suite) lookupMany(keys []string, reqs []store.LookupRequest) []store.Lookup {
	s.t.Helper()
	lks, errs := s.batcher().LookupMany(s.ctx, keys, reqs)
	if err := batchShape("LookupMany", len(keys), len(lks), errs); err != nil {
		s.t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			s.t.Fatalf("LookupMany: key %q: %v", keys[i], err)
		}
	}
	for i, r := range lks {
		s.wellFormed(keys[i], reqs[i], r)
	}
	return lks
}

func testFillTooLarge(s *suite) {
	k := s.key("k")
	r := s.lease(k, 1)
	ok, err := s.h.Store.Fill(s.ctx, k, loaded(strings.Repeat("x", s.h.TooLarge), r.Ticket, 1))
	if ok || !errors.Is(err, store.ErrTooLarge) {
		s.t.Fatalf("Fill of %d bytes = %v, %v; want false, ErrTooLarge", s.h.TooLarge, ok, err)
	}
	// Nothing stored, and the lease is given back.
	h := s.lease(k, 2)
	s.want(h, store.StateMiss, true, false)
	s.wantNoEntry(h)
}

// testSetTooLarge: a Set whose value the store cannot take still replaces
// the key's entry (it follows a write to the source of truth, so the old
// entry holds the value it replaced) and advances the key's version as an
// invalidation would, so that a load that began before it cannot fill.
func testSetTooLarge(s *suite) {
	k := s.key("k")
	r := s.lease(k, 1)
	s.mustFill(k, loaded("old", r.Ticket, 1))
	inFlight := s.peek(k) // a load of k that began before the Set
	w := s.peek(k)
	ok, err := s.h.Store.Fill(s.ctx, k, &store.Fill{Value: []byte(strings.Repeat("x", s.h.TooLarge)), Ticket: w.Ticket, TTL: ttl, Set: true})
	if ok || !errors.Is(err, store.ErrTooLarge) {
		s.t.Fatalf("Set of %d bytes = %v, %v; want false, ErrTooLarge", s.h.TooLarge, ok, err)
	}
	h := s.peek(k)
	s.wantNoEntry(h)
	// The load that began before the Set is refused: the version moved.
	s.mustRefuse(k, loaded("old", inFlight.Ticket, 0))
	s.wantNoEntry(s.peek(k))
}

// testLookupMany looks up keys in many states, twice each: one key alone,
// one of the same state in a batch with all the others. Each batch answer
// must be what Lookup answers, and each lease asked for must be granted
// (or found held) per key.
func testLookupMany(s *suite) {
	type lookupCase struct {
		name string
		prep func(key, tag string) // brings key into the case's state
		req  store.LookupRequest   // Lease is set per key
		want func(store.Lookup)
	}
	fillEarly := func(value string, negative bool, early time.Duration) func(key, tag string) {
		return func(key, tag string) {
			r := s.lease(key, 1)
			f := loaded(value, r.Ticket, 1, tag)
			if negative {
				f.Value, f.Negative = nil, true
			}
			f.Early = early
			s.mustFill(key, f)
		}
	}
	fill := func(value string, negative bool) func(key, tag string) { return fillEarly(value, negative, 0) }
	then := func(first func(key, tag string), inv func(key, tag string) store.Invalidation) func(key, tag string) {
		return func(key, tag string) {
			first(key, tag)
			s.invalidate(inv(key, tag))
		}
	}
	held := func(first func(key, tag string)) func(key, tag string) {
		return func(key, tag string) {
			if first != nil {
				first(key, tag)
			}
			s.lease(key, 99)
		}
	}
	softKey := func(key, _ string) store.Invalidation { return store.Invalidation{Keys: []string{key}, Soft: true} }
	hardTag := func(_, tag string) store.Invalidation { return store.Invalidation{Tags: []string{tag}} }
	softTag := func(_, tag string) store.Invalidation { return store.Invalidation{Tags: []string{tag}, Soft: true} }
	lease := store.LookupRequest{LeaseTTL: leaseTTL}
	cases := []lookupCase{
		{"miss", nil, lease, func(r store.Lookup) { s.want(r, store.StateMiss, true, false); s.wantNoEntry(r) }},
		{"miss-readonly", nil, store.LookupRequest{}, func(r store.Lookup) { s.want(r, store.StateMiss, false, false); s.wantNoEntry(r) }},
		{"held", held(nil), lease, func(r store.Lookup) { s.want(r, store.StateMiss, false, true); s.wantNoEntry(r) }},
		{"fresh", fill("v", false), lease, func(r store.Lookup) { s.want(r, store.StateFresh, false, false); s.wantValue(r, "v") }},
		{"fresh-readonly", fill("v", false), store.LookupRequest{}, func(r store.Lookup) { s.wantState(r, store.StateFresh, false); s.wantValue(r, "v") }},
		{"fresh-negative", fill("", true), lease, func(r store.Lookup) {
			s.want(r, store.StateFresh, false, false)
			if r.Entry == nil || !r.Entry.Negative {
				s.t.Fatalf("Lookup: Entry = %+v, want a negative entry", r.Entry)
			}
		}},
		// A lead of the whole TTL: due for early refresh from the fill on.
		{"fresh-early", fillEarly("v", false, ttl), store.LookupRequest{LeaseTTL: leaseTTL, Early: true}, func(r store.Lookup) {
			s.want(r, store.StateFresh, true, false)
			s.wantValue(r, "v")
		}},
		{"fresh-early-not-asked", fillEarly("v", false, ttl), lease, func(r store.Lookup) {
			s.want(r, store.StateFresh, false, false)
		}},
		{"fresh-not-early", fillEarly("v", false, time.Second), store.LookupRequest{LeaseTTL: leaseTTL, Early: true}, func(r store.Lookup) {
			s.want(r, store.StateFresh, false, false)
		}},
		{"stale", then(fill("v", false), softKey), lease, func(r store.Lookup) { s.want(r, store.StateStale, true, false); s.wantValue(r, "v") }},
		{"stale-held", held(then(fill("v", false), softKey)), lease, func(r store.Lookup) {
			s.want(r, store.StateStale, false, true)
			s.wantValue(r, "v")
		}},
		{"stale-readonly", then(fill("v", false), softKey), store.LookupRequest{}, func(r store.Lookup) {
			s.wantState(r, store.StateStale, false)
		}},
		{"tag-hard", then(fill("v", false), hardTag), lease, func(r store.Lookup) { s.want(r, store.StateMiss, true, false); s.wantNoEntry(r) }},
		{"tag-soft", then(fill("v", false), softTag), lease, func(r store.Lookup) { s.want(r, store.StateStale, true, false); s.wantValue(r, "v") }},
	}
	// The same state twice: "one" keys are looked up alone, "many" keys
	// in one batch. Every key has its own tag and its own token.
	var (
		keys []string
		reqs []store.LookupRequest
		one  []store.Lookup
	)
	for i, c := range cases {
		for _, side := range []string{"one", "many"} {
			if c.prep != nil {
				c.prep(s.key(side+":"+c.name), s.tag(side+":"+c.name))
			}
		}
		req := c.req
		if req.LeaseTTL != 0 {
			req.Lease = uint64(1000 + i)
		}
		one = append(one, s.lookup(s.key("one:"+c.name), req))
		if req.Lease != 0 {
			req.Lease = uint64(2000 + i)
		}
		keys, reqs = append(keys, s.key("many:"+c.name)), append(reqs, req)
	}
	many := s.lookupMany(keys, reqs)
	for i, c := range cases {
		a, b := one[i], many[i]
		func() {
			s.t.Helper()
			defer func() {
				if s.t.Failed() {
					s.t.Logf("case %q", c.name)
				}
			}()
			c.want(a)
			c.want(b)
		}()
		if a.State != b.State || a.Lease != b.Lease || a.Held != b.Held || a.Corrupt != b.Corrupt ||
			(a.Entry == nil) != (b.Entry == nil) {
			s.t.Errorf("%s: LookupMany = %+v, Lookup = %+v", c.name, b, a)
			continue
		}
		if a.Entry != nil {
			ea, eb := a.Entry, b.Entry
			if !bytes.Equal(ea.Value, eb.Value) || ea.Negative != eb.Negative || ea.LoadDuration != eb.LoadDuration ||
				len(ea.Tags) != len(eb.Tags) || ea.RefreshAt.IsZero() != eb.RefreshAt.IsZero() ||
				!ea.RefreshAt.IsZero() && !near(ea.Created.Add(eb.RefreshAt.Sub(eb.Created)), ea.RefreshAt) {
				s.t.Errorf("%s: LookupMany's entry %+v, Lookup's %+v", c.name, eb, ea)
			}
		}
	}
	// The leases granted in the batch are held, each by its own token
	// (which the same lookup renews); a batch lookup that was not granted
	// one left it free.
	for i, c := range cases {
		k := keys[i]
		switch {
		case many[i].Lease:
			if r := s.lookup(k, reqs[i]); !r.Lease || r.Held {
				s.t.Errorf("%s: the token granted the lease by LookupMany does not hold it: %+v", c.name, r)
			}
			r := s.lease(k, 3000)
			s.wantState(r, many[i].State, false)
			if !r.Held && r.State != store.StateFresh {
				s.t.Errorf("%s: the lease granted by LookupMany is not held", c.name)
			}
			s.release(k, reqs[i].Lease)
		case c.name == "miss-readonly":
			s.want(s.lease(k, 3000), store.StateMiss, true, false)
		}
	}
	// An empty batch.
	if lks, errs := s.batcher().LookupMany(s.ctx, nil, nil); len(lks) != 0 || len(errs) != 0 {
		s.t.Errorf("LookupMany of no keys = %v, %v", lks, errs)
	}
}

// testFillMany fills keys in one batch: those whose key or tag was
// invalidated after their ticket are refused, the others accepted, each
// lease is released, and a refused Set drops the older entry of its key.
func testFillMany(s *suite) {
	names := []string{"plain", "key-invalidated", "tag-invalidated", "shared-tag", "refused-set", "negative"}
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = s.key(n)
	}
	shared := s.tag("shared")
	if s.h.LosesVersions {
		// The tags of the fills that must be accepted get their
		// versions first: such a store refuses a fill whose ticket
		// predates a version it had to create (see Harness).
		warm := []string{shared}
		for _, n := range names {
			warm = append(warm, s.tag(n))
		}
		r := s.lease(s.key("warm"), 1)
		s.mustFill(s.key("warm"), loaded("warm", r.Ticket, 1, warm...))
	}
	// The refused Set's key holds an older entry, and its writer's
	// ticket is taken before the invalidation that refuses it.
	r := s.lease(keys[4], 1)
	s.mustFill(keys[4], loaded("old", r.Ticket, 1, s.tag("old")))
	w := s.peek(keys[4])

	fills := make([]*store.Fill, len(keys))
	for i, k := range keys {
		token := uint64(10 + i)
		switch names[i] {
		case "refused-set":
			fills[i] = &store.Fill{Value: []byte("new"), Tags: []string{s.tag("old"), s.tag("new")}, Ticket: w.Ticket, TTL: ttl, Set: true}
		case "negative":
			r := s.lease(k, token)
			fills[i] = &store.Fill{Negative: true, Ticket: r.Ticket, Lease: token, TTL: ttl, Tags: []string{shared}}
		default:
			r := s.lease(k, token)
			fills[i] = loaded(names[i], r.Ticket, token, shared, s.tag(names[i]))
		}
	}
	s.invalidate(store.Invalidation{Keys: []string{keys[1]}})
	s.invalidate(store.Invalidation{Tags: []string{s.tag("tag-invalidated"), s.tag("new")}})

	ok, errs := s.batcher().FillMany(s.ctx, keys, fills)
	if err := batchShape("FillMany", len(keys), len(ok), errs); err != nil {
		s.t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			s.t.Fatalf("FillMany: key %q: %v", keys[i], err)
		}
	}
	want := []bool{true, false, false, true, false, true}
	if !slices.Equal(ok, want) {
		s.t.Fatalf("FillMany of %q = %v, want %v", names, ok, want)
	}
	for i, k := range keys {
		h := s.peek(k)
		switch {
		case !want[i]:
			s.wantState(h, store.StateMiss, false)
			s.wantNoEntry(h)
		case names[i] == "negative":
			if h.Entry == nil || !h.Entry.Negative {
				s.t.Fatalf("negative: Entry = %+v, want a negative entry", h.Entry)
			}
		default:
			s.want(h, store.StateFresh, false, false)
			s.wantValue(h, names[i])
		}
	}
	// The refused fill released its lease: another caller loads at once.
	s.want(s.lease(keys[2], 99), store.StateMiss, true, false)
	// A later invalidation of the shared tag reaches every accepted key.
	s.invalidate(store.Invalidation{Tags: []string{shared}})
	for i, k := range keys {
		if want[i] {
			s.wantNoEntry(s.peek(k))
		}
	}
}

// testFillManyTooLarge: a value too large fails its key only, with
// ErrTooLarge, and gives its lease back.
func testFillManyTooLarge(s *suite) {
	keys := []string{s.key("a"), s.key("big"), s.key("c")}
	fills := make([]*store.Fill, len(keys))
	for i, k := range keys {
		token := uint64(i + 1)
		r := s.lease(k, token)
		fills[i] = loaded("v", r.Ticket, token)
	}
	fills[1].Value = []byte(strings.Repeat("x", s.h.TooLarge))
	ok, errs := s.batcher().FillMany(s.ctx, keys, fills)
	if err := batchShape("FillMany", len(keys), len(ok), errs); err != nil {
		s.t.Fatal(err)
	}
	if len(errs) != len(keys) || !errors.Is(errs[1], store.ErrTooLarge) {
		s.t.Fatalf("FillMany with a value of %d bytes: errors %v, want ErrTooLarge for %q", s.h.TooLarge, errs, keys[1])
	}
	if errs[0] != nil || errs[2] != nil || !ok[0] || ok[1] || !ok[2] {
		s.t.Fatalf("FillMany = %v, %v; want the other keys accepted", ok, errs)
	}
	s.wantValue(s.peek(keys[0]), "v")
	s.wantValue(s.peek(keys[2]), "v")
	h := s.lease(keys[1], 9)
	s.want(h, store.StateMiss, true, false)
	s.wantNoEntry(h)
}

func testBatchClose(s *suite) {
	s.closeStore = false
	if err := s.h.Store.Close(); err != nil {
		s.t.Fatalf("Close: %v", err)
	}
	keys := []string{s.key("a"), s.key("b"), s.key("c")}
	_, errs := s.batcher().LookupMany(s.ctx, keys, make([]store.LookupRequest, len(keys)))
	if len(errs) != len(keys) {
		s.t.Fatalf("LookupMany after Close: %d errors, want %d", len(errs), len(keys))
	}
	for i, err := range errs {
		if !errors.Is(err, store.ErrClosed) {
			s.t.Errorf("LookupMany after Close: key %q: %v, want ErrClosed", keys[i], err)
		}
	}
	fills := []*store.Fill{loaded("v", store.Ticket{}, 0), loaded("v", store.Ticket{}, 0), loaded("v", store.Ticket{}, 0)}
	ok, errs := s.batcher().FillMany(s.ctx, keys, fills)
	if len(errs) != len(keys) || len(ok) != len(keys) {
		s.t.Fatalf("FillMany after Close: %v, %v", ok, errs)
	}
	for i, err := range errs {
		if ok[i] || !errors.Is(err, store.ErrClosed) {
			s.t.Errorf("FillMany after Close: key %q: %v, %v; want false, ErrClosed", keys[i], ok[i], err)
		}
	}
}
