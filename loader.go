package paddock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/store"
)

// A LoadFunc loads the value of one key from the source of truth. It runs
// on a context detached from its callers' (with the load timeout), and may
// name tags with [Tag] on that context. Returning [ErrNotFound] caches the
// absence for the negative TTL.
type LoadFunc[T any] func(ctx context.Context) (T, error)

// Status says where a value came from.
type Status uint8

const (
	// StatusHit: a fresh entry from the store.
	StatusHit Status = iota + 1
	// StatusStale: a stale entry (stale-while-revalidate or a soft
	// invalidation), served at once while one refresh runs.
	StatusStale
	// StatusStaleIfError: a stale entry served because the load failed;
	// Result.LoadErr holds the failure.
	StatusStaleIfError
	// StatusLoaded: this call's own load produced the value.
	StatusLoaded
	// StatusCoalesced: the value of a load run for another caller of this
	// process.
	StatusCoalesced
)

// String returns the status in words: "hit", "stale", "stale-if-error",
// "loaded" or "coalesced".
func (s Status) String() string {
	switch s {
	case StatusHit:
		return "hit"
	case StatusStale:
		return "stale"
	case StatusStaleIfError:
		return "stale-if-error"
	case StatusLoaded:
		return "loaded"
	case StatusCoalesced:
		return "coalesced"
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// Result is a value with where it came from.
type Result[T any] struct {
	Value  T
	Status Status
	// Age is how long ago the value was loaded, by the store's clock; zero
	// for a value loaded by this call or a coalesced one.
	Age time.Duration
	// TTL, for a value from the store, is how long it stays fresh, by the
	// store's clock; less than zero, how long it has been stale. For a value
	// loaded by this call or a coalesced one it is the TTL it was stored
	// with (zero if it was not stored).
	TTL time.Duration
	// LoadErr, with StatusStaleIfError, is the error of the failed load.
	LoadErr error
	// Stored, for a value loaded by this call or a coalesced one, reports
	// that the store accepted its fill. It is false when the value was kept
	// out of the store (NoStore, Private, an error), could not be stored
	// (FillErr), or was refused because an invalidation raced the load.
	Stored bool
	// FillErr reports that the loaded value could not be stored (too large
	// for the store, store unavailable, encoding failed). The value is good;
	// the next Get loads again.
	FillErr error
}

// A Loader is a typed view of a [Cache]: a namespace, a codec and default
// options for values of type T. Its keys are stored as "namespace:key".
//
// A Loader is safe for concurrent use.
type Loader[T any] struct {
	c       *Cache
	ns      string
	prefix  string
	vc      valueCodec[T]
	policy  policy
	flights *group[T]
	st      *counters
	hot     *hotTier[T] // nil: no hot tier (see HotSize)
	audit   *auditTally // the audit's counts; nil when the audit is off
}

// NewLoader returns the loader of namespace on c. The namespace must be
// non-empty, without ':', and not taken by another loader of c.
func NewLoader[T any](c *Cache, namespace string, opts ...LoaderOption) (*Loader[T], error) {
	if c == nil {
		return nil, invalid("NewLoader: nil Cache")
	}
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if namespace == "" || strings.ContainsAny(namespace, ":") {
		return nil, invalid("NewLoader: namespace %q must be non-empty and without ':'", namespace)
	}
	lc := loaderConfig{policy: defaultPolicy(), hotSize: DefaultHotSize}
	for _, o := range opts {
		if o == nil {
			return nil, invalid("NewLoader: nil option")
		}
		if err := o.applyLoader(&lc); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	if c.namespaces == nil {
		c.namespaces = make(map[string]bool)
	}
	taken := c.namespaces[namespace]
	c.namespaces[namespace] = true
	c.mu.Unlock()
	if taken {
		return nil, invalid("NewLoader: namespace %q already has a loader on this Cache", namespace)
	}
	l := &Loader[T]{
		c:       c,
		ns:      namespace,
		prefix:  namespace + ":",
		vc:      newValueCodec[T](lc.version, lc.codec),
		policy:  lc.policy,
		flights: newGroup[T](),
		st:      c.counters(namespace),
	}
	l.flights.l = l
	if c.audit != nil && !lc.noAudit {
		l.audit = c.audit.tally(namespace)
	}
	if c.hot != nil && lc.hotSize > 0 {
		l.hot = newHotTier[T](c.hot, lc.hotSize)
	}
	c.mu.Lock()
	c.groups = append(c.groups, l.flights)
	c.mu.Unlock()
	return l, nil
}

// Cache returns the Cache the loader is a view of.
func (l *Loader[T]) Cache() *Cache { return l.c }

// Namespace returns the loader's namespace.
func (l *Loader[T]) Namespace() string { return l.ns }

// Key returns the full store key of key: "namespace:key". It is what
// [Cache.Invalidate] takes.
func (l *Loader[T]) Key(key string) string { return joinKey(l.prefix, key) }

// joinKey returns prefix + key, as the + operator would, with less work:
// the operator's general form (any number of strings, checked for
// overflow, with a buffer on the stack for strings that do not escape)
// took twice the instructions, on every miss.
func joinKey(prefix, key string) string {
	b := make([]byte, len(prefix)+len(key))
	copy(b[copy(b, prefix):], key)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func (l *Loader[T]) policyFor(opts []GetOption) (policy, error) {
	if len(opts) == 0 {
		return l.policy, nil
	}
	p := l.policy
	for _, o := range opts {
		if o == nil {
			return p, invalid("nil GetOption")
		}
		if err := o.applyGet(&p); err != nil {
			return p, err
		}
	}
	return p, nil
}

// Get returns the value of key, loading it with load if the cache has no
// servable entry. See [Loader.Fetch] for the read path; Get is Fetch
// without the metadata.
func (l *Loader[T]) Get(ctx context.Context, key string, load LoadFunc[T], opts ...GetOption) (T, error) {
	if err := l.usable(load); err != nil {
		return *new(T), err
	}
	e, mark, ok := l.hotHit(ctx, key)
	if ok {
		if l.audit != nil {
			l.auditHot(ctx, key, e, load)
		}
		return e.val, e.err // as Fetch would, without building the Result
	}
	r, err := l.fetchSlow(ctx, key, load, opts, mark)
	return r.Value, err
}

// Fetch returns the value of key with where it came from:
//
//  1. It asks the store. A fresh entry is returned (StatusHit). A stale one
//     is returned at once (StatusStale) and, if this caller won the key's
//     lease, refreshed in the background; so is a fresh one whose
//     early-refresh instant has come (see [Beta]).
//  2. Otherwise the caller joins the load already running for key in this
//     process, or, holding the lease, starts it. Callers in other
//     processes on a shared store wait for the lease holder's fill. The
//     load runs once per key.
//  3. The load's result is written back only if no invalidation of the key
//     or of any of its tags happened since the load began (the fence), and
//     returned to every caller allowed to take it (see the package doc).
//
// A caller that joins a load gets the first caller's load and options:
// its own load function, TTL, tags and timeout are not used. Give keys
// whose values are built differently different names.
//
// If ctx ends, Fetch returns ctx.Err() at once; the load goes on for the
// other callers. A caller whose ctx cannot end (its Done returns nil, as
// context.Background's does) runs the load, and the fill, on its own
// goroutine, since it would wait for them anyway; other callers' loads
// run on goroutines of the Cache. If the load fails and the entry is inside
// its stale-if-error window, the old value is returned (StatusStaleIfError)
// with a nil error. If the store fails, Fetch loads without it. A load that
// panics gives every caller a [*PanicError]. A load that calls
// runtime.Goexit ends the goroutine it runs on, as in
// [golang.org/x/sync/singleflight.Group.Do], and the other callers get an
// error.
//
// Called inside a load, with the load's context, Fetch makes the outer
// entry depend on key (see the package doc on nested Gets).
//
// WARNING: load runs on a context detached from ctx: canceling ctx does not
// stop it. It ends after the load timeout.
func (l *Loader[T]) Fetch(ctx context.Context, key string, load LoadFunc[T], opts ...GetOption) (Result[T], error) {
	if err := l.usable(load); err != nil {
		return Result[T]{}, err
	}
	e, mark, ok := l.hotHit(ctx, key)
	if ok {
		if l.audit != nil {
			l.auditHot(ctx, key, e, load)
		}
		return Result[T]{Value: e.val, Status: StatusHit, Age: mark.now - e.created, TTL: e.fresh - mark.now}, e.err
	}
	return l.fetchSlow(ctx, key, load, opts, mark)
}

// usable reports why a Get or Fetch with load cannot run: a nil load, or
// a closed Cache.
func (l *Loader[T]) usable(load LoadFunc[T]) error {
	if load == nil {
		return invalid("Get: nil load function")
	}
	if l.c.closed.Load() {
		return ErrClosed
	}
	return nil
}

// fetchSlow is Fetch past the hot tier, which was read at mark.
func (l *Loader[T]) fetchSlow(ctx context.Context, key string, load LoadFunc[T], opts []GetOption, mark hotMark) (Result[T], error) {
	g := getter[T]{l: l, ctx: ctx, name: key, load: load, hot: mark}
	var err error
	if g.pol, err = l.policyFor(opts); err != nil {
		return Result[T]{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result[T]{}, err
	}
	var began time.Time
	if l.audit != nil {
		began = time.Now()
	}
	full := joinKey(l.prefix, key)
	sc, at, fresh := l.nested(ctx)
	g.key, g.at, g.fresh = full, at, fresh
	owner, err := g.fetch()
	if err != nil {
		return Result[T]{}, err
	}
	o := g.res
	if o == nil {
		o = &g.out
	}
	if sc.s != nil {
		sc.add(o.input(full))
	}
	if l.audit != nil && o.status == StatusHit && o.entry != nil {
		l.auditHit(ctx, key, o.val, o.err, o.entry.Ticket, o.entry.Tags, began, load)
	}
	r, err := l.result(o, owner)
	if g.owned != nil {
		l.flights.reuse(g.owned)
	}
	return r, err
}

// auditHot considers a hit of key served from the hot tier for a check
// (see Audit).
func (l *Loader[T]) auditHot(ctx context.Context, key string, e *hotEntry[T], load LoadFunc[T]) {
	l.auditHit(ctx, key, e.val, e.err, e.ticket, e.tags, time.Time{}, load)
}

// A hotMark is when a Get read the hot tier: the tier's invalidation
// count and the instant (since the tier's base time), both read before
// the Get's first store lookup, so that a copy the lookup puts in the tier
// is judged from them (see hotTier.put). On a store that reads the
// Cache's clock (Cache.localClock), a Get that finds no copy does not read
// the instant: the lookup's own instant serves.
type hotMark struct {
	seq uint64
	now time.Duration
}

// hotHit returns key's copy in the hot tier, counted as a hit, if a Get
// with ctx may be served it: a nested Get goes to the store (its load
// records the entry it depends on), and one whose context has ended gets
// its error from the read path. The mark says when the tier was read.
func (l *Loader[T]) hotHit(ctx context.Context, key string) (*hotEntry[T], hotMark, bool) {
	if l.hot == nil {
		return nil, hotMark{}, false
	}
	mark := hotMark{seq: l.hot.h.seq.Load()}
	e, ok := l.hot.m.GetIfPresent(key)
	if ok || !l.c.localClock {
		mark.now = time.Since(l.hot.h.base)
	}
	if !ok || !e.servable(l.hot.h, mark.now) || scopeOf(ctx).s != nil || ctx.Err() != nil {
		return nil, mark, false
	}
	l.st.hits.Add(1)
	return e, mark, true
}

// nested returns the scope of the load of this Cache that ctx descends
// from, if any, the local instant before this read asks the store, and
// whether the load needs a fresh value (see scopeFields.needFresh). A load
// that is over is nested in no scope.
func (l *Loader[T]) nested(ctx context.Context) (sc scopeRef, at time.Time, fresh bool) {
	sc = scopeOf(ctx)
	if sc.s == nil || sc.s.c != l.c {
		return scopeRef{}, time.Time{}, false
	}
	s := sc.lock()
	if s == nil {
		return scopeRef{}, time.Time{}, false
	}
	fresh = s.needFresh
	s.mu.Unlock()
	return sc, time.Now(), fresh
}

// fetch is Fetch's read path for the Get g describes: it leaves the
// outcome the caller takes in g.res (a flight's), or else in g.out (its
// own lookup's), and returns whether the caller ran its load, or returns
// the error of a caller that gave up (its context ended, the Cache
// closed). The outcome is not copied into the caller's frame, and
// enter's lookup is a call of its own, so that a caller that joins a
// flight (as most callers of a stampede on a remote store do) waits on a
// stack of a few small frames: 250 callers woken at once would otherwise
// each grow their stacks before they can wait.
func (g *getter[T]) fetch() (bool, error) {
	l, ctx := g.l, g.ctx
	g.gen, g.began = l.c.invGen.Load(), l.flights.clock.Load()
	for attempt := 0; ; attempt++ {
		f, owner, err, done := g.enter(attempt)
		if done {
			return owner, err
		}
		if !owner || !f.inline {
			fdone, private, gone := f.signals(!owner)
			if gone {
				return g.alone()
			}
			select {
			case <-fdone:
			case <-private:
				return g.alone()
			case <-ctx.Done():
				return false, ctx.Err()
			}
		}
		o := &f.out // f has finished: its outcome is set, and stays
		if o.retry {
			continue
		}
		if o.followed {
			owner = false // the load was another flight's
		}
		switch {
		case o.private && !owner:
			return g.alone()
		case g.fresh && !owner && o.status == StatusStale:
			// The flight was another caller's, who may take a stale
			// value; this one needs a fresh value: look up again (and
			// load, or wait for the holder, in a flight of its own).
			continue
		case owner || o.takeable(g.began, g.j, g.known, g.gen) || attempt > 0 && hooks.RetryTakesAny.Load():
			g.res = o // f.out: the flight is not reused before the Get is done with it
			if owner {
				g.owned = f
			}
			return owner, nil
		}
		// Not takeable: retry with a lookup of our own. A flight found
		// then may still be older than this caller (a background refresh
		// started from an older lookup), so the retry obeys the same
		// rule; each retry waits for a flight to end, and the lookup
		// that follows either serves, takes the lease, or finds a newer
		// holder, so retries end.
	}
}

// getter is one Fetch of a key: what it asked for, and what it knows.
type getter[T any] struct {
	l     *Loader[T]
	ctx   context.Context
	name  string // the key in the Loader
	key   string // the full key
	load  LoadFunc[T]
	pol   policy
	at    time.Time // local instant before the first lookup, if nested
	fresh bool      // serve no stale value (see scope.needFresh)
	hot   hotMark   // when the Get read the hot tier, if there is one
	w     *work[T]  // built only on the paths that need a flight
	// owned is the flight whose outcome the Get took as its owner: once
	// the Get is done with the outcome, which may point into it, it may
	// go back to the pool (see group.reuse).
	owned *flight[T]
	// out is the outcome of the Get's lookup, the one it takes if it is
	// served from it; res, if set, is the one it takes instead, a
	// flight's (see fetch).
	out outcome[T]
	res *outcome[T]

	j     store.Ticket // this caller's own ticket, once it has looked up
	known bool
	// gen is the count of invalidations gone pending (unacknowledged by
	// the store) when this caller began: a flight that began before a
	// later one cannot be taken by its ticket, which the store never saw
	// fenced.
	gen uint64
	// began is the mark clock when this caller began: a flight's read,
	// load or fill with a higher mark began after it.
	began uint64
}

// launch starts flight f for the Get with plan p. The flight carries its
// own copy of the Get's work, so that a miss allocates none for it.
func (g *getter[T]) launch(f *flight[T], p plan) {
	f.working()
	f.w = work[T]{l: g.l, key: g.key, load: g.load, pol: g.pol, fresh: g.fresh}
	f.w.start(g.ctx, f, p)
}

// work returns the work of the Get for a refresh, built on first use so
// that a hit allocates none.
func (g *getter[T]) work() *work[T] {
	if g.w == nil {
		g.w = &work[T]{l: g.l, key: g.key, load: g.load, pol: g.pol, fresh: g.fresh}
	}
	return g.w
}

// enter looks the key up and either settles the Get (done: served, or
// failed) or returns the flight to wait on, started or joined.
func (g *getter[T]) enter(attempt int) (f *flight[T], owner bool, err error, done bool) {
	// On a remote store, callers of one key in this process share one
	// lookup (a stampede asks the store once). A background refresh is
	// not waited for: the caller looks up and serves the stale value
	// (unless it needs a fresh one).
	if g.l.c.remote && attempt == 0 {
		if f, owner = g.l.flights.joinOrStart(g.key, g.pol.tags, !g.fresh, false); owner {
			err, done = g.ownerLookup(f)
			return f, true, err, done
		}
		if f != nil {
			return f, false, nil, false
		}
	}
	return g.lookUp(attempt)
}

// lookUp is enter's own lookup of the key, a call apart so that a caller
// that joins a flight does not carry its stack frame.
func (g *getter[T]) lookUp(attempt int) (f *flight[T], owner bool, err error, done bool) {
	l, ctx, full := g.l, g.ctx, g.key
	var (
		seq0  uint64
		local time.Time // a retry's; the first attempt's is its hot mark's
	)
	if l.hot != nil {
		if attempt == 0 {
			// Read before this lookup (and judged from then, which is
			// safe: a copy's windows only shrink).
			seq0 = g.hot.seq
		} else if seq0 = l.hot.h.seq.Load(); !l.c.localClock {
			local = time.Now()
		}
	}
	lk, err := l.c.lookup(ctx, full, l.request(&g.pol, l.c.token()), l.st)
	act := l.decide(full, &lk, err, 0, g.at, g.fresh, &g.out)
	if l.hot != nil && act == actServe && g.out.status == StatusHit && g.at.IsZero() {
		switch {
		case l.c.localClock:
			local = lk.Now // the instant the store judged the entry at
		case attempt == 0:
			local = l.hot.h.base.Add(g.hot.now)
		}
		l.hot.put(g.name, full, &g.out, seq0, local)
	}
	if err == nil {
		// A lookup that serves an entry may report a lower bound of the
		// ticket (redisstore on Cluster); only a miss's or a lease's
		// ticket is exact enough to judge flights by.
		g.j, g.known = lk.Ticket, lk.State == store.StateMiss || lk.Lease
	}
	switch act {
	case actFail:
		return nil, false, err, true
	case actServe:
		return nil, true, nil, true
	case actServeRefresh:
		g.work().refresh(ctx, lk)
		return nil, true, nil, true
	case actNoStore: // load without the store, still coalesced
		if f, owner = l.flights.joinOrStart(full, g.pol.tags, false, true); owner {
			g.launch(f, plan{noStore: true})
		}
	case actLoad:
		f, owner = l.flights.start(full, g.pol.tags, false), true
		f.reusable = true
		g.launch(f, plan{lk: f.keep(lk)})
	default:
		// The lease is held and no flight is registered here, or it was
		// not granted: the holder is another process, or a caller of
		// this one between its lookup and flights.start. Either way this
		// flight waits for the holder's fill through the store, and
		// loads only once the lease is free, so loads of the key never
		// overlap.
		if f, owner = l.flights.joinOrStart(full, g.pol.tags, false, true); owner {
			g.launch(f, plan{lk: f.keep(lk)})
		}
	}
	return f, owner, nil, false
}

// alone runs the Get's own load, shared with no one: the flight it joined
// produced a value for its own caller only (see Private).
func (g *getter[T]) alone() (bool, error) {
	f := g.l.flights.unregistered(g.key, g.pol.tags)
	g.launch(f, plan{solo: true})
	fdone, _, _ := f.signals(false)
	select {
	case <-fdone:
		g.res = &f.out // an unregistered flight: never reused
		return true, nil
	case <-g.ctx.Done():
		return false, g.ctx.Err()
	}
}

// ownerLookup makes the first lookup of flight f on a remote store in the
// owner's own goroutine, so that a hit costs no goroutine (and no flight
// work). If the entry is servable it settles the flight with it (done);
// otherwise the flight goes on in the background to load or wait, and the
// owner waits on it like any caller. If the owner's context ends during
// the lookup, the flight is handed to a goroutine so that its joiners are
// not stranded.
func (g *getter[T]) ownerLookup(f *flight[T]) (err error, done bool) {
	l, ctx := g.l, g.ctx
	mark := f.begin()
	at := time.Now() // joiners may be nested Gets: the flight notes it for them
	lk, err := l.c.lookup(ctx, f.key, l.request(&g.pol, l.c.token()), l.st)
	act := l.decide(f.key, &lk, err, mark, at, g.fresh, &g.out)
	switch act {
	case actNoStore:
		g.launch(f, plan{noStore: true})
		return nil, false
	case actFail:
		// The caller is gone (or the store closed); the flight's joiners
		// are not. The lookup may have been granted the lease: the Cache
		// keeps its token, and the flight's own lookup takes it back.
		g.launch(f, plan{})
		return err, true
	case actServe:
		l.flights.finish(f.key, f, g.out)
		if l.hot != nil && g.out.status == StatusHit && g.at.IsZero() {
			// A near cache: the owner's mark was read before this lookup.
			l.hot.put(g.name, f.key, &g.out, g.hot.seq, l.hot.h.base.Add(g.hot.now))
		}
		return nil, true
	case actServeRefresh:
		// The lookup flight ends first, then the refresh registers:
		// joiners that retry find it.
		l.flights.finish(f.key, f, g.out)
		g.work().refresh(ctx, lk)
		return nil, true
	}
	g.launch(f, plan{lk: f.keep(lk), mark: mark})
	return nil, false
}

// result turns a flight's outcome into a caller's answer and counts it.
func (l *Loader[T]) result(o *outcome[T], owner bool) (Result[T], error) {
	r := Result[T]{Value: o.val, Status: o.status, Age: o.age, LoadErr: o.loadErr, FillErr: o.fillErr, Stored: o.filled != 0}
	switch {
	case o.entry != nil:
		r.TTL = o.entry.FreshUntil.Sub(o.now)
	case o.made != nil && !o.noStore:
		r.TTL = o.made.TTL
	}
	switch o.status {
	case StatusHit:
		l.st.hits.Add(1)
	case StatusStale, StatusStaleIfError:
		l.st.staleHits.Add(1)
	case StatusLoaded:
		l.st.misses.Add(1)
		if !owner {
			r.Status = StatusCoalesced
			l.st.coalesced.Add(1)
		}
	}
	return r, o.err
}

// ErrFenced is returned by [Loader.Set] when an invalidation of the key or
// of one of its tags raced the write: the write was refused and no entry
// of the key older than the Set is left, so the next Get loads. It needs
// no handling beyond logging.
var ErrFenced = errors.New("paddock: write refused: an invalidation raced it")

// Peek returns the entry of key without loading it. found is false when the
// cache has no servable entry. A cached "not found" is found, with
// [ErrNotFound].
func (l *Loader[T]) Peek(ctx context.Context, key string) (r Result[T], found bool, err error) {
	if l.c.closed.Load() {
		return r, false, ErrClosed
	}
	full := l.prefix + key
	sc, at, _ := l.nested(ctx)
	lk, err := l.c.lookup(ctx, full, store.LookupRequest{}, l.st)
	if err != nil {
		return r, false, err
	}
	var o outcome[T]
	ok := l.read(full, &lk, 0, at, &o)
	if sc.s != nil {
		// Found or not, the outer value is built from what Peek saw.
		sc.add(o.input(full))
	}
	if !ok {
		return r, false, nil
	}
	return Result[T]{Value: o.val, Status: o.status, Age: o.age, TTL: o.entry.FreshUntil.Sub(o.now)}, true, o.err
}

// Set writes v under key as a versioned write: it is refused (with
// [ErrFenced]) if an invalidation of key or of one of its tags lands
// between the start of Set and its write, and once it is written no load
// that began before it can overwrite it. Use it right after writing the
// source of truth, instead of invalidating, when the new value is at hand.
//
// Entries built from key by nested Gets are invalidated once the write is
// done (see [DependencyTag]); if that invalidation is not acknowledged, Set
// returns its error, wrapping [ErrStoreUnavailable], and the Cache retries
// it as [Cache.Invalidate] does. The write itself stands.
func (l *Loader[T]) Set(ctx context.Context, key string, v T, opts ...GetOption) error {
	if l.c.closed.Load() {
		return ErrClosed
	}
	pol, err := l.policyFor(opts)
	if err != nil {
		return err
	}
	b, err := l.vc.encode(v)
	if err != nil {
		return err
	}
	full := l.prefix + key
	if l.c.audit != nil {
		l.c.audit.wrote([]string{full}, nil)
	}
	lk, err := l.c.lookup(ctx, full, store.LookupRequest{}, l.st)
	if err != nil {
		return err // the store's error names the key
	}
	// A Set covered by a pending invalidation is sent all the same: it
	// follows a write made after that invalidation returned, so its value
	// is the newer, and this process serves it only once the retry has
	// landed (which drops or softens it too, as it would any older entry).
	accepted, err := l.c.fill(ctx, full, &store.Fill{
		Value: b, Tags: mergeTags(pol.tags, nil), Ticket: lk.Ticket, Set: true,
		TTL: pol.ttl, Stale: pol.stale, StaleIfError: pol.staleIfError,
	}, l.st)
	if l.c.hot != nil && l.c.remote {
		// A near cache: the key's copies in this process go now, the
		// other processes' when the store's feed tells them.
		l.c.hot.bump([]string{full}, nil)
	}
	switch {
	case err != nil:
		l.c.recordFill(l.st, fillResult(err))
		return err
	case !accepted:
		l.st.fillsRefused.Add(1)
		l.c.recordFill(l.st, FillFenced)
		return ErrFenced
	}
	l.c.recordFill(l.st, FillStored)
	return l.c.invalidate(ctx, store.Invalidation{Tags: []string{DependencyTag(full)}})
}

// Invalidate invalidates keys of this loader; see [Cache.Invalidate].
func (l *Loader[T]) Invalidate(ctx context.Context, keys ...string) error {
	return l.c.Invalidate(ctx, l.keys(keys)...)
}

// MarkStale soft-invalidates keys of this loader; see [Cache.MarkStale].
func (l *Loader[T]) MarkStale(ctx context.Context, keys ...string) error {
	return l.c.MarkStale(ctx, l.keys(keys)...)
}

func (l *Loader[T]) keys(keys []string) []string {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = l.prefix + k
	}
	return full
}
