package paddock

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddockcache/paddock/store"
)

// Durable invalidations. An invalidation that the store did not
// acknowledge (it was down, or the call timed out) is not dropped: the
// Cache keeps it pending and retries it in the background until the store
// acknowledges it. Until then this process treats every entry it covers as
// missing and fills none of them, so the caller's own process never serves
// what it asked to drop, and the fleet is bound once the store answers
// again plus at most one retry delay (maxRetryDelay).
//
// The pending set is also where the Cache keeps the leases it abandoned:
// a lookup that failed may still have been run by the store (its reply
// came late) and granted the lease to a token nobody holds. The next Get
// of that key in this process takes the lease back with the same token,
// and the retrier gives the lease up once the store answers.

const (
	// DefaultMaxPendingInvalidations is the default of
	// [MaxPendingInvalidations].
	DefaultMaxPendingInvalidations = 100_000

	minRetryDelay = 25 * time.Millisecond
	maxRetryDelay = time.Second // the bound docs/guarantees.md promises
	maxAbandoned  = 10_000
	appliedRing   = 256 // invalidations applied by a retry, kept for lookups in flight
)

// pendingSet holds the invalidations and lease releases the store has not
// acknowledged yet. All fields but n are guarded by mu.
type pendingSet struct {
	// n is the number of pending invalidations: the read path checks it
	// (one atomic load) and looks at the maps only when it is non-zero.
	n atomic.Int64
	// applied counts the pending invalidations a retry applied. A lookup
	// notes it when it is sent: if it moved by the time the reply is
	// read, the store may have run the lookup before the retry, and the
	// entry is judged against the invalidations applied since (ring).
	//
	//	G:       lookup sent (pending: P covers k)
	//	retrier: P applied; P leaves the pending set
	//	G:       reply: the entry as it was before P
	//
	// Judged against the pending set alone, G would serve the entry P
	// dropped, after the call that failed returned in this process.
	applied atomic.Uint64

	mu       sync.Mutex
	invs     []*pendingInv
	keys     map[string]int // key -> pending invalidations naming it
	tags     map[string]int // tag -> pending invalidations naming it
	names    int            // keys and tags held, for the bound
	leases   map[string]abandonedLease
	ring     [appliedRing]appliedInv // the last applied, by seq % appliedRing
	running  bool                    // a retrier goroutine is running (or about to)
	retried  uint64
	dropped  uint64
	lastErr  error
	maxNames int
}

type pendingInv struct {
	inv   store.Invalidation
	since time.Time
}

type appliedInv struct {
	seq uint64 // the value of applied after it
	inv store.Invalidation
}

type abandonedLease struct {
	token uint64
	until time.Time
}

// covers reports whether a pending invalidation names key or one of tags,
// or one that a retry applied after applied read since (see applied).
func (p *pendingSet) covers(key string, tags []string, since uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keys[key] > 0 {
		return true
	}
	for _, t := range tags {
		if p.tags[t] > 0 {
			return true
		}
	}
	now := p.applied.Load()
	if now-since > appliedRing {
		return true // too many since to tell: not servable
	}
	for seq := since + 1; seq <= now; seq++ {
		a := &p.ring[seq%appliedRing]
		if slices.Contains(a.inv.Keys, key) {
			return true
		}
		for _, t := range tags {
			if slices.Contains(a.inv.Tags, t) {
				return true
			}
		}
	}
	return false
}

// add keeps inv pending. If the bound is passed, the oldest pending
// invalidations are dropped (and counted) to make room.
func (p *pendingSet) add(inv store.Invalidation) (dropped int) {
	inv = store.Invalidation{Keys: slices.Clone(inv.Keys), Tags: slices.Clone(inv.Tags), Soft: inv.Soft}
	size := len(inv.Keys) + len(inv.Tags)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keys == nil {
		p.keys, p.tags = make(map[string]int), make(map[string]int)
	}
	for len(p.invs) > 0 && p.names+size > p.maxNames {
		p.remove(0)
		p.dropped++
		dropped++
	}
	if size > p.maxNames {
		p.dropped++
		return dropped + 1
	}
	p.invs = append(p.invs, &pendingInv{inv: inv, since: time.Now()})
	for _, k := range inv.Keys {
		p.keys[k]++
	}
	for _, t := range inv.Tags {
		p.tags[t]++
	}
	p.names += size
	p.n.Add(1)
	return dropped
}

// remove drops the i-th pending invalidation. The caller holds mu.
func (p *pendingSet) remove(i int) {
	pi := p.invs[i]
	p.invs = slices.Delete(p.invs, i, i+1)
	for _, k := range pi.inv.Keys {
		if p.keys[k]--; p.keys[k] <= 0 {
			delete(p.keys, k)
		}
	}
	for _, t := range pi.inv.Tags {
		if p.tags[t]--; p.tags[t] <= 0 {
			delete(p.tags, t)
		}
	}
	p.names -= len(pi.inv.Keys) + len(pi.inv.Tags)
	p.n.Add(-1)
}

// done removes pi, applied by the store (counted as retried) or not
// (dropped).
func (p *pendingSet) done(pi *pendingInv, applied bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.Index(p.invs, pi)
	if i < 0 {
		return
	}
	if !applied {
		p.remove(i)
		p.dropped++
		return
	}
	// applied moves before n: coveredSince's fast path reads n, then
	// applied, without the lock, and must not see n drop to zero with
	// applied not yet moved.
	seq := p.applied.Load() + 1
	p.ring[seq%appliedRing] = appliedInv{seq, pi.inv}
	p.applied.Store(seq)
	p.remove(i)
	p.retried++
}

// failed records the store's last refusal, for Close's error.
func (p *pendingSet) failed(err error) {
	p.mu.Lock()
	p.lastErr = err
	p.mu.Unlock()
}

// abandon remembers that token may hold key's lease until until.
func (p *pendingSet) abandon(key string, token uint64, until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leases == nil {
		p.leases = make(map[string]abandonedLease)
	}
	if _, ok := p.leases[key]; !ok && len(p.leases) >= maxAbandoned {
		// The oldest would be best to forget; any is good enough: a
		// forgotten lease expires on its own.
		for k := range p.leases {
			delete(p.leases, k)
			break
		}
	}
	p.leases[key] = abandonedLease{token, until}
}

// takeLease returns the token of an abandoned, unexpired lease of key and
// forgets it, or 0.
func (p *pendingSet) takeLease(key string) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.leases[key]
	if !ok {
		return 0
	}
	delete(p.leases, key)
	if !time.Now().Before(l.until) {
		return 0
	}
	return l.token
}

// work returns what the retrier has to do: the pending invalidations
// (which stay pending until done) and the abandoned leases (handed over).
func (p *pendingSet) work() (invs []*pendingInv, leases map[string]abandonedLease) {
	p.mu.Lock()
	defer p.mu.Unlock()
	invs = slices.Clone(p.invs)
	leases = p.leases
	p.leases = nil
	return invs, leases
}

// keep records that the retrier still has work, or stops it. It reports
// whether the retrier should go on.
func (p *pendingSet) keep() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.invs) == 0 && len(p.leases) == 0 {
		p.running = false
		return false
	}
	return true
}

// retrier is the background goroutine that applies pending invalidations
// and gives up abandoned leases until none are left, or the Cache closes.
func (c *Cache) retrier() {
	delay := minRetryDelay
	for {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.closing.Done():
			t.Stop()
			return
		}
		if c.retryOnce(c.closing) {
			delay = minRetryDelay
		} else {
			delay = min(2*delay, maxRetryDelay)
		}
		if !c.pending.keep() {
			return
		}
	}
}

// retryOnce tries every pending invalidation and abandoned lease once, each
// bounded by the store timeout. It reports whether the store answered.
func (c *Cache) retryOnce(ctx context.Context) (answered bool) {
	invs, leases := c.pending.work()
	answered = true
	for _, pi := range invs {
		if ctx.Err() != nil {
			break
		}
		sctx, cancel := context.WithTimeout(ctx, c.cfg.storeTimeout)
		names := len(pi.inv.Keys) + len(pi.inv.Tags)
		t0 := c.timed()
		err := c.store.Invalidate(sctx, pi.inv)
		c.recordCall(t0, "", StoreInvalidate, names, err)
		cancel()
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrInvalidOption) {
			// The store was closed by its owner, or refuses the request
			// itself: no retry can apply it.
			c.pending.done(pi, false)
			c.recordInvalidation(InvalidationDropped, names)
			c.cfg.logger.Error("paddock: pending invalidation dropped", "err", err)
			continue
		}
		if err != nil {
			answered = false
			c.pending.failed(err)
			c.recordInvalidation(InvalidationRetryFailed, names)
			break // the store is still down: keep the order, try later
		}
		c.pending.done(pi, true)
		c.recordInvalidation(InvalidationRetried, names)
		c.breaker.success()
		c.cfg.logger.Info("paddock: pending invalidation applied",
			"keys", len(pi.inv.Keys), "tags", len(pi.inv.Tags), "after", time.Since(pi.since))
	}
	for key, l := range leases {
		if !time.Now().Before(l.until) {
			continue // expired: nothing to give up
		}
		if !answered || ctx.Err() != nil {
			c.pending.abandon(key, l.token, l.until) // keep it for later
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, c.cfg.storeTimeout)
		t0 := c.timed()
		err := c.store.Release(sctx, key, l.token)
		c.recordCall(t0, namespaceOf(key), StoreRelease, 1, err)
		cancel()
		if err != nil {
			answered = false
			c.pending.abandon(key, l.token, l.until)
		}
	}
	return answered
}

// keepPending makes a failed invalidation pending and starts the retrier.
func (c *Cache) keepPending(inv store.Invalidation, cause error) {
	c.invGen.Add(1)
	if n := c.pending.add(inv); n > 0 {
		for range n {
			c.recordInvalidation(InvalidationDropped, 0) // how many names each had is not kept
		}
		c.cfg.logger.Error("paddock: pending invalidations dropped: more than MaxPendingInvalidations names",
			"dropped", n, "max", c.cfg.maxPending)
	}
	c.pending.failed(cause)
	c.startRetrier()
}

// startRetrier starts the retrier unless it runs.
func (c *Cache) startRetrier() {
	c.pending.mu.Lock()
	start := !c.pending.running
	c.pending.running = true
	c.pending.mu.Unlock()
	if start && !c.spawn(c.retrier) {
		c.pending.mu.Lock()
		c.pending.running = false
		c.pending.mu.Unlock()
	}
}

// abandonLease remembers that a failed lookup of key with token may have
// been granted the lease, and has the retrier give it up.
func (c *Cache) abandonLease(key string, token uint64) {
	c.pending.abandon(key, token, time.Now().Add(c.cfg.leaseTTL))
	c.abandoned.Store(true)
	c.startRetrier()
}

// covered reports whether a pending invalidation covers key or one of
// tags: the entry must not be served, nor a load of it fill.
func (c *Cache) covered(key string, tags []string) bool {
	return c.pending.n.Load() > 0 && c.pending.covers(key, tags, c.pending.applied.Load())
}

// coveredSince reports whether an entry read by a lookup sent when the
// applied count was since may not be served: a pending invalidation covers
// it, or one that a retry applied after the lookup was sent.
func (c *Cache) coveredSince(key string, tags []string, since uint64) bool {
	if c.pending.n.Load() == 0 && c.pending.applied.Load() == since {
		return false
	}
	return c.pending.covers(key, tags, since)
}

// flushPending tries the pending invalidations once more (Close) and
// reports those the store did not acknowledge.
func (c *Cache) flushPending() error {
	if c.pending.n.Load() == 0 {
		c.pending.mu.Lock()
		leases := len(c.pending.leases)
		c.pending.mu.Unlock()
		if leases == 0 {
			return nil
		}
	}
	c.retryOnce(context.Background())
	c.pending.mu.Lock()
	defer c.pending.mu.Unlock()
	if len(c.pending.invs) == 0 {
		return nil
	}
	var names []string
	for _, pi := range c.pending.invs {
		for _, k := range pi.inv.Keys {
			names = append(names, "key "+k)
		}
		for _, t := range pi.inv.Tags {
			names = append(names, "tag "+t)
		}
	}
	more := ""
	if len(names) > 10 {
		more = fmt.Sprintf(" and %d more", len(names)-10)
		names = names[:10]
	}
	return fmt.Errorf("%w: Close: %d invalidations not acknowledged by the store (%s%s): %w",
		ErrStoreUnavailable, len(c.pending.invs), strings.Join(names, ", "), more,
		cmp.Or(c.pending.lastErr, errNoAnswer))
}

var errNoAnswer = errors.New("no answer")
