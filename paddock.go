package paddock

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/internal/localclock"
	"github.com/paddockcache/paddock/store"
)

// A Cache is shared by the [Loader]s of a program: it holds the [store.Store],
// the per-namespace statistics and the background refreshes. Tags cross
// loaders: [Cache.InvalidateTags] drops every entry of every loader that
// carries one of the tags.
//
// A Cache is safe for concurrent use. Create one with [New].
type Cache struct {
	store   store.Store
	batcher store.Batcher // the store, if it batches; nil otherwise
	waker   store.Waker   // the store, if it wakes waiters; nil otherwise
	remote  bool
	// localClock: the store reads this process's clock, as the Cache
	// does (see internal/localclock): a lookup's Now is an instant of the
	// Cache's clock too.
	localClock bool
	// fillAt, on such a store, fills at an instant the Cache read.
	fillAt    localclock.Filler
	deadlines deadlines // the shared Done channels of remote store calls
	cfg       config
	rec       Recorder // cfg.recorder: nil when none is set
	audit     *auditor // the consistency audit; nil when off (see Audit)
	// exp draws the exponential factor of early-refresh leads (see
	// policy.earlyLead): from cfg.rand if set.
	exp func() float64
	// epoch is when the Cache was made: now, and the hot tier's instants,
	// count from it.
	epoch time.Time

	mu         sync.Mutex
	stats      map[string]*counters // namespace -> counters
	namespaces map[string]bool      // namespaces with a Loader
	groups     []detacher           // the flights of each Loader

	breaker breaker

	// Goroutines. Every goroutine of the Cache (flights, refreshes, batch
	// loads, probes, the retrier) is started by spawn and counted in bg,
	// and so is every load a caller runs on its own goroutine (see
	// enter); Close shuts bg and waits for them.
	bg      gate
	closed  atomic.Bool        // set by Close, before it shuts bg; read on every call
	closing context.Context    // ends when Close begins: loads and waits stop
	stop    context.CancelFunc // ends closing
	// loadStates holds the states of load contexts that their loads are
	// done with (see loadCtx), and spareViews the views that states not
	// reused had not handed out.
	loadStates, spareViews sync.Pool

	// pending holds invalidations the store did not acknowledge and
	// leases this Cache abandoned (see durable.go). invGen counts the
	// invalidations that went pending: a flight that began before one is
	// not joined, by its ticket, by a caller that began after it.
	pending   pendingSet
	invGen    atomic.Uint64
	abandoned atomic.Bool // a lease was ever abandoned: lookups check pending.leases

	// hot, if the store tells of every invalidation (store.Notifier) and
	// is in process, are the counters that keep the Loaders' hot tiers
	// exact (hot.go); unsubscribe stops the store's calls.
	hot         *hotVersions
	unsubscribe func()
}

// New returns a Cache over store. The embedded default store is
// memstore.New(); a fleet shares redisstore. The Cache does not own the
// store: [Cache.Close] leaves it open.
func New(s store.Store, opts ...Option) (*Cache, error) {
	if s == nil {
		return nil, invalid("New: nil store")
	}
	cfg := config{
		leaseTTL:         DefaultLeaseTTL,
		storeTimeout:     DefaultStoreTimeout,
		breakerThreshold: DefaultBreakerThreshold,
		breakerCooldown:  DefaultBreakerCooldown,
		logger:           slog.New(slog.DiscardHandler),
		maxPending:       DefaultMaxPendingInvalidations,
	}
	for _, o := range opts {
		if o == nil {
			return nil, invalid("New: nil option")
		}
		if err := o.applyCache(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.waitTimeout == 0 {
		cfg.waitTimeout = cfg.leaseTTL
	}
	c := &Cache{store: s, cfg: cfg, rec: cfg.recorder, stats: make(map[string]*counters), exp: rand.ExpFloat64, epoch: time.Now(), bg: newGate()}
	if cfg.rand != nil {
		c.exp = expOf(cfg.rand)
	}
	if r, ok := s.(store.Remote); ok && r.Remote() {
		c.remote = true
	}
	if lc, ok := s.(localclock.Store); ok && !c.remote && lc.LocalClock() {
		c.localClock = true
		c.fillAt, _ = s.(localclock.Filler)
	}
	c.batcher, _ = s.(store.Batcher)
	c.waker, _ = s.(store.Waker)
	switch n, notifies := s.(store.Notifier); {
	case cfg.near > 0:
		feed, ok := s.(store.Feed)
		if !ok {
			return nil, invalid("NearCache: the store (%T) has no feed of invalidations (store.Feed)", s)
		}
		c.hot = &hotVersions{seed: maphash.MakeSeed(), base: c.epoch, maxAge: cfg.near}
		c.hot.down.Store(true)
		c.unsubscribe = feed.Listen(c.hot.bump, c.hot.setUp)
	case notifies && !c.remote:
		c.hot = &hotVersions{seed: maphash.MakeSeed(), base: c.epoch}
		c.unsubscribe = n.Subscribe(c.hot.bump)
	}
	c.breaker.threshold = int32(cfg.breakerThreshold)
	c.breaker.cooldown = cfg.breakerCooldown
	c.breaker.timeout = cfg.storeTimeout
	c.breaker.rec = cfg.recorder
	c.pending.maxNames = cfg.maxPending
	c.closing, c.stop = context.WithCancel(context.Background())
	if cfg.audit.budget > 0 {
		c.audit = newAuditor(c, cfg.audit)
	}
	return c, nil
}

// Store returns the Cache's store.
func (c *Cache) Store() store.Store { return c.store }

// Invalidate drops the entries under the given full keys (see [Loader.Key])
// and fences them: once it returns, no load that began before it can fill
// them, and no Get that begins after it takes a value from such a load.
//
// A key must have a namespace part ("namespace:key"): a bare key is an
// error wrapping [ErrInvalidOption]. A namespace with no Loader in this
// process is allowed (it may be another process's).
//
// If the store does not acknowledge the invalidation (it is down, or the
// call times out), Invalidate returns an error wrapping
// [ErrStoreUnavailable], and the Cache keeps the invalidation pending: it
// retries it in the background until the store acknowledges it, and
// meanwhile this process serves no entry it covers and fills none. Other
// processes sharing the store are bound once it answers again, plus at
// most one retry delay (1 s). See docs/guarantees.md.
func (c *Cache) Invalidate(ctx context.Context, keys ...string) error {
	return c.invalidate(ctx, store.Invalidation{Keys: keys})
}

// InvalidateTags drops every entry, of any loader, that carries one of tags,
// with the fence of [Cache.Invalidate] and its handling of a store that does
// not answer. Its cost does not depend on how many entries carry a tag.
func (c *Cache) InvalidateTags(ctx context.Context, tags ...string) error {
	return c.invalidate(ctx, store.Invalidation{Tags: tags})
}

// MarkStale is a soft [Cache.Invalidate]: the entries stay servable as stale
// until their stale window ends (the end of their original TTL plus the
// [Stale] window) while one refresh runs, and loads that began before it
// still cannot fill them. While a soft invalidation is pending (the store
// did not acknowledge it) this process treats the entries as missing.
func (c *Cache) MarkStale(ctx context.Context, keys ...string) error {
	return c.invalidate(ctx, store.Invalidation{Keys: keys, Soft: true})
}

// MarkStaleTags is a soft [Cache.InvalidateTags]; see [Cache.MarkStale].
func (c *Cache) MarkStaleTags(ctx context.Context, tags ...string) error {
	return c.invalidate(ctx, store.Invalidation{Tags: tags, Soft: true})
}

func (c *Cache) invalidate(ctx context.Context, inv store.Invalidation) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if len(inv.Keys) == 0 && len(inv.Tags) == 0 {
		return nil
	}
	for _, k := range inv.Keys {
		if !strings.Contains(k, ":") {
			return invalid("Invalidate: key %q has no namespace: pass a full key, as Loader.Key gives it (\"ns:key\")", k)
		}
	}
	for _, t := range inv.Tags {
		if t == "" {
			return invalid("empty tag")
		}
	}
	asked := inv
	if len(inv.Keys) > 0 {
		// Entries built from a key by nested Gets carry its dependency
		// tag: invalidating the key invalidates them.
		inv.Tags = slices.Grow(slices.Clone(inv.Tags), len(inv.Keys))
		for _, k := range inv.Keys {
			inv.Tags = append(inv.Tags, DependencyTag(k))
		}
	}
	if c.audit != nil {
		c.audit.wrote(inv.Keys, inv.Tags)
	}
	if hooks.HardAsSoft.Load() {
		inv.Soft = true
	}
	sctx, cancel := c.storeContext(ctx)
	defer cancel()
	// An invalidation is never skipped by the breaker: it is the write
	// that keeps readers correct, and the caller must learn if it failed.
	t0 := c.timed()
	err := c.store.Invalidate(sctx, inv)
	c.recordCall(t0, "", StoreInvalidate, len(inv.Keys)+len(inv.Tags), err)
	if err != nil {
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrInvalidOption) {
			return err // not the store failing: a retry would fail the same way
		}
		// Not acknowledged: the store may or may not have applied it.
		// Keep it and retry (applying it twice is harmless), whether the
		// store failed or the caller's context ended.
		if !hooks.DropFailedInvalidations.Load() {
			c.recordInvalidation(InvalidationPending, len(inv.Keys)+len(inv.Tags))
			c.keepPending(inv, err)
			if c.hot != nil {
				c.hot.bump(inv.Keys, inv.Tags) // the store may not have told
			}
		}
		c.doom(ctx, &inv)
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	if c.hot != nil && c.remote {
		// A near cache hears of its own invalidations through the feed
		// too late: drop its copies before returning.
		c.hot.bump(inv.Keys, inv.Tags)
	}
	c.doom(ctx, &inv)
	c.counted(asked)
	c.recordInvalidation(InvalidationApplied, len(inv.Keys)+len(inv.Tags))
	return nil
}

// A detacher is the flight group of a Loader: see group.detach.
type detacher interface {
	detach(inv *store.Invalidation, doomed func(key string, lease uint64))
}

// doom detaches the flights of this process that inv dooms, and gives
// back their leases, so that a Get that begins once the invalidation has
// returned loads at once rather than waiting for a load that can no
// longer fill. (The store breaks the leases of the keys inv names; the
// leases of flights doomed by a tag are known only here.)
func (c *Cache) doom(ctx context.Context, inv *store.Invalidation) {
	if hooks.WaitDoomed.Load() {
		return
	}
	c.mu.Lock()
	groups := c.groups
	c.mu.Unlock()
	type doomed struct {
		key   string
		lease uint64
	}
	var leases []doomed
	for _, g := range groups {
		g.detach(inv, func(key string, lease uint64) { leases = append(leases, doomed{key, lease}) })
	}
	for _, d := range leases {
		c.release(context.WithoutCancel(ctx), d.key, d.lease, c.counters(namespaceOf(d.key)))
	}
}

// counted counts an acknowledged invalidation.
func (c *Cache) counted(inv store.Invalidation) {
	for _, k := range inv.Keys {
		c.counters(namespaceOf(k)).invalidations.Add(1)
	}
	if len(inv.Tags) > 0 {
		c.counters("").invalidations.Add(uint64(len(inv.Tags)))
	}
}

// Close ends the Cache: later calls fail with [ErrClosed]; loads in flight
// see their context canceled, and Close waits until every goroutine of the
// Cache (loads, background refreshes, the invalidation retrier) has
// returned, and every load that a caller runs on its own goroutine (see
// [Loader.Fetch]) has ended. It then tries once more to apply the invalidations the store
// has not acknowledged, and returns an error wrapping
// [ErrStoreUnavailable] that names those it could not. It does not close
// the store. Calls after the first return nil.
func (c *Cache) Close() error {
	c.closed.Store(true)
	if !c.bg.shut() {
		return nil
	}
	c.stop()
	<-c.bg.idle
	if c.unsubscribe != nil {
		c.unsubscribe()
	}
	return c.flushPending()
}

// spawn runs f on a goroutine that Close waits for. It runs nothing and
// reports false once Close has begun.
func (c *Cache) spawn(f func()) bool {
	if !c.enter() {
		return false
	}
	go func() {
		defer c.bg.exit()
		f()
	}()
	return true
}

// enter counts work that a caller runs on its own goroutine as background
// work, so that Close waits for it as for a spawned one; the caller calls
// c.bg.exit when it ends. It reports false once Close has begun.
func (c *Cache) enter() bool { return c.bg.enter() }

// A gate counts the work under way and lets one waiter wait for it all
// to end once the gate is shut, when no more work may start: the count in
// one atomic word, whose sign bit says the gate is shut. (A WaitGroup
// with a lock to order its Add against the Wait of Close did the same
// with four atomic operations per piece of work where this takes two.)
type gate struct {
	n    atomic.Int64
	idle chan struct{} // closed once the gate is shut and the count is zero
}

// gateShut is the bit of gate.n set when the gate is shut.
const gateShut = math.MinInt64

func newGate() gate { return gate{idle: make(chan struct{})} }

// enter counts one more piece of work, unless the gate is shut: it then
// reports false.
func (g *gate) enter() bool {
	for {
		v := g.n.Load()
		if v < 0 {
			return false
		}
		if g.n.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// exit counts a piece of work that entered as ended.
func (g *gate) exit() {
	if g.n.Add(-1) == gateShut {
		close(g.idle) // shut, and the last piece of work is over
	}
}

// shut shuts the gate and reports true, or reports false if it was shut
// already. Once it has been shut, idle is closed when the work that
// entered has ended.
func (g *gate) shut() bool {
	for {
		v := g.n.Load()
		if v < 0 {
			return false
		}
		if g.n.CompareAndSwap(v, v|gateShut) {
			if v == 0 {
				close(g.idle)
			}
			return true
		}
	}
}

// storeContext bounds a store call by the store timeout. A local store
// (one that is not [store.Remote]) never waits on I/O, and is spared the
// deadline; a call whose caller's context cannot end gets a storeCtx,
// which arms no timer of its own (see storectx.go).
func (c *Cache) storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if !c.remote {
		return ctx, noCancel
	}
	if _, ok := ctx.Deadline(); !ok && ctx.Done() == nil {
		return &storeCtx{parent: ctx, deadline: time.Now().Add(c.cfg.storeTimeout), ds: &c.deadlines}, noCancel
	}
	return context.WithTimeout(ctx, c.cfg.storeTimeout)
}

// now reads the local clock, as time.Now does, from the monotonic clock
// alone: epoch plus the time since (time.Now reads the wall clock too).
// Its instants are compared with each other and with time.Now's, which
// compare by their monotonic readings, and never turned into dates.
func (c *Cache) now() time.Time { return c.epoch.Add(time.Since(c.epoch)) }

// token returns a new lease token: odd, so never zero, and random, so that
// the tokens of the processes of a fleet do not meet (two live leases of a
// key with one token: about 2^-63 per pair). Drawn from the runtime's
// per-thread generator, it writes no memory that other cores share.
func (*Cache) token() uint64 { return rand.Uint64() | 1 }

// errBreakerOpen is what a store call skipped by the open breaker reports.
var errBreakerOpen = fmt.Errorf("%w: the circuit breaker is open", ErrStoreUnavailable)

// lookup asks the store, unless the breaker is open. The error is nil,
// the caller's context error, [ErrClosed] (the store was closed), or one
// wrapping [ErrStoreUnavailable]: the store could not answer, and the
// caller works around it.
func (c *Cache) lookup(ctx context.Context, key string, req store.LookupRequest, st *counters) (reply, error) {
	lk, err := c.lookupOnce(ctx, key, req, st)
	if err == nil && c.recheck(key, req, &lk) {
		// A pending invalidation covers the entry, which the store still
		// thinks fresh: ask again for the lease, so that this process
		// loads it once, as for a miss, rather than without a lease.
		req.Refresh, req.Lease = true, lk.token
		lk, err = c.lookupOnce(ctx, key, req, st)
	}
	return lk, err
}

// recheck reports whether lk, the answer to req, serves an entry that a
// pending invalidation covers without granting the lease: the lookup is
// made again with Refresh.
func (c *Cache) recheck(key string, req store.LookupRequest, lk *reply) bool {
	return lk.Entry != nil && req.Lease != 0 && !lk.Lease && !lk.Held && c.coveredSince(key, lk.Entry.Tags, lk.applied)
}

// lookupMany looks up keys with reqs: in one store call if the store is a
// [store.Batcher], with the rules of lookup for each key. errs is nil or
// has one error per key.
func (c *Cache) lookupMany(ctx context.Context, keys []string, reqs []store.LookupRequest, st *counters) (out []reply, errs []error) {
	out = make([]reply, len(keys))
	setErr := func(i int, err error) {
		if err != nil {
			if errs == nil {
				errs = make([]error, len(keys))
			}
			errs[i] = err
		}
	}
	if c.batcher == nil || len(keys) < 2 || c.breaker.open() {
		// One by one: lookup knows how to probe a store behind an open
		// breaker.
		for i, k := range keys {
			var err error
			out[i], err = c.lookup(ctx, k, reqs[i], st)
			setErr(i, err)
		}
		return out, errs
	}
	for i := range reqs {
		reqs[i].Lease = c.takeBack(keys[i], reqs[i].Lease)
	}
	gen, applied := c.invGen.Load(), c.pending.applied.Load()
	sctx, cancel := c.storeContext(ctx)
	t0 := c.timed()
	lks, serrs := c.batcher.LookupMany(sctx, keys, reqs)
	c.recordCall(t0, st.ns, StoreLookup, len(keys), firstErr(serrs))
	cancel()
	failed := false
	for i, k := range keys {
		var err error
		if serrs != nil {
			err = serrs[i]
		}
		var lk store.Lookup
		if err == nil {
			lk = lks[i]
		}
		// One failing call counts once for the breaker.
		if err = c.lookupDone(ctx, k, reqs[i], st, &lk, err, !failed); unavailable(err) {
			failed = true
		}
		out[i] = reply{Lookup: lk, gen: gen, applied: applied, token: reqs[i].Lease}
		if err == nil && c.recheck(k, reqs[i], &out[i]) {
			req := reqs[i]
			req.Refresh, req.Lease = true, out[i].token
			out[i], err = c.lookupOnce(ctx, k, req, st)
		}
		setErr(i, err)
	}
	return out, errs
}

// reply is a store's answer to a lookup with what the Cache noted when it
// sent it: the count of invalidations gone pending (gen) and of those a
// retry applied (applied), see durable.go; and the lease token the lookup
// was sent with (token), which may be one this Cache abandoned on the key.
type reply struct {
	store.Lookup
	gen, applied, token uint64
}

func (c *Cache) lookupOnce(ctx context.Context, key string, req store.LookupRequest, st *counters) (reply, error) {
	ok, probe := c.breaker.allow()
	if !ok {
		return reply{}, errBreakerOpen
	}
	req.Lease = c.takeBack(key, req.Lease)
	gen, applied := c.invGen.Load(), c.pending.applied.Load()
	var (
		lk  store.Lookup
		err error
	)
	if probe {
		lk, err = c.probe(ctx, key, req, st)
	} else {
		sctx, cancel := c.storeContext(ctx)
		t0 := c.timed()
		lk, err = c.store.Lookup(sctx, key, req)
		c.recordCall(t0, st.ns, StoreLookup, 1, err)
		cancel()
		err = c.lookupDone(ctx, key, req, st, &lk, err, true)
	}
	return reply{Lookup: lk, gen: gen, applied: applied, token: req.Lease}, err
}

// takeBack returns the token a lookup of key that asks for a lease (with
// token, non-zero) is sent with: the token of a lease this Cache abandoned
// on key, if any (a lookup that failed may have been granted it), which
// takes the lease back. Taken only when the lookup is sent, so that a
// lookup skipped by the breaker loses nothing.
func (c *Cache) takeBack(key string, token uint64) uint64 {
	if token != 0 && c.abandoned.Load() {
		if t := c.pending.takeLease(key); t != 0 {
			return t
		}
	}
	return token
}

// lookupDone reports a store lookup's outcome (*lk, err) to the breaker
// and the counters, and says what its caller gets: the error, and *lk,
// which a failed lookup zeroes. count says whether a store failure counts
// for the breaker (once per store call).
func (c *Cache) lookupDone(ctx context.Context, key string, req store.LookupRequest, st *counters, lk *store.Lookup, err error, count bool) error {
	if err != nil {
		*lk = store.Lookup{}
		err = c.lookupFailed(ctx, key, req, st, err, count)
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrCorrupt) {
			c.breaker.success() // the store answered; a probe is over
		}
		return err
	}
	c.breaker.success()
	if lk.Corrupt {
		st.decodeErrors.Add(1)
	}
	return nil
}

// lookupFailed handles a lookup that returned err and says what its caller
// gets. count says whether a store failure counts for the breaker (once
// per store call).
func (c *Cache) lookupFailed(ctx context.Context, key string, req store.LookupRequest, st *counters, err error, count bool) error {
	if errors.Is(err, ErrClosed) {
		return ErrClosed
	}
	if req.Lease != 0 {
		// The store may have run the lookup and granted the lease all the
		// same (the reply came late): take it back on the next Get of the
		// key, and give it up once the store answers.
		c.abandonLease(key, req.Lease)
	}
	if errors.Is(err, ErrCorrupt) {
		// The data of this key is bad, not the store: no breaker.
		st.decodeErrors.Add(1)
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if count {
		c.storeFailed(st, "lookup", key, err)
	}
	return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
}

// probe makes the breaker's half-open lookup on a goroutine, bounded by the
// store timeout and detached from ctx, so that its outcome always reaches
// the breaker: a probe abandoned by its caller's deadline would otherwise
// leave the breaker waiting for it for good. If ctx ends first the caller
// returns, and the probe gives back any lease it was granted.
func (c *Cache) probe(ctx context.Context, key string, req store.LookupRequest, st *counters) (store.Lookup, error) {
	type reply struct {
		lk  store.Lookup
		err error
	}
	const (
		waiting = iota
		answered
		gaveUp
	)
	var state atomic.Int32
	done := make(chan reply, 1)
	dctx := context.WithoutCancel(ctx)
	run := func() {
		sctx, cancel := c.storeContext(dctx)
		t0 := c.timed()
		lk, err := c.store.Lookup(sctx, key, req)
		c.recordCall(t0, st.ns, StoreLookup, 1, err)
		cancel()
		err = c.lookupDone(dctx, key, req, st, &lk, err, true)
		if !state.CompareAndSwap(waiting, answered) && err == nil && lk.Lease {
			c.release(dctx, key, req.Lease, st) // its caller is gone
		}
		done <- reply{lk, err}
	}
	if !c.spawn(run) {
		return store.Lookup{}, ErrClosed
	}
	select {
	case r := <-done:
		return r.lk, r.err
	case <-ctx.Done():
		if state.CompareAndSwap(waiting, gaveUp) {
			return store.Lookup{}, ctx.Err()
		}
		r := <-done // answered just now
		return r.lk, r.err
	}
}

// unavailable reports whether err from lookup means the store could not
// answer (the caller loads without it).
func unavailable(err error) bool { return errors.Is(err, ErrStoreUnavailable) }

func (c *Cache) fill(ctx context.Context, key string, f *store.Fill, st *counters) (bool, error) {
	return c.fillNow(ctx, key, f, st, time.Time{})
}

// fillNow is fill at now, an instant of the Cache's clock just read (the
// end of the load whose result f writes), which a store that reads the
// same clock uses rather than read it again (see internal/localclock).
// A zero now is fill's.
func (c *Cache) fillNow(ctx context.Context, key string, f *store.Fill, st *counters, now time.Time) (bool, error) {
	if ok, _ := c.breaker.allow(); !ok {
		return false, errBreakerOpen
	}
	sctx, cancel := c.storeContext(ctx)
	t0 := c.timed()
	var (
		ok  bool
		err error
	)
	if c.fillAt != nil && !now.IsZero() {
		ok, err = c.fillAt.FillAt(sctx, key, f, localclock.At{T: now})
	} else {
		ok, err = c.store.Fill(sctx, key, f)
	}
	c.recordCall(t0, st.ns, StoreFill, 1, err)
	cancel()
	return ok, c.fillDone(key, st, err, true)
}

// fillDone reports a fill's outcome to the breaker and says what its
// caller gets. count says whether a store failure counts for the breaker
// (once per store call).
func (c *Cache) fillDone(key string, st *counters, err error, count bool) error {
	switch {
	case err == nil:
		c.breaker.success()
		return nil
	case errors.Is(err, ErrTooLarge) || errors.Is(err, ErrInvalidOption) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrClosed):
		// About this value or key, or the store's owner closed it: not a
		// sign that the store is failing.
		return err
	}
	if count {
		c.storeFailed(st, "fill", key, err)
	}
	return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
}

// fillMany fills keys with fills: in one store call if the store is a
// [store.Batcher]. errs is nil or has one error per key.
func (c *Cache) fillMany(ctx context.Context, keys []string, fills []*store.Fill, st *counters) (oks []bool, errs []error) {
	if c.batcher == nil || len(keys) < 2 {
		oks = make([]bool, len(keys))
		for i, k := range keys {
			var err error
			if oks[i], err = c.fill(ctx, k, fills[i], st); err != nil {
				if errs == nil {
					errs = make([]error, len(keys))
				}
				errs[i] = err
			}
		}
		return oks, errs
	}
	errs = make([]error, len(keys))
	if ok, _ := c.breaker.allow(); !ok {
		for i := range errs {
			errs[i] = errBreakerOpen
		}
		return make([]bool, len(keys)), errs
	}
	sctx, cancel := c.storeContext(ctx)
	t0 := c.timed()
	oks, serrs := c.batcher.FillMany(sctx, keys, fills)
	c.recordCall(t0, st.ns, StoreFill, len(keys), firstErr(serrs))
	cancel()
	counted := false
	for i, k := range keys {
		var err error
		if serrs != nil {
			err = serrs[i]
		}
		errs[i] = c.fillDone(k, st, err, !counted)
		counted = counted || unavailable(errs[i])
	}
	if oks == nil {
		oks = make([]bool, len(keys))
	}
	return oks, errs
}

func (c *Cache) release(ctx context.Context, key string, lease uint64, st *counters) {
	if lease == 0 {
		return
	}
	if ok, _ := c.breaker.allow(); !ok {
		c.abandonLease(key, lease)
		return
	}
	sctx, cancel := c.storeContext(ctx)
	t0 := c.timed()
	err := c.store.Release(sctx, key, lease)
	c.recordCall(t0, st.ns, StoreRelease, 1, err)
	cancel()
	if err != nil {
		if !errors.Is(err, ErrClosed) {
			c.abandonLease(key, lease)
			c.storeFailed(st, "release", key, err)
		}
		return
	}
	c.breaker.success()
}

func (c *Cache) storeFailed(st *counters, op, key string, err error) {
	st.storeErrors.Add(1)
	// A client reports its own deadline as the context's error, or, for a
	// socket read cut short by it (go-redis), as os.ErrDeadlineExceeded.
	timedOut := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
	c.breaker.failure(timedOut)
	c.cfg.logger.Warn("paddock: store call failed", "op", op, "key", key, "err", err)
}

// namespaceOf returns the namespace of a full key: the part before ':'.
func namespaceOf(key string) string {
	ns, _, _ := strings.Cut(key, ":")
	return ns
}

// firstErr returns the first non-nil error of errs, or nil.
func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
