package paddock

import (
	"hash/maphash"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/store"
)

// The hot tier: each Loader keeps its recently hit values decoded, with
// what it takes to know that they are still servable, so that a hit costs
// a map lookup, a clock read and a few atomic loads instead of a store
// read and a decode.
//
// Exactness. Every key and tag maps to one of hotSlots version counters.
// An invalidation bumps the counters of its keys and tags once the store
// has applied it, and before it returns: the store calls back
// synchronously (store.Notifier), for the invalidations of any Cache
// sharing it, and this Cache bumps them itself for one that went pending.
// A hot copy records the counters of its key and tags as they were before
// the store read it came from, and is served only while they are
// unchanged. Picture the race the order closes:
//
//	R: reads the counters (c0), reads the entry E from the store
//	W: Invalidate: the store drops E, bumps the counters, returns
//	R: puts E in the tier with c0
//
// R's copy is unservable from the moment W's bump lands (c0 is older),
// and W returned only after the bump. Had R read the counters after the
// bump, its store read came after the drop too, and found no E. Counters
// shared by several keys only cost extra misses. A copy is served only
// while fresh and before its early-refresh instant, so the store still
// sees the reads that must refresh it.
//
// The tier is kept over a store that implements store.Notifier and is not
// Remote (memstore), and, with NearCache, over a shared store whose
// store.Feed brings every other process's invalidations (Redis): a near
// cache. There the other processes' bumps land when their changes arrive,
// so a copy may be served for that delay after another process's
// invalidation returned (never after this process's own, which it bumps
// before returning); a copy is served at most maxAge after its store read;
// and while the feed is down every copy is unservable (all) and none is
// taken (down), since changes may be missed then.

const hotSlots = 1 << 12

// DefaultHotSize is the number of values a Loader keeps decoded in its hot
// tier by default (see [HotSize]).
const DefaultHotSize = 10_000

// hotVersions are a Cache's invalidation counters.
type hotVersions struct {
	seed maphash.Seed
	// base is the instant the copies' times count from: time.Since(base)
	// reads only the monotonic clock, cheaper than time.Now.
	base time.Time
	// seq counts bumps. A bump adds to it before it adds to the slots, so
	// that a reader that finds seq unchanged from before its store read to
	// after it has read the slots knows no bump landed in between (see
	// hotTier.put).
	seq   atomic.Uint64
	slots [hotSlots]atomic.Uint64
	// all is bumped to make every copy unservable: when a store's feed
	// (a near cache's) goes down, and again when it is back. down is set
	// while it is down: no copy is taken then. maxAge, if not zero, is
	// how long after its store read a copy may be served (NearCache).
	all    atomic.Uint64
	down   atomic.Bool
	maxAge time.Duration
}

// setUp is a store feed's report that it is up (every change from now on
// will be heard) or down (changes may be missed).
func (h *hotVersions) setUp(up bool) {
	if !up {
		h.down.Store(true)
	}
	h.seq.Add(1)
	h.all.Add(1)
	if up {
		h.down.Store(false)
	}
}

func (h *hotVersions) slot(name string) uint16 {
	return uint16(maphash.String(h.seed, name) % hotSlots)
}

// bump makes every hot copy that carries one of keys or tags unservable.
func (h *hotVersions) bump(keys, tags []string) {
	if hooks.HotIgnoresInvalidation.Load() {
		return
	}
	h.seq.Add(1)
	for _, k := range keys {
		h.slots[h.slot(k)].Add(1)
	}
	for _, t := range tags {
		h.slots[h.slot(t)].Add(1)
	}
}

// hotRef is one counter a hot copy depends on, and its value then.
type hotRef struct {
	slot uint16
	ver  uint64
}

// hotEntry is a decoded value with what makes it servable.
type hotEntry[T any] struct {
	val T
	err error // ErrNotFound for a cached absence
	// created is when the value was stored, and until when the copy stops
	// being servable (its fresh window or early-refresh instant, whichever
	// comes first), both on this process's monotonic clock, as durations
	// since hotVersions.base.
	created, until time.Duration
	fresh          time.Duration // end of the fresh window, for Result.TTL
	all            uint64        // hotVersions.all when it was taken
	refs           []hotRef
	// ticket and tags are the store entry's, for the audit's check.
	ticket store.Ticket
	tags   []string
}

// servable reports whether the copy may be served at now (since base).
func (e *hotEntry[T]) servable(h *hotVersions, now time.Duration) bool {
	if now >= e.until || h.all.Load() != e.all {
		return false
	}
	for _, r := range e.refs {
		if h.slots[r.slot].Load() != r.ver {
			return false
		}
	}
	return true
}

// hotTier is a Loader's tier: a bounded map of the Loader's own keys (the
// namespace is not in them) to copies.
type hotTier[T any] struct {
	h *hotVersions
	m *otter.Cache[string, *hotEntry[T]]
}

func newHotTier[T any](h *hotVersions, size int) *hotTier[T] {
	return &hotTier[T]{h: h, m: otter.Must(&otter.Options[string, *hotEntry[T]]{MaximumSize: size})}
}

// put keeps a copy of the outcome o of full key full (key in the Loader),
// read from the store at local instant at, if no counter moved since seq0,
// read before that store read. The copy depends on the counters of the key
// and of the entry's tags as they are now: unchanged since before the read.
func (t *hotTier[T]) put(key, full string, o *outcome[T], seq0 uint64, at time.Time) {
	e := o.entry
	end := e.FreshUntil
	if !e.RefreshAt.IsZero() && e.RefreshAt.Before(end) {
		end = e.RefreshAt // from then on the store must see the reads: one takes the refresh lease
	}
	until := at.Add(end.Sub(o.now))
	if m := at.Add(t.h.maxAge); t.h.maxAge > 0 && m.Before(until) {
		until = m // at is before the store read
	}
	if !at.Before(until) {
		return
	}
	all := t.h.all.Load()
	refs := t.h.refs(full, e.Tags)
	if t.h.seq.Load() != seq0 || t.h.down.Load() {
		return // an invalidation landed during the read, or the feed is down: no copy
	}
	b := t.h.base
	t.m.Set(key, &hotEntry[T]{val: o.val, err: o.err, created: at.Add(-o.now.Sub(e.Created)).Sub(b), until: until.Sub(b),
		fresh: at.Add(e.FreshUntil.Sub(o.now)).Sub(b), all: all, refs: refs,
		ticket: e.Ticket, tags: e.Tags})
}

// refs reads the counters of full key full and of tags.
func (h *hotVersions) refs(full string, tags []string) []hotRef {
	refs := make([]hotRef, 0, 1+len(tags))
	s := h.slot(full)
	refs = append(refs, hotRef{s, h.slots[s].Load()})
	for _, tag := range tags {
		s := h.slot(tag)
		refs = append(refs, hotRef{s, h.slots[s].Load()})
	}
	return refs
}
