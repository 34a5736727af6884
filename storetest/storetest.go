// Package storetest checks that a [store.Store] keeps the contract
// written in paddock's store.go: leases, tickets, fenced fills,
// invalidations, time windows and epochs. Every store runs it from its
// tests, the way file systems run testing/fstest.TestFS:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Harness {
//			clock := newFakeClock()
//			s, err := memstore.New(memstore.Clock(clock.Now))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return storetest.Harness{Store: s, Advance: clock.Advance}
//		})
//	}
//
// The suite never sleeps and never uses testing/synctest: time moves only
// through [Harness.Advance], and every instant is read from [store.Lookup]
// Now, so a store whose clock is a server's (Redis TIME plus an offset)
// passes as well as one with a fake clock. Such a clock keeps running while
// the suite works; the suite keeps its durations long (minutes, hours)
// next to the milliseconds a test takes, and compares computed instants
// with a tolerance of [Tolerance].
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paddockcache/paddock/store"
)

// Tolerance is how far an instant the store computed (an entry's Created
// and windows) may be from the one the suite expects. It allows for stores
// that keep instants in milliseconds.
const Tolerance = time.Millisecond

// Harness is one fresh store under test plus the controls the suite needs.
type Harness struct {
	// Store is the store under test, empty, used by one subtest only. Run
	// closes it when the subtest ends: newHarness must not (it may register
	// cleanups of its own for what the store uses, such as a server; they
	// run after the store is closed).
	Store store.Store
	// Advance moves the store's clock forward by d (memstore: a fake clock
	// option; redis: a server-time offset option). If nil, the subtests
	// about time are skipped.
	Advance func(d time.Duration)
	// Flush, if non-nil, makes the store lose everything including
	// versions (Redis FLUSHALL / restart). Optional: when nil, the
	// subtest about lost versions is skipped.
	Flush func()
	// TooLarge is the length of a value the store refuses with
	// [store.ErrTooLarge] (its size limit plus one, or more). Optional:
	// when zero, the subtests about values too large are skipped.
	TooLarge int
	// LosesVersions says the store may lose a key's or tag's version
	// (memcached evicts items) and then recreates it above every ticket
	// issued before, since it cannot tell a version never written from
	// one evicted after an invalidation. Such a store may refuse a fill
	// whose ticket predates a version it had to recreate, even for a tag
	// that was never invalidated. It relaxes exactly that assertion: in
	// InvalidateTagFencesFill, an old load's fill that carries only a tag
	// not invalidated may be refused (if accepted, its value must be
	// served); and Batch/FillManyFencesPerKey gives its tags versions (a
	// fill of another key) before it takes the tickets whose fills it
	// wants accepted.
	LosesVersions bool
}

// Run runs the conformance suite. Each subtest gets a fresh harness from
// newHarness, called with the subtest's t. Subtests do not run in parallel
// with each other, so harnesses may share a server as long as each one
// starts empty. The subtests of [store.Batcher] run only if the store
// implements it.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Helper()
	run(t, newHarness, false)
}

func run(t *testing.T, newHarness func(t *testing.T) Harness, batched bool) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if h.Store == nil {
				t.Fatal("storetest: newHarness returned a nil Store")
			}
			s := &suite{t: t, h: h, ctx: t.Context(), closeStore: true}
			t.Cleanup(func() {
				if s.closeStore {
					if err := h.Store.Close(); err != nil {
						t.Errorf("Close: %v", err)
					}
				}
			})
			if tc.needs&needsAdvance != 0 && h.Advance == nil {
				t.Skip("storetest: Harness.Advance is nil")
			}
			if tc.needs&needsFlush != 0 && h.Flush == nil {
				t.Skip("storetest: Harness.Flush is nil")
			}
			if tc.needs&needsTooLarge != 0 && h.TooLarge <= 0 {
				t.Skip("storetest: Harness.TooLarge is zero")
			}
			if tc.needs&needsBatcher != 0 {
				if batched {
					t.Skip("storetest: Run checks the store's Batcher itself")
				}
				if _, ok := h.Store.(store.Batcher); !ok {
					t.Skip("storetest: the store does not implement store.Batcher")
				}
			}
			tc.run(s)
		})
	}
}

type needs uint8

const (
	needsAdvance needs = 1 << iota
	needsFlush
	needsTooLarge
	needsBatcher
)

var tests = []struct {
	name  string
	needs needs
	run   func(*suite)
}{
	{"MissGrantsLease", 0, testMissGrantsLease},
	{"SecondCallerIsHeld", 0, testSecondCallerIsHeld},
	{"ReadOnlyLookupTakesNoLease", 0, testReadOnlyLookup},
	{"FillThenFreshHit", 0, testFillThenFreshHit},
	{"FillCopiesValue", 0, testFillCopiesValue},
	{"FillReleasesLease", 0, testFillReleasesLease},
	{"FillReleasesOnlyItsLease", needsAdvance, testFillReleasesOnlyItsLease},
	{"InvalidateKeyDropsEntry", 0, testInvalidateKeyDropsEntry},
	{"InvalidateKeyFencesFill", 0, testInvalidateKeyFencesFill},
	{"InvalidateTagFencesFill", 0, testInvalidateTagFencesFill},
	{"HardTagInvalidationHidesEntry", 0, testHardTagInvalidation},
	{"SoftKeyInvalidation", 0, testSoftKeyInvalidation},
	{"SoftTagInvalidation", 0, testSoftTagInvalidation},
	{"InvalidateBreaksLease", 0, testInvalidateBreaksLease},
	{"TagInvalidationKeepsLease", 0, testTagInvalidationKeepsLease},
	{"SetBumpsVersion", 0, testSetBumpsVersion},
	{"RefusedSetDropsOlderEntry", 0, testRefusedSet},
	{"Release", 0, testRelease},
	{"LeaseExpiry", needsAdvance, testLeaseExpiry},
	{"ClockAdvances", needsAdvance, testClockAdvances},
	{"Windows", needsAdvance, testWindows},
	{"EarlyRefresh", 0, testEarlyRefresh},
	{"EarlyRefreshInstant", needsAdvance, testEarlyRefreshInstant},
	{"Negative", needsAdvance, testNegative},
	{"EpochMismatch", 0, testEpochMismatch},
	{"Flush", needsFlush, testFlush},
	{"Close", 0, testClose},
	{"ConcurrentLookupOneLease", 0, testConcurrentLookupOneLease},
	{"FillInvalidateOrdering", 0, testFillInvalidateOrdering},
	{"FillInvalidateRace", 0, testFillInvalidateRace},
	{"FillTooLarge", needsTooLarge, testFillTooLarge},
	{"SetTooLarge", needsTooLarge, testSetTooLarge},
	{"Batch/LookupManyAsLookup", needsBatcher, testLookupMany},
	{"Batch/FillManyFencesPerKey", needsBatcher, testFillMany},
	{"Batch/FillManyTooLarge", needsBatcher | needsTooLarge, testFillManyTooLarge},
	{"Batch/Close", needsBatcher, testBatchClose},
}

// suite is one subtest's view of the harness, with helpers that fail the
// test on a store error.
type suite struct {
	t          *testing.T
	h          Harness
	ctx        context.Context
	closeStore bool
}

const (
	leaseTTL = time.Hour
	ttl      = time.Hour
)

// key and tag name things in the namespace "storetest", distinct per
// subtest so that a harness sharing a server never mixes subtests.
func (s *suite) key(name string) string { return "storetest:" + s.t.Name() + ":" + name }
func (s *suite) tag(name string) string { return "storetest-tag:" + s.t.Name() + ":" + name }

func (s *suite) lookup(key string, req store.LookupRequest) store.Lookup {
	s.t.Helper()
	r, err := s.h.Store.Lookup(s.ctx, key, req)
	if err != nil {
		s.t.Fatalf("Lookup(%q, %+v): %v", key, req, err)
	}
	s.wellFormed(key, req, r)
	return r
}

// wellFormed checks what every answer of a lookup must satisfy.
func (s *suite) wellFormed(key string, req store.LookupRequest, r store.Lookup) {
	s.t.Helper()
	if r.Now.IsZero() {
		s.t.Fatalf("Lookup(%q): Now is zero", key)
	}
	if r.Entry == nil && r.State != store.StateMiss {
		s.t.Fatalf("Lookup(%q): State %v without an Entry", key, r.State)
	}
	if r.Lease && r.Held {
		s.t.Fatalf("Lookup(%q): both Lease and Held", key)
	}
	if r.Lease && req.Lease == 0 {
		s.t.Fatalf("Lookup(%q) with Lease 0 was granted the lease", key)
	}
}

// lease looks key up with token and its lease TTL.
func (s *suite) lease(key string, token uint64) store.Lookup {
	s.t.Helper()
	return s.lookup(key, store.LookupRequest{Lease: token, LeaseTTL: leaseTTL})
}

// peek looks key up without asking for the lease.
func (s *suite) peek(key string) store.Lookup {
	s.t.Helper()
	return s.lookup(key, store.LookupRequest{})
}

func (s *suite) fill(key string, f *store.Fill) bool {
	s.t.Helper()
	ok, err := s.h.Store.Fill(s.ctx, key, f)
	if err != nil {
		s.t.Fatalf("Fill(%q): %v", key, err)
	}
	return ok
}

func (s *suite) mustFill(key string, f *store.Fill) {
	s.t.Helper()
	if !s.fill(key, f) {
		s.t.Fatalf("Fill(%q) with ticket %+v was refused, want accepted", key, f.Ticket)
	}
}

func (s *suite) mustRefuse(key string, f *store.Fill) {
	s.t.Helper()
	if s.fill(key, f) {
		s.t.Fatalf("Fill(%q) with ticket %+v was accepted, want refused", key, f.Ticket)
	}
}

func (s *suite) invalidate(inv store.Invalidation) {
	s.t.Helper()
	if err := s.h.Store.Invalidate(s.ctx, inv); err != nil {
		s.t.Fatalf("Invalidate(%+v): %v", inv, err)
	}
}

func (s *suite) release(key string, token uint64) {
	s.t.Helper()
	if err := s.h.Store.Release(s.ctx, key, token); err != nil {
		s.t.Fatalf("Release(%q, %d): %v", key, token, err)
	}
}

// loaded returns a plain fill of value with ticket t and lease token.
func loaded(value string, t store.Ticket, token uint64, tags ...string) *store.Fill {
	return &store.Fill{
		Value:        []byte(value),
		Tags:         tags,
		Ticket:       t,
		Lease:        token,
		TTL:          ttl,
		Stale:        time.Hour,
		StaleIfError: 2 * time.Hour,
		LoadDuration: time.Second,
	}
}

// want checks the verdict of a lookup.
func (s *suite) want(r store.Lookup, state store.State, lease, held bool) {
	s.t.Helper()
	if r.State != state || r.Lease != lease || r.Held != held {
		s.t.Fatalf("Lookup = {State: %v, Lease: %v, Held: %v}, want {State: %v, Lease: %v, Held: %v}",
			r.State, r.Lease, r.Held, state, lease, held)
	}
}

// wantState checks a lookup's State and Lease but not Held: for read-only
// lookups and fresh entries the contract leaves open whether a store
// reports a lease that another caller holds.
func (s *suite) wantState(r store.Lookup, state store.State, lease bool) {
	s.t.Helper()
	if r.State != state || r.Lease != lease {
		s.t.Fatalf("Lookup = {State: %v, Lease: %v}, want {State: %v, Lease: %v}", r.State, r.Lease, state, lease)
	}
}

// wantValue checks that r carries a positive entry with value.
func (s *suite) wantValue(r store.Lookup, value string) {
	s.t.Helper()
	if r.Entry == nil {
		s.t.Fatalf("Lookup: Entry is nil, want value %q", value)
	}
	if r.Entry.Negative {
		s.t.Fatalf("Lookup: Entry is negative, want value %q", value)
	}
	if !bytes.Equal(r.Entry.Value, []byte(value)) {
		s.t.Fatalf("Lookup: Entry.Value = %q, want %q", r.Entry.Value, value)
	}
}

func (s *suite) wantNoEntry(r store.Lookup) {
	s.t.Helper()
	if r.Entry != nil {
		s.t.Fatalf("Lookup: Entry = %q (ticket %+v), want nil", r.Entry.Value, r.Entry.Ticket)
	}
}

func near(a, b time.Time) bool {
	d := a.Sub(b)
	return -Tolerance <= d && d <= Tolerance
}

func testMissGrantsLease(s *suite) {
	k := s.key("k")
	r := s.lease(k, 1)
	s.want(r, store.StateMiss, true, false)
	s.wantNoEntry(r)
	r2 := s.peek(k)
	if r2.Ticket.Epoch != r.Ticket.Epoch {
		s.t.Fatalf("epoch changed between two lookups: %d, then %d", r.Ticket.Epoch, r2.Ticket.Epoch)
	}
	if r2.Ticket.Seq < r.Ticket.Seq {
		s.t.Fatalf("ticket went back without an invalidation: %+v, then %+v", r.Ticket, r2.Ticket)
	}
}

func testSecondCallerIsHeld(s *suite) {
	k := s.key("k")
	s.want(s.lease(k, 1), store.StateMiss, true, false)
	r := s.lease(k, 2)
	s.want(r, store.StateMiss, false, true)
	s.wantNoEntry(r)
	s.want(s.lease(k, 3), store.StateMiss, false, true)
	// Another key has its own lease.
	s.want(s.lease(s.key("other"), 2), store.StateMiss, true, false)
}

func testReadOnlyLookup(s *suite) {
	k := s.key("k")
	for range 3 {
		r := s.peek(k)
		s.want(r, store.StateMiss, false, false)
		s.wantNoEntry(r)
	}
	// The read-only lookups left the lease free.
	s.want(s.lease(k, 1), store.StateMiss, true, false)
	// A read-only lookup of a stale entry takes no lease either.
	r := s.lease(s.key("soft"), 2)
	s.mustFill(s.key("soft"), loaded("v", r.Ticket, 2))
	s.invalidate(store.Invalidation{Keys: []string{s.key("soft")}, Soft: true})
	p := s.peek(s.key("soft"))
	s.want(p, store.StateStale, false, false)
	s.want(s.lease(s.key("soft"), 3), store.StateStale, true, false)
}

func testFillThenFreshHit(s *suite) {
	k := s.key("k")
	tags := []string{s.tag("a"), s.tag("b")}
	r := s.lease(k, 1)
	f := loaded("hello", r.Ticket, 1, tags...)
	f.TTL = 10 * time.Minute
	f.Stale = 20 * time.Minute
	f.StaleIfError = 30 * time.Minute
	f.LoadDuration = 1500 * time.Millisecond
	f.Early = 2 * time.Minute
	s.mustFill(k, f)

	h := s.lease(k, 2)
	s.want(h, store.StateFresh, false, false)
	s.wantValue(h, "hello")
	e := h.Entry
	if !slices.Equal(e.Tags, tags) {
		s.t.Errorf("Entry.Tags = %q, want %q", e.Tags, tags)
	}
	if e.Ticket != r.Ticket {
		s.t.Errorf("Entry.Ticket = %+v, want the fill's ticket %+v", e.Ticket, r.Ticket)
	}
	if e.LoadDuration != f.LoadDuration {
		s.t.Errorf("Entry.LoadDuration = %v, want %v", e.LoadDuration, f.LoadDuration)
	}
	// The windows come from the store's clock at the fill, which lies
	// between the two lookups.
	if e.Created.Before(r.Now.Add(-Tolerance)) || e.Created.After(h.Now.Add(Tolerance)) {
		s.t.Errorf("Entry.Created = %v, want within [%v, %v] (the lookups around the fill)", e.Created, r.Now, h.Now)
	}
	for _, w := range []struct {
		name      string
		got, want time.Time
	}{
		{"FreshUntil", e.FreshUntil, e.Created.Add(f.TTL)},
		{"StaleUntil", e.StaleUntil, e.Created.Add(f.TTL + f.Stale)},
		{"ErrorUntil", e.ErrorUntil, e.Created.Add(f.TTL + f.StaleIfError)},
		{"RefreshAt", e.RefreshAt, e.Created.Add(f.TTL - f.Early)},
	} {
		if !near(w.got, w.want) {
			s.t.Errorf("Entry.%s = %v, want %v (Created %v)", w.name, w.got, w.want, e.Created)
		}
	}
	if !h.Ticket.AtLeast(r.Ticket) {
		s.t.Errorf("ticket after the fill %+v is older than the one before %+v", h.Ticket, r.Ticket)
	}
	// A fill with no tags stores none.
	r = s.lease(s.key("untagged"), 3)
	s.mustFill(s.key("untagged"), loaded("x", r.Ticket, 3))
	if e := s.peek(s.key("untagged")).Entry; e == nil || len(e.Tags) != 0 {
		s.t.Errorf("untagged entry = %+v, want an entry without tags", e)
	} else if !e.RefreshAt.IsZero() {
		s.t.Errorf("entry filled without an Early lead: RefreshAt = %v, want the zero Time (never early)", e.RefreshAt)
	}
	// An empty value is a value, not a negative entry.
	r = s.lease(s.key("empty"), 4)
	s.mustFill(s.key("empty"), loaded("", r.Ticket, 4))
	h = s.peek(s.key("empty"))
	s.want(h, store.StateFresh, false, false)
	s.wantValue(h, "")
}

func testFillCopiesValue(s *suite) {
	k := s.key("k")
	r := s.lease(k, 1)
	v := []byte("original")
	f := loaded("", r.Ticket, 1)
	f.Value = v
	s.mustFill(k, f)
	copy(v, "CHANGED!")
	h := s.peek(k)
	s.wantValue(h, "original")
	copy(h.Entry.Value, "CHANGED!")
	s.wantValue(s.peek(k), "original")
}

func testFillReleasesLease(s *suite) {
	k := s.key("k")
	r := s.lease(k, 1)
	s.mustFill(k, loaded("v", r.Ticket, 1))
	s.invalidate(store.Invalidation{Keys: []string{k}})
	// Had the fill kept lease 1, token 2 would be Held here.
	s.want(s.lease(k, 2), store.StateMiss, true, false)
}

func testFillReleasesOnlyItsLease(s *suite) {
	k := s.key("k")
	r := s.lease(k, 1)
	// A fill by a caller whose lease is gone (token 2) is still accepted
	// (nothing invalidated k) but must not release lease 1.
	f := loaded("v", r.Ticket, 2)
	f.TTL = time.Minute
	s.mustFill(k, f)
	s.h.Advance(2 * time.Minute)
	r = s.lease(k, 3)
	s.want(r, store.StateStale, false, true)
	s.wantValue(r, "v")
}

func testInvalidateKeyDropsEntry(s *suite) {
	k, other := s.key("k"), s.key("other")
	for _, key := range []string{k, other} {
		r := s.lease(key, 1)
		s.mustFill(key, loaded("v", r.Ticket, 1))
	}
	s.invalidate(store.Invalidation{Keys: []string{k}})
	r := s.lease(k, 2)
	s.want(r, store.StateMiss, true, false)
	s.wantNoEntry(r)
	s.wantValue(s.peek(other), "v")
	s.want(s.peek(other), store.StateFresh, false, false)
	// Invalidating a key that holds nothing is not an error.
	s.invalidate(store.Invalidation{Keys: []string{s.key("never")}})
	s.invalidate(store.Invalidation{})
}

func testInvalidateKeyFencesFill(s *suite) {
	k := s.key("k")
	old := s.lease(k, 1)
	s.invalidate(store.Invalidation{Keys: []string{k}})
	s.mustRefuse(k, loaded("old", old.Ticket, 1))
	r := s.lease(k, 2)
	s.want(r, store.StateMiss, true, false)
	s.wantNoEntry(r)
	if r.Ticket.Epoch != old.Ticket.Epoch || r.Ticket.Seq <= old.Ticket.Seq {
		s.t.Fatalf("ticket after Invalidate %+v is not newer than the one before %+v", r.Ticket, old.Ticket)
	}
	// A load that began after the invalidation fills.
	s.mustFill(k, loaded("new", r.Ticket, 2))
	s.wantValue(s.peek(k), "new")
	// The old load, finishing last, is still refused and does not
	// overwrite the new value.
	s.mustRefuse(k, loaded("old", old.Ticket, 0))
	s.wantValue(s.peek(k), "new")
}

func testInvalidateTagFencesFill(s *suite) {
	k := s.key("k")
	tag, other := s.tag("t"), s.tag("other")
	old := s.lease(k, 1)
	s.invalidate(store.Invalidation{Tags: []string{tag}})
	// A fill that carries the tag is refused, whatever else it carries.
	s.mustRefuse(k, loaded("old", old.Ticket, 1, other, tag))
	s.wantNoEntry(s.peek(k))
	// A fill of the same old load that does not carry the tag is not
	// fenced by it.
	r := s.lease(k, 2)
	s.want(r, store.StateMiss, true, false)
	if !s.fill(k, loaded("untouched", old.Ticket, 2, other)) {
		if !s.h.LosesVersions {
			s.t.Fatalf("Fill(%q) of an old load without the invalidated tag was refused, want accepted", k)
		}
		// The refused fill above recreated the version of other above
		// the old ticket.
		s.wantNoEntry(s.peek(k))
	} else {
		s.wantValue(s.peek(k), "untouched")
	}
	// A load that began after the invalidation fills with the tag.
	k2 := s.key("k2")
	r = s.lease(k2, 3)
	s.mustFill(k2, loaded("new", r.Ticket, 3, tag))
	s.want(s.peek(k2), store.StateFresh, false, false)
	s.wantValue(s.peek(k2), "new")
}

func testHardTagInvalidation(s *suite) {
	a, b := s.tag("a"), s.tag("b")
	both, onlyA := s.key("both"), s.key("onlyA")
	for key, tags := range map[string][]string{both: {a, b}, onlyA: {a}} {
		r := s.lease(key, 1)
		s.mustFill(key, loaded("v", r.Ticket, 1, tags...))
	}
	s.invalidate(store.Invalidation{Tags: []string{b}})
	r := s.lease(both, 2)
	s.want(r, store.StateMiss, true, false)
	s.wantNoEntry(r)
	// Entries without the tag stay.
	s.want(s.peek(onlyA), store.StateFresh, false, false)
	// An entry filled after the invalidation, with the tag, is fresh.
	s.mustFill(both, loaded("new", r.Ticket, 2, a, b))
	h := s.peek(both)
	s.want(h, store.StateFresh, false, false)
	s.wantValue(h, "new")
	// Invalidating both tags at once drops both entries.
	s.invalidate(store.Invalidation{Tags: []string{a, b}})
	s.wantNoEntry(s.peek(both))
	s.wantNoEntry(s.peek(onlyA))
}

func testSoftKeyInvalidation(s *suite) {
	k := s.key("k")
	r := s.lease(k, 1)
	s.mustFill(k, loaded("v1", r.Ticket, 1))
	s.invalidate(store.Invalidation{Keys: []string{k}, Soft: true})
	// Servable, and one caller refreshes it.
	st := s.lease(k, 2)
	s.want(st, store.StateStale, true, false)
	s.wantValue(st, "v1")
	h := s.lease(k, 3)
	s.want(h, store.StateStale, false, true)
	s.wantValue(h, "v1")
	// Fills of loads older than the invalidation are refused.
	s.mustRefuse(k, loaded("v0", r.Ticket, 0))
	s.wantValue(s.peek(k), "v1")
	// The refresh fills and the entry is fresh again.
	s.mustFill(k, loaded("v2", st.Ticket, 2))
	h = s.peek(k)
	s.want(h, store.StateFresh, false, false)
	s.wantValue(h, "v2")
}

func testSoftTagInvalidation(s *suite) {
	k, other := s.key("k"), s.key("other")
	tag := s.tag("t")
	r := s.lease(k, 1)
	s.mustFill(k, loaded("v1", r.Ticket, 1, tag))
	r2 := s.lease(other, 1)
	s.mustFill(other, loaded("o", r2.Ticket, 1, s.tag("other")))
	s.invalidate(store.Invalidation{Tags: []string{tag}, Soft: true})
	st := s.lease(k, 2)
	s.want(st, store.StateStale, true, false)
	s.wantValue(st, "v1")
	s.want(s.lease(k, 3), store.StateStale, false, true)
	s.want(s.peek(other), store.StateFresh, false, false)
	// The soft invalidation still fences older loads.
	s.mustRefuse(k, loaded("v0", r.Ticket, 0, tag))
	s.mustFill(k, loaded("v2", st.Ticket, 2, tag))
	h := s.peek(k)
	s.want(h, store.StateFresh, false, false)
	s.wantValue(h, "v2")
	// A later hard invalidation of the tag drops the entry.
	s.invalidate(store.Invalidation{Tags: []string{tag}})
	s.wantNoEntry(s.peek(k))
}

// testInvalidateBreaksLease: an invalidation of a key, hard or soft,
// breaks the key's lease. The load that holds it took its ticket before the
// invalidation and can no longer fill, so the next caller that asks for the
// lease is granted it at once instead of waiting for a doomed load. The
// doomed holder's fill is refused and neither it nor its release takes the
// new holder's lease away.
func testInvalidateBreaksLease(s *suite) {
	const a, b, c = 1, 2, 3
	for _, tc := range []struct {
		name string
		soft bool
		// setup makes the key's state before the invalidation and returns
		// a's lookup, granted the lease; after is the state of the key
		// after the invalidation.
		setup func(k string) store.Lookup
		after store.State
	}{
		{"hard", false, func(k string) store.Lookup {
			r := s.lease(k, a)
			s.want(r, store.StateMiss, true, false)
			return r
		}, store.StateMiss},
		{"soft", true, func(k string) store.Lookup {
			r := s.lease(k, 9)
			f := loaded("v", r.Ticket, 9)
			f.Early = f.TTL // due for early refresh from the fill on
			s.mustFill(k, f)
			// A fresh entry due for early refresh: a refreshes it.
			r = s.lookup(k, store.LookupRequest{Lease: a, LeaseTTL: leaseTTL, Early: true})
			s.want(r, store.StateFresh, true, false)
			return r
		}, store.StateStale},
	} {
		k := s.key(tc.name)
		old := tc.setup(k)
		s.invalidate(store.Invalidation{Keys: []string{k}, Soft: tc.soft})
		r := s.lease(k, b)
		if !r.Lease {
			s.t.Fatalf("%s: after Invalidate of the key, a lookup with another token is not granted the lease (Held %v): "+
				"it would wait for a load whose fill will be refused", tc.name, r.Held)
		}
		s.want(r, tc.after, true, false)
		if tc.soft {
			s.wantValue(r, "v")
		} else {
			s.wantNoEntry(r)
		}
		if !r.Ticket.AtLeast(old.Ticket) || r.Ticket.Seq == old.Ticket.Seq {
			s.t.Fatalf("%s: the new holder's ticket %+v is not newer than the broken lease's %+v", tc.name, r.Ticket, old.Ticket)
		}
		// The doomed holder finishes: its fill is refused and leaves b's
		// lease in place.
		s.mustRefuse(k, loaded("old", old.Ticket, a))
		s.want(s.lease(k, c), tc.after, false, true)
		// So does its release, which finds a lease it does not hold.
		s.release(k, a)
		s.want(s.lease(k, c), tc.after, false, true)
		// The new holder fills.
		s.mustFill(k, loaded("new", r.Ticket, b))
		h := s.lease(k, c)
		s.want(h, store.StateFresh, false, false)
		s.wantValue(h, "new")
	}
	// One invalidation of several keys (on several nodes of a store spread
	// over some) breaks the lease of each, and only theirs.
	var keys []string
	for i := range 8 {
		k := s.key(fmt.Sprint("many", i))
		s.want(s.lease(k, a), store.StateMiss, true, false)
		keys = append(keys, k)
	}
	other := s.key("other")
	s.want(s.lease(other, a), store.StateMiss, true, false)
	s.invalidate(store.Invalidation{Keys: keys})
	for _, k := range keys {
		s.want(s.lease(k, b), store.StateMiss, true, false)
	}
	s.want(s.lease(other, b), store.StateMiss, false, true)
}

// testTagInvalidationKeepsLease: a tag names no lease, so a tag
// invalidation leaves the leases of its entries' keys in place. The load
// that holds one is still the one load of its key; its fill is refused if it
// carries the tag, and a refused fill releases the lease like an accepted
// one.
func testTagInvalidationKeepsLease(s *suite) {
	for _, soft := range []bool{false, true} {
		name := "hard"
		if soft {
			name = "soft"
		}
		k, tag := s.key(name), s.tag(name)
		r := s.lease(k, 1)
		s.invalidate(store.Invalidation{Tags: []string{tag}, Soft: soft})
		s.want(s.lease(k, 2), store.StateMiss, false, true)
		s.mustRefuse(k, loaded("old", r.Ticket, 1, tag))
		s.want(s.lease(k, 2), store.StateMiss, true, false)
	}
}

func testSetBumpsVersion(s *suite) {
	k := s.key("k")
	load := s.lease(k, 1) // a load in flight
	w := s.peek(k)        // the writer's ticket
	set := &store.Fill{Value: []byte("set"), Ticket: w.Ticket, TTL: ttl, Set: true}
	s.mustFill(k, set)
	h := s.peek(k)
	s.wantState(h, store.StateFresh, false) // lease 1 is still out
	s.wantValue(h, "set")
	if h.Entry.Ticket.Epoch != w.Ticket.Epoch || h.Entry.Ticket.Seq <= w.Ticket.Seq ||
		h.Entry.Ticket.Seq <= load.Ticket.Seq {
		s.t.Fatalf("Set entry's ticket %+v is not newer than the writer's %+v and the load's %+v",
			h.Entry.Ticket, w.Ticket, load.Ticket)
	}
	if !h.Ticket.AtLeast(h.Entry.Ticket) {
		s.t.Fatalf("ticket after the Set %+v is older than the Set entry's %+v", h.Ticket, h.Entry.Ticket)
	}
	// The load that began before the Set finishes last: refused.
	s.mustRefuse(k, loaded("old", load.Ticket, 1))
	s.wantValue(s.peek(k), "set")
	// So is a second Set with the same old ticket.
	s.mustRefuse(k, &store.Fill{Value: []byte("set2"), Ticket: w.Ticket, TTL: ttl, Set: true})
	// A load that began after the Set fills.
	after := s.peek(k)
	s.mustFill(k, loaded("after", after.Ticket, 0))
	s.wantValue(s.peek(k), "after")
}

// testRefusedSet: a refused Set leaves no entry of its key that predates
// it. A Set follows a write to the source of truth, so an entry with a
// ticket no newer than the Set's holds the value that write replaced:
// served afterwards, it would be stale. Each case is refused by an
// invalidation that does not hide the old entry (a tag only the new value
// carries, or a soft one). An entry newer than the Set's ticket comes from
// a load or Set that began after it, and stays.
func testRefusedSet(s *suite) {
	set := func(value string, t store.Ticket, tags ...string) *store.Fill {
		return &store.Fill{Value: []byte(value), Tags: tags, Ticket: t, TTL: ttl, Stale: time.Hour, Set: true}
	}
	for _, c := range []struct {
		name string
		inv  func(key, newTag string) store.Invalidation
	}{
		{"newtag", func(_, tag string) store.Invalidation { return store.Invalidation{Tags: []string{tag}} }},
		{"softnewtag", func(_, tag string) store.Invalidation { return store.Invalidation{Tags: []string{tag}, Soft: true} }},
		{"softkey", func(key, _ string) store.Invalidation { return store.Invalidation{Keys: []string{key}, Soft: true} }},
	} {
		k, oldTag, newTag := s.key(c.name), s.tag(c.name+":old"), s.tag(c.name+":new")
		r := s.lease(k, 1)
		s.mustFill(k, loaded("old", r.Ticket, 1, oldTag))
		w := s.peek(k) // the writer's ticket
		s.wantValue(w, "old")
		s.invalidate(c.inv(k, newTag))
		s.wantValue(s.peek(k), "old") // not hidden by the invalidation
		s.mustRefuse(k, set("new", w.Ticket, oldTag, newTag))
		h := s.peek(k)
		s.wantState(h, store.StateMiss, false)
		s.wantNoEntry(h)
	}
	// Two Sets with one ticket: the first fences the second, but nothing
	// orders their writes to the source of truth, so the first one's
	// value may be the older: the refused second Set leaves no entry.
	k := s.key("two")
	w := s.peek(k)
	s.mustFill(k, set("first", w.Ticket))
	s.mustRefuse(k, set("second", w.Ticket))
	h := s.peek(k)
	s.wantState(h, store.StateMiss, false)
	s.wantNoEntry(h)
	// A refused Set of a key with no entry leaves none.
	k = s.key("empty")
	w = s.peek(k)
	s.invalidate(store.Invalidation{Tags: []string{s.tag("empty")}})
	s.mustRefuse(k, set("new", w.Ticket, s.tag("empty")))
	s.wantNoEntry(s.peek(k))
}

func testRelease(s *suite) {
	k := s.key("k")
	s.want(s.lease(k, 1), store.StateMiss, true, false)
	s.want(s.lease(k, 2), store.StateMiss, false, true)
	// Releasing with a token that does not hold the lease does nothing.
	s.release(k, 3)
	s.want(s.lease(k, 2), store.StateMiss, false, true)
	s.release(k, 1)
	s.want(s.lease(k, 2), store.StateMiss, true, false)
	s.want(s.lease(k, 1), store.StateMiss, false, true)
	// Releasing twice, or a key never leased, is not an error.
	s.release(k, 2)
	s.release(k, 2)
	s.release(s.key("never"), 7)
	s.want(s.lease(k, 4), store.StateMiss, true, false)
}

func testLeaseExpiry(s *suite) {
	k := s.key("k")
	req := func(token uint64) store.LookupRequest {
		return store.LookupRequest{Lease: token, LeaseTTL: time.Minute}
	}
	s.want(s.lookup(k, req(1)), store.StateMiss, true, false)
	s.want(s.lookup(k, req(2)), store.StateMiss, false, true)
	s.h.Advance(2 * time.Minute)
	// Holder 1 died: after the lease TTL, one other caller takes over.
	s.want(s.lookup(k, req(2)), store.StateMiss, true, false)
	s.want(s.lookup(k, req(3)), store.StateMiss, false, true)
	// The late holder's release does not free the new holder's lease.
	s.release(k, 1)
	s.want(s.lookup(k, req(3)), store.StateMiss, false, true)
}

func testClockAdvances(s *suite) {
	k := s.key("k")
	a := s.peek(k).Now
	s.h.Advance(time.Hour)
	b := s.peek(k).Now
	if d := b.Sub(a); d < time.Hour-Tolerance {
		s.t.Fatalf("Advance(1h) moved Lookup.Now by %v", d)
	}
}

func testWindows(s *suite) {
	k := s.key("k")
	req := func(token uint64) store.LookupRequest {
		return store.LookupRequest{Lease: token, LeaseTTL: time.Minute}
	}
	r := s.lookup(k, req(1))
	f := loaded("v", r.Ticket, 1) // fresh 1h, stale 1h more, error 2h more
	s.mustFill(k, f)

	// Fresh: served, nobody loads.
	h := s.lookup(k, req(2))
	s.want(h, store.StateFresh, false, false)
	s.wantValue(h, "v")

	// Stale window: served, one caller refreshes.
	s.h.Advance(90 * time.Minute)
	h = s.lookup(k, req(2))
	s.want(h, store.StateStale, true, false)
	s.wantValue(h, "v")
	h = s.lookup(k, req(3))
	s.want(h, store.StateStale, false, true)
	s.wantValue(h, "v")

	// Error window: a miss, with the entry for stale-if-error.
	s.h.Advance(time.Hour) // 2h30m after the fill; lease 2 expired
	h = s.lookup(k, req(4))
	s.want(h, store.StateMiss, true, false)
	s.wantValue(h, "v")
	h = s.peek(k)
	s.wantState(h, store.StateMiss, false)
	s.wantValue(h, "v")

	// Past every window: gone.
	s.h.Advance(time.Hour) // 3h30m
	h = s.lookup(k, req(5))
	s.want(h, store.StateMiss, true, false)
	s.wantNoEntry(h)

	// Without a stale window the entry goes from fresh to the error
	// window; without either, from fresh to gone.
	for _, c := range []struct {
		name       string
		staleIfErr time.Duration
		want       func(store.Lookup)
	}{
		{"error", time.Hour, func(h store.Lookup) { s.want(h, store.StateMiss, true, false); s.wantValue(h, "w") }},
		{"none", 0, func(h store.Lookup) { s.want(h, store.StateMiss, true, false); s.wantNoEntry(h) }},
	} {
		k := s.key(c.name)
		r := s.lookup(k, req(1))
		s.mustFill(k, &store.Fill{Value: []byte("w"), Ticket: r.Ticket, Lease: 1, TTL: time.Hour, StaleIfError: c.staleIfErr})
		s.want(s.lookup(k, req(2)), store.StateFresh, false, false)
		s.h.Advance(90 * time.Minute)
		c.want(s.lookup(k, req(3)))
	}
}

// testEarlyRefresh: a fresh entry whose early-refresh instant has come is
// refreshed by one caller, whatever the number of lookups after the
// instant; callers that do not ask for early refresh, and read-only
// lookups, never take its lease; an entry filled without a lead is never
// due early. (A lead of the whole TTL makes the entry due from its fill
// on, so no clock is needed here; testEarlyRefreshInstant moves it.)
func testEarlyRefresh(s *suite) {
	k := s.key("k")
	r := s.lease(k, 1)
	f := loaded("v", r.Ticket, 1) // fresh for 1h
	f.Early = f.TTL
	s.mustFill(k, f)
	early := func(token uint64) store.Lookup {
		return s.lookup(k, store.LookupRequest{Lease: token, LeaseTTL: leaseTTL, Early: true})
	}
	s.want(s.lease(k, 2), store.StateFresh, false, false) // not asked
	s.want(s.peek(k), store.StateFresh, false, false)     // read-only
	s.wantState(s.lookup(k, store.LookupRequest{Early: true}), store.StateFresh, false)
	h := early(2) // due: one caller refreshes
	s.want(h, store.StateFresh, true, false)
	s.wantValue(h, "v")
	// Every later lookup, each with its own token, finds the refresh
	// under way: one lease per entry, not per read.
	for tok := uint64(3); tok < 20; tok++ {
		s.want(early(tok), store.StateFresh, false, true)
	}
	s.want(early(2), store.StateFresh, true, false) // the holder renews its lease
	// The refresh fills and releases; its entry, with a lead of a second,
	// is not due: no lookup takes the lease.
	f = loaded("v2", h.Ticket, 2)
	f.Early = time.Second
	s.mustFill(k, f)
	for tok := uint64(20); tok < 30; tok++ {
		h = early(tok)
		s.want(h, store.StateFresh, false, false)
	}
	s.wantValue(h, "v2")

	// No lead: never due early.
	k = s.key("never")
	r = s.lease(k, 1)
	s.mustFill(k, loaded("v", r.Ticket, 1))
	s.want(s.lookup(k, store.LookupRequest{Lease: 2, LeaseTTL: leaseTTL, Early: true}), store.StateFresh, false, false)
}

// testEarlyRefreshInstant: the entry is due for early refresh from
// FreshUntil - Early on, by the store's clock, and not before; one lookup
// after the instant takes the lease; once the refresh fills, its entry has
// an instant of its own.
func testEarlyRefreshInstant(s *suite) {
	const lead = 10 * time.Minute
	k := s.key("k")
	early := func(token uint64) store.Lookup {
		return s.lookup(k, store.LookupRequest{Lease: token, LeaseTTL: leaseTTL, Early: true})
	}
	fill := func(value string, t store.Ticket, token uint64) {
		f := loaded(value, t, token) // fresh for 1h
		f.Early = lead
		s.mustFill(k, f)
	}
	r := s.lease(k, 1)
	fill("v", r.Ticket, 1)
	h := early(2)
	s.want(h, store.StateFresh, false, false)
	if e := h.Entry; !near(e.RefreshAt, e.FreshUntil.Add(-lead)) {
		s.t.Fatalf("Entry.RefreshAt = %v, want FreshUntil - %v = %v", e.RefreshAt, lead, e.FreshUntil.Add(-lead))
	}
	s.h.Advance(ttl - lead - time.Minute) // a minute before the instant
	for tok := uint64(2); tok < 10; tok++ {
		s.want(early(tok), store.StateFresh, false, false)
	}
	s.h.Advance(2 * time.Minute) // a minute after it
	leases, holder := 0, uint64(0)
	for tok := uint64(10); tok < 60; tok++ {
		r := early(tok)
		if r.State != store.StateFresh {
			s.t.Fatalf("token %d: State %v, want fresh (the entry has %v left)", tok, r.State, lead-time.Minute)
		}
		if r.Lease {
			leases, holder = leases+1, tok
		}
	}
	if leases != 1 {
		s.t.Fatalf("%d of 50 lookups after the early-refresh instant were granted the lease, want 1", leases)
	}
	// A refresh that gives up leaves the entry due: the next lookup
	// refreshes it.
	s.release(k, holder)
	h = early(60)
	s.want(h, store.StateFresh, true, false)
	// The refresh fills: the new entry is due a full TTL minus the lead
	// later, not now.
	fill("v2", h.Ticket, 60)
	for tok := uint64(61); tok < 70; tok++ {
		s.want(early(tok), store.StateFresh, false, false)
	}
	s.h.Advance(ttl - lead + time.Minute)
	s.want(early(70), store.StateFresh, true, false)
}

func testNegative(s *suite) {
	k := s.key("k")
	r := s.lease(k, 1)
	s.mustFill(k, &store.Fill{Negative: true, Ticket: r.Ticket, Lease: 1, TTL: time.Minute, Stale: time.Hour, Tags: []string{s.tag("t")}})
	wantNegative := func(h store.Lookup) {
		s.t.Helper()
		if h.Entry == nil || !h.Entry.Negative || len(h.Entry.Value) != 0 {
			s.t.Fatalf("Lookup: Entry = %+v, want a negative entry without a value", h.Entry)
		}
	}
	h := s.lease(k, 2)
	s.want(h, store.StateFresh, false, false)
	wantNegative(h)
	s.h.Advance(2 * time.Minute)
	h = s.lease(k, 2)
	s.want(h, store.StateStale, true, false)
	wantNegative(h)
	// A positive value replaces it.
	s.mustFill(k, loaded("found", h.Ticket, 2))
	s.wantValue(s.peek(k), "found")
	// Negative entries are fenced and invalidated like any other.
	k2 := s.key("k2")
	old := s.lease(k2, 3)
	s.invalidate(store.Invalidation{Tags: []string{s.tag("t")}})
	s.mustRefuse(k2, &store.Fill{Negative: true, Ticket: old.Ticket, Lease: 3, TTL: time.Minute, Tags: []string{s.tag("t")}})
	r = s.lease(k2, 4)
	s.mustFill(k2, &store.Fill{Negative: true, Ticket: r.Ticket, Lease: 4, TTL: time.Minute, Tags: []string{s.tag("t")}})
	wantNegative(s.peek(k2))
	s.invalidate(store.Invalidation{Tags: []string{s.tag("t")}})
	s.wantNoEntry(s.peek(k2))
}

func testEpochMismatch(s *suite) {
	k := s.key("k")
	r := s.lease(k, 1)
	// Tickets of another history: the same point or a later one.
	for _, t := range []store.Ticket{
		{Epoch: r.Ticket.Epoch ^ 1, Seq: r.Ticket.Seq},
		{Epoch: r.Ticket.Epoch ^ 2, Seq: r.Ticket.Seq + 1000},
	} {
		s.mustRefuse(k, loaded("foreign", t, 1))
		s.mustRefuse(k, &store.Fill{Value: []byte("foreign"), Ticket: t, TTL: ttl, Set: true})
		s.wantNoEntry(s.peek(k))
	}
	// The refused fill released the lease.
	r = s.lease(k, 2)
	s.want(r, store.StateMiss, true, false)
	s.mustFill(k, loaded("ok", r.Ticket, 2))
	h := s.peek(k)
	s.wantValue(h, "ok")
	if h.Entry.Ticket.Epoch != h.Ticket.Epoch {
		s.t.Fatalf("entry epoch %d, store epoch %d", h.Entry.Ticket.Epoch, h.Ticket.Epoch)
	}
}

func testFlush(s *suite) {
	k, tagged := s.key("k"), s.key("tagged")
	r := s.lease(k, 1)
	s.mustFill(k, loaded("v", r.Ticket, 1))
	r = s.lease(tagged, 1)
	s.mustFill(tagged, loaded("v", r.Ticket, 1, s.tag("t")))
	// A load in flight before an invalidation that the flush forgets.
	old := s.lease(s.key("inflight"), 2)
	s.invalidate(store.Invalidation{Keys: []string{s.key("inflight")}, Tags: []string{s.tag("t")}})

	s.h.Flush()

	for _, key := range []string{k, tagged, s.key("inflight")} {
		h := s.peek(key)
		s.wantState(h, store.StateMiss, false)
		s.wantNoEntry(h)
	}
	// The old load's ticket is from a lost history: refused, even though
	// the store no longer knows the versions that fenced it.
	s.mustRefuse(s.key("inflight"), loaded("old", old.Ticket, 2, s.tag("t")))
	s.mustRefuse(s.key("inflight"), loaded("old", r.Ticket, 2))
	s.wantNoEntry(s.peek(s.key("inflight")))
	n := s.lease(s.key("inflight"), 3)
	s.want(n, store.StateMiss, true, false)
	if n.Ticket.Epoch == old.Ticket.Epoch {
		s.t.Fatalf("epoch %d did not change across Flush", n.Ticket.Epoch)
	}
	s.mustFill(s.key("inflight"), loaded("new", n.Ticket, 3, s.tag("t")))
	s.wantValue(s.peek(s.key("inflight")), "new")
}

func testClose(s *suite) {
	s.closeStore = false
	if err := s.h.Store.Close(); err != nil {
		s.t.Fatalf("Close: %v", err)
	}
	st, k := s.h.Store, s.key("k")
	if _, err := st.Lookup(s.ctx, k, store.LookupRequest{Lease: 1, LeaseTTL: leaseTTL}); !errors.Is(err, store.ErrClosed) {
		s.t.Errorf("Lookup after Close: %v, want ErrClosed", err)
	}
	if ok, err := st.Fill(s.ctx, k, loaded("v", store.Ticket{}, 1)); ok || !errors.Is(err, store.ErrClosed) {
		s.t.Errorf("Fill after Close = %v, %v; want false, ErrClosed", ok, err)
	}
	if err := st.Release(s.ctx, k, 1); !errors.Is(err, store.ErrClosed) {
		s.t.Errorf("Release after Close: %v, want ErrClosed", err)
	}
	if err := st.Invalidate(s.ctx, store.Invalidation{Keys: []string{k}}); !errors.Is(err, store.ErrClosed) {
		s.t.Errorf("Invalidate after Close: %v, want ErrClosed", err)
	}
}

func testConcurrentLookupOneLease(s *suite) {
	const callers = 64
	for round := range 6 {
		k := s.key(fmt.Sprint("k", round))
		var (
			start       = make(chan struct{})
			wg          sync.WaitGroup
			leases, hel atomic.Int32
			errs        = make(chan error, callers)
			winner      atomic.Uint64
		)
		state := store.StateMiss
		req := store.LookupRequest{LeaseTTL: leaseTTL}
		switch round % 3 {
		case 1: // an entry in its stale window
			state = store.StateStale
			r := s.lease(k, 1000)
			s.mustFill(k, &store.Fill{Value: []byte("v"), Ticket: r.Ticket, Lease: 1000, Stale: time.Hour})
		case 2: // a fresh entry due for early refresh: one refresh, not one per lookup
			state, req.Early = store.StateFresh, true
			r := s.lease(k, 1000)
			s.mustFill(k, &store.Fill{Value: []byte("v"), Ticket: r.Ticket, Lease: 1000, TTL: ttl, Early: ttl})
		}
		for i := range callers {
			wg.Go(func() {
				<-start
				token := uint64(i + 1)
				req := req
				req.Lease = token
				r, err := s.h.Store.Lookup(s.ctx, k, req)
				if err != nil {
					errs <- err
					return
				}
				switch {
				case r.Lease && r.Held:
					errs <- fmt.Errorf("token %d: both Lease and Held", token)
				case r.Lease:
					leases.Add(1)
					winner.Store(token)
				case r.Held:
					hel.Add(1)
				default:
					errs <- fmt.Errorf("token %d: neither Lease nor Held (state %v)", token, r.State)
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			s.t.Error(err)
		}
		if leases.Load() != 1 || hel.Load() != callers-1 {
			s.t.Fatalf("round %d: %d callers got the lease and %d were held; want 1 and %d",
				round, leases.Load(), hel.Load(), callers-1)
		}
		s.release(k, winner.Load())
		req.Lease = callers + 1
		s.want(s.lookup(k, req), state, true, false)
	}
}

// testFillInvalidateOrdering writes out the interleavings of one load with
// one invalidation, each in a fixed order.
func testFillInvalidateOrdering(s *suite) {
	tag := s.tag("t")
	for _, c := range []struct {
		name string
		inv  func(key string) store.Invalidation
	}{
		{"key", func(key string) store.Invalidation { return store.Invalidation{Keys: []string{key}} }},
		{"tag", func(string) store.Invalidation { return store.Invalidation{Tags: []string{tag}} }},
		{"softkey", func(key string) store.Invalidation { return store.Invalidation{Keys: []string{key}, Soft: true} }},
		{"softtag", func(string) store.Invalidation { return store.Invalidation{Tags: []string{tag}, Soft: true} }},
	} {
		// ticket, invalidate, fill: refused.
		k := s.key(c.name + ":before")
		r := s.lease(k, 1)
		s.invalidate(c.inv(k))
		s.mustRefuse(k, loaded("old", r.Ticket, 1, tag))
		s.wantNoEntry(s.peek(k))

		// invalidate, ticket, fill: accepted.
		k = s.key(c.name + ":after")
		s.invalidate(c.inv(k))
		r = s.lease(k, 1)
		s.mustFill(k, loaded("new", r.Ticket, 1, tag))
		s.want(s.peek(k), store.StateFresh, false, false)

		// ticket, fill, invalidate: accepted, then not fresh.
		k = s.key(c.name + ":filled")
		r = s.lease(k, 1)
		s.mustFill(k, loaded("v", r.Ticket, 1, tag))
		s.invalidate(c.inv(k))
		if h := s.peek(k); h.State == store.StateFresh {
			s.t.Fatalf("%s: entry filled before the invalidation is still fresh", c.name)
		}

		// Two loads of one key, the invalidation between their tickets,
		// fills in either order: only the later load is accepted.
		k = s.key(c.name + ":two")
		a := s.lease(k, 1)
		s.invalidate(c.inv(k))
		// Granted if the invalidation named k (it broke a's lease), held
		// if it named only the tag; b fills either way.
		b := s.lease(k, 2)
		s.mustFill(k, loaded("b", b.Ticket, 0, tag))
		s.mustRefuse(k, loaded("a", a.Ticket, 1, tag))
		s.wantValue(s.peek(k), "b")
	}
}

// testFillInvalidateRace races loads against invalidations and checks the
// promise of Invalidate: once it returns, no fill with an older ticket is
// accepted, and no entry older than it is served as fresh.
//
// The invalidator takes a ticket tb on the key before each invalidation
// and publishes it once Invalidate has returned. A filler that reads the
// published tb before it calls Fill, with a ticket t.Seq <= tb.Seq, holds
// a ticket older than an invalidation that is complete, so the fill must
// be refused. A lookup that starts after tb is published must not call an
// entry with a ticket <= tb.Seq fresh.
func testFillInvalidateRace(s *suite) {
	const (
		fillers       = 4
		fills         = 500
		invalidations = 1000
	)
	k, tag := s.key("k"), s.tag("t")
	var (
		fence atomic.Pointer[store.Ticket]
		done  atomic.Bool
		wg    sync.WaitGroup
		errs  = make(chan error, fillers+1)
	)
	wg.Go(func() {
		defer done.Store(true)
		for i := range invalidations {
			tb, err := s.h.Store.Lookup(s.ctx, k, store.LookupRequest{})
			if err != nil {
				errs <- err
				return
			}
			inv := store.Invalidation{Soft: i%4 >= 2}
			if i%2 == 0 {
				inv.Keys = []string{k}
			} else {
				inv.Tags = []string{tag}
			}
			if err := s.h.Store.Invalidate(s.ctx, inv); err != nil {
				errs <- err
				return
			}
			fence.Store(&tb.Ticket)
		}
	})
	for f := range fillers {
		wg.Go(func() {
			for i := 0; i < fills || !done.Load(); i++ {
				token := uint64(f*1_000_000 + i + 1)
				before := fence.Load()
				r, err := s.h.Store.Lookup(s.ctx, k, store.LookupRequest{Lease: token, LeaseTTL: leaseTTL})
				if err != nil {
					errs <- err
					return
				}
				if r.State != store.StateMiss && r.Entry == nil {
					errs <- fmt.Errorf("lookup: state %v without an entry", r.State)
					return
				}
				if before != nil && r.State == store.StateFresh && r.Entry.Ticket.Epoch == before.Epoch &&
					r.Entry.Ticket.Seq <= before.Seq {
					errs <- fmt.Errorf("lookup served a fresh entry with ticket %+v after an invalidation that followed ticket %+v",
						r.Entry.Ticket, *before)
					return
				}
				fl := loaded(fmt.Sprint(token), r.Ticket, 0, tag)
				if r.Lease {
					fl.Lease = token
				}
				fenced := fence.Load()
				ok, err := s.h.Store.Fill(s.ctx, k, fl)
				if err != nil {
					errs <- err
					return
				}
				if ok && fenced != nil && r.Ticket.Epoch == fenced.Epoch && r.Ticket.Seq <= fenced.Seq {
					errs <- fmt.Errorf("fill with ticket %+v accepted after an invalidation that followed ticket %+v",
						r.Ticket, *fenced)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		s.t.Fatal(err)
	}
	// And once more, in a fixed order, after the storm.
	r := s.peek(k)
	s.invalidate(store.Invalidation{Keys: []string{k}, Tags: []string{tag}})
	s.mustRefuse(k, loaded("late", r.Ticket, 0, tag))
	if h := s.peek(k); h.State == store.StateFresh {
		s.t.Fatalf("entry %+v is fresh after the last invalidation", h.Entry.Ticket)
	}
}
