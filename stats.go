package paddock

import (
	"sync/atomic"
	"unsafe"

	"github.com/paddockcache/paddock/store"
)

// Stats counts what happened in one namespace since the Cache was created.
type Stats struct {
	// Hits: Gets served a fresh entry from the store.
	Hits uint64
	// StaleHits: Gets served a stale entry (stale-while-revalidate, a soft
	// invalidation, or stale-if-error after a failed load).
	StaleHits uint64
	// Misses: Gets that found no servable entry.
	Misses uint64
	// Loads: load functions run (including background refreshes).
	Loads uint64
	// LoadErrors: loads that returned an error other than ErrNotFound, or
	// panicked.
	LoadErrors uint64
	// Coalesced: Gets that took the result of a load run for another caller
	// in this process.
	Coalesced uint64
	// FillsRefused: fills refused because an invalidation raced the load
	// (the stale-set race, prevented).
	FillsRefused uint64
	// FillErrors: fills that failed (store error, value too large).
	FillErrors uint64
	// EarlyRefreshes: refreshes started while the entry was still fresh,
	// its early-refresh instant come (see [Beta]).
	EarlyRefreshes uint64
	// Refreshes: background refreshes started (stale-while-revalidate and
	// early refresh).
	Refreshes uint64
	// Invalidations: keys invalidated in this namespace. Tag invalidations
	// are counted, one per tag, under the empty namespace "".
	Invalidations uint64
	// DecodeErrors: entries whose bytes did not decode, treated as misses.
	DecodeErrors uint64
	// StoreErrors: store calls that failed and were worked around.
	StoreErrors uint64
	// Fills counts the fates of values to be written (loaded values that
	// would have been stored, and [Loader.Set]s), by [FillResult] label
	// ("stored", "fenced", "pending", "too_large", "store_error",
	// "encode_error"): the fills refused, by reason. Nil when none.
	Fills map[string]uint64
	// Evictions: entries the store dropped for space or age, when the store
	// reports them (see [store.Stats]; memstore does with its
	// CountEvictions option).
	Evictions uint64

	// The durable invalidations (see [Cache.Invalidate]) are counted for
	// the whole Cache, under the empty namespace "".

	// InvalidationsPending: invalidations the store has not acknowledged
	// yet, kept and retried; this process serves no entry they cover.
	InvalidationsPending uint64
	// InvalidationsRetried: pending invalidations that a retry applied.
	InvalidationsRetried uint64
	// InvalidationsDropped: pending invalidations dropped, unapplied,
	// because more than [MaxPendingInvalidations] names were pending.
	InvalidationsDropped uint64
}

type counters struct {
	ns string // the namespace counted, for the Recorder's events
	// hits, misses and loads are striped: every hit or miss of the
	// namespace counts, and on many cores one shared counter would be a
	// cache line that every core's read writes.
	hits, misses, loads                                 stripedCounter
	staleHits, loadErrors, coalesced                    atomic.Uint64
	fillsRefused, fillErrors, earlyRefreshes, refreshes atomic.Uint64
	invalidations, decodeErrors, storeErrors            atomic.Uint64
	fills                                               [numFillResults]atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Hits:           c.hits.load(),
		StaleHits:      c.staleHits.Load(),
		Misses:         c.misses.load(),
		Loads:          c.loads.load(),
		LoadErrors:     c.loadErrors.Load(),
		Coalesced:      c.coalesced.Load(),
		FillsRefused:   c.fillsRefused.Load(),
		FillErrors:     c.fillErrors.Load(),
		EarlyRefreshes: c.earlyRefreshes.Load(),
		Refreshes:      c.refreshes.Load(),
		Invalidations:  c.invalidations.Load(),
		DecodeErrors:   c.decodeErrors.Load(),
		StoreErrors:    c.storeErrors.Load(),
		Fills:          c.fillCounts(),
	}
}

// fillCounts returns the fills counted, by result label; nil if none.
func (c *counters) fillCounts() map[string]uint64 {
	var m map[string]uint64
	for r := range c.fills {
		if n := c.fills[r].Load(); n > 0 {
			if m == nil {
				m = make(map[string]uint64)
			}
			m[FillResult(r).String()] = n
		}
	}
	return m
}

// counters returns the counters of namespace ns, creating them.
func (c *Cache) counters(ns string) *counters {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.stats[ns]
	if !ok {
		s = &counters{ns: ns}
		c.stats[ns] = s
	}
	return s
}

// Stats returns the counters of every namespace that has seen traffic, by
// namespace. Tag invalidations are counted under "".
func (c *Cache) Stats() map[string]Stats {
	c.mu.Lock()
	out := make(map[string]Stats, len(c.stats))
	for ns, s := range c.stats {
		out[ns] = s.snapshot()
	}
	c.mu.Unlock()
	c.pending.mu.Lock()
	pend, retried, dropped := len(c.pending.invs), c.pending.retried, c.pending.dropped
	c.pending.mu.Unlock()
	if pend > 0 || retried > 0 || dropped > 0 {
		s := out[""]
		s.InvalidationsPending, s.InvalidationsRetried, s.InvalidationsDropped = uint64(pend), retried, dropped
		out[""] = s
	}
	if ss, ok := c.store.(store.Stats); ok {
		for ns, n := range ss.Evictions() {
			s := out[ns]
			s.Evictions = n
			out[ns] = s
		}
	}
	return out
}

// stripedCounter is a counter spread over cache lines: each Add picks a
// stripe by the address of its goroutine's stack, so that concurrent Adds
// from different goroutines seldom share a line. (A random stripe costs a
// third of a hot hit; a stack address is free and differs per goroutine.)
type stripedCounter struct {
	stripes [counterStripes]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

const (
	counterBits    = 6
	counterStripes = 1 << counterBits
)

// Add adds n on the stripe of the calling goroutine's stack. A goroutine
// keeps its stripe, so a core keeps writing the lines it owns; two
// goroutines whose stacks hash to one stripe share its line for as long as
// they run (a chance of 1 in counterStripes for a pair), which is why the
// stripes are many. (Mixing in what is counted would spread a pair's
// collision, but make every core write every line: measured, the parallel
// hot hit went from 27 to 55 ns.)
func (c *stripedCounter) Add(n uint64) {
	var here byte
	// Fibonacci hashing of the address: stacks are aligned to powers of
	// two, so their low bits say little.
	h := uint64(uintptr(unsafe.Pointer(&here))>>10) * 0x9E3779B97F4A7C15
	c.stripes[h>>(64-counterBits)].n.Add(n)
}

func (c *stripedCounter) load() uint64 {
	var sum uint64
	for i := range c.stripes {
		sum += c.stripes[i].n.Load()
	}
	return sum
}
