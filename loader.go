package paddock

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

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
	// LoadErr, with StatusStaleIfError, is the error of the failed load.
	LoadErr error
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
	lc := loaderConfig{policy: defaultPolicy()}
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
	return &Loader[T]{
		c:       c,
		ns:      namespace,
		prefix:  namespace + ":",
		vc:      newValueCodec[T](lc.version, lc.codec),
		policy:  lc.policy,
		flights: newGroup[T](),
		st:      c.counters(namespace),
	}, nil
}

// Namespace returns the loader's namespace.
func (l *Loader[T]) Namespace() string { return l.ns }

// Key returns the full store key of key: "namespace:key". It is what
// [Cache.Invalidate] takes.
func (l *Loader[T]) Key(key string) string { return l.prefix + key }

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
	r, err := l.Fetch(ctx, key, load, opts...)
	return r.Value, err
}

// Fetch returns the value of key with where it came from:
//
//  1. It asks the store. A fresh entry is returned (StatusHit). A stale one
//     is returned at once (StatusStale) and, if this caller won the key's
//     lease, refreshed in the background; so is a fresh one that XFetch
//     picked for early refresh.
//  2. Otherwise the caller joins the load already running for key in this
//     process, or, holding the lease, starts it. Callers in other
//     processes on a shared store wait for the lease holder's fill. The
//     load runs once per key.
//  3. The load's result is written back only if no invalidation of the key
//     or of any of its tags happened since the load began (the fence), and
//     returned to every caller allowed to take it (see the package doc).
//
// If ctx ends, Fetch returns ctx.Err() at once; the load goes on for the
// other callers. If the load fails and the entry is inside its
// stale-if-error window, the old value is returned (StatusStaleIfError)
// with a nil error. If the store fails, Fetch loads without it. A load that
// panics gives every caller a [*PanicError].
//
// WARNING: load runs on a context detached from ctx: canceling ctx does not
// stop it. It ends after the load timeout.
func (l *Loader[T]) Fetch(ctx context.Context, key string, load LoadFunc[T], opts ...GetOption) (Result[T], error) {
	if load == nil {
		return Result[T]{}, invalid("Get: nil load function")
	}
	if l.c.closed.Load() {
		return Result[T]{}, ErrClosed
	}
	pol, err := l.policyFor(opts)
	if err != nil {
		return Result[T]{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result[T]{}, err
	}
	full := l.prefix + key
	// The work of a flight is built only on the paths that need one, so
	// that a hit allocates nothing here.
	var w *work[T]
	flightWork := func() *work[T] {
		if w == nil {
			w = &work[T]{l: l, key: full, load: load, pol: pol}
		}
		return w
	}

	var (
		j     store.Ticket // this caller's own ticket, once it has looked up
		known bool
		// gen is the count of invalidations gone pending (unacknowledged
		// by the store) when this caller began: a flight that began
		// before a later one cannot be taken by its ticket, which the
		// store never saw fenced.
		gen = l.c.invGen.Load()
		// began is the mark clock when this caller began: a flight's
		// read, load or fill with a higher mark began after it.
		began = l.flights.clock.Load()
	)
	for attempt := 0; ; attempt++ {
		var (
			f     *flight[T]
			owner bool
		)
		// On a remote store, callers of one key in this process share one
		// lookup (a stampede asks the store once). A background refresh is
		// not waited for: the caller looks up and serves the stale value.
		if l.c.remote && attempt == 0 {
			if f, owner = l.flights.joinOrStart(full, true); owner {
				if r, err, done := l.ownerLookup(ctx, f, &pol, flightWork); done {
					return r, err
				}
			}
		}
		if f == nil {
			lk, err := l.c.lookup(ctx, full, l.request(&pol, l.c.token()), l.st)
			token := lk.token // the token the lookup was sent with
			switch {
			case unavailable(err): // load without the store, still coalesced
				if f, owner = l.flights.joinOrStart(full, false); owner {
					flightWork().start(ctx, f, plan{noStore: true})
				}
			case err != nil:
				return Result[T]{}, err
			default:
				// A lookup that serves an entry may report a lower bound
				// of the ticket (redisstore on Cluster); only a miss's or
				// a lease's ticket is exact enough to judge flights by.
				j, known = lk.Ticket, lk.State == store.StateMiss || lk.Lease
				if o, ok := l.serve(ctx, full, &lk, token, 0, flightWork); ok {
					return l.result(&o, true)
				}
				if lk.Lease {
					f, owner = l.flights.start(full, false), true
					flightWork().start(ctx, f, plan{lk: escape(lk), token: token})
				} else if f, owner = l.flights.joinOrStart(full, false); owner {
					// The lease is held and no flight is registered here:
					// the holder is another process, or a caller of this
					// one between its lookup and flights.start. Either
					// way this flight waits for the holder's fill through
					// the store, and loads only once the lease is free, so
					// loads of the key never overlap.
					flightWork().start(ctx, f, plan{lk: escape(lk), token: token})
				}
			}
		}

		select {
		case <-f.done:
		case <-ctx.Done():
			return Result[T]{}, ctx.Err()
		}
		o := &f.out
		if owner || o.takeable(began, j, known, gen) || attempt > 0 && hooks.RetryTakesAny.Load() {
			return l.result(o, owner)
		}
		// Not takeable: retry with a lookup of our own. A flight found
		// then may still be older than this caller (a background refresh
		// started from an older lookup), so the retry obeys the same
		// rule; each retry waits for a flight to end, and the lookup
		// that follows either serves, takes the lease, or finds a newer
		// holder, so retries end.
	}
}

// ownerLookup makes the first lookup of a flight on a remote store in the
// owner's own goroutine, so that a hit costs no goroutine. If the entry is
// servable it settles the flight with it (done); otherwise the flight goes
// on in the background to load or wait, and the owner waits on it like any
// caller. If the owner's context ends during the lookup, the flight is
// handed to a goroutine so that its joiners are not stranded.
func (l *Loader[T]) ownerLookup(ctx context.Context, f *flight[T], pol *policy, flightWork func() *work[T]) (r Result[T], err error, done bool) {
	mark := f.begin()
	lk, err := l.c.lookup(ctx, f.key, l.request(pol, l.c.token()), l.st)
	switch {
	case unavailable(err):
		flightWork().start(ctx, f, plan{noStore: true})
		return r, nil, false
	case err != nil:
		// The caller is gone (or the store closed); the flight's joiners
		// are not. The lookup may have been granted the lease: the Cache
		// keeps its token, and the flight's own lookup takes it back.
		flightWork().start(ctx, f, plan{})
		return r, err, true
	}
	token := lk.token
	if o, ok := l.read(f.key, &lk, mark); ok {
		// The lookup flight ends first, then the refresh (if this lookup
		// was granted its lease) registers: joiners that retry find it.
		l.flights.finish(f.key, f, o)
		if lk.Lease {
			flightWork().refresh(ctx, lk, token)
		}
		r, err = l.result(&o, true)
		return r, err, true
	}
	flightWork().start(ctx, f, plan{lk: escape(lk), mark: mark, token: token})
	return r, nil, false
}

// escape returns a heap copy of lk for a flight, so that the caller's own
// lk stays on its stack.
func escape(lk reply) *reply { return &lk }

// result turns a flight's outcome into a caller's answer and counts it.
func (l *Loader[T]) result(o *outcome[T], owner bool) (Result[T], error) {
	r := Result[T]{Value: o.val, Status: o.status, Age: o.age, LoadErr: o.loadErr, FillErr: o.fillErr}
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

// work is one Get's key, load and options, shared with its flights.
type work[T any] struct {
	l    *Loader[T]
	key  string
	load LoadFunc[T]
	pol  policy
}

func (w *work[T]) self() *work[T] { return w }

func (w *work[T]) request(token uint64) store.LookupRequest { return w.l.request(&w.pol, token) }

// request is the lookup a Get makes with lease token.
func (l *Loader[T]) request(pol *policy, token uint64) store.LookupRequest {
	if hooks.NoLease.Load() {
		token = 0
	}
	return store.LookupRequest{Lease: token, LeaseTTL: l.c.cfg.leaseTTL, Early: pol.early(l.c.cfg.rand)}
}

// serve reads a servable entry from lk (see read) and, if the lookup also
// granted the lease (the entry is stale, or due for early refresh), starts
// its background refresh with w(). w is called only then, so a plain hit
// builds no flight work.
func (l *Loader[T]) serve(ctx context.Context, key string, lk *reply, token, mark uint64, w func() *work[T]) (outcome[T], bool) {
	o, ok := l.read(key, lk, mark)
	if ok && lk.Lease {
		w().refresh(ctx, *lk, token)
	}
	return o, ok
}

// read turns a servable entry into an outcome; ok is false when the entry
// is not servable, is covered by a pending invalidation, or does not
// decode.
func (l *Loader[T]) read(key string, lk *reply, mark uint64) (o outcome[T], ok bool) {
	if lk.State != store.StateFresh && lk.State != store.StateStale {
		return o, false
	}
	e := lk.Entry
	if l.c.coveredSince(key, e.Tags, lk.applied) {
		return o, false
	}
	o = outcome[T]{status: StatusHit, age: lk.Now.Sub(e.Created), fenced: true, ticket: e.Ticket, started: mark, gen: lk.gen}
	if lk.State == store.StateStale {
		o.status = StatusStale
	}
	if e.Negative {
		o.err = ErrNotFound
		return o, true
	}
	v, err := l.vc.decode(e.Value)
	if err != nil {
		l.st.decodeErrors.Add(1)
		return o, false
	}
	o.val = v
	return o, true
}

// refresh reloads the entry in the background with the lease lk granted
// to token, while its old value is served.
func (w *work[T]) refresh(ctx context.Context, lk reply, token uint64) {
	c := w.l.c
	if lk.State == store.StateFresh {
		w.l.st.earlyRefreshes.Add(1)
	}
	w.l.st.refreshes.Add(1)
	f := w.l.flights.start(w.key, true)
	ok := c.spawn(func() {
		w.run(ctx, f, plan{lk: &lk, token: token})
		// Nobody waits for a background refresh: report its failure.
		if err := cmp.Or(f.out.loadErr, f.out.err); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrClosed) {
			c.cfg.logger.Warn("paddock: background refresh failed", "key", w.key, "err", err)
		}
	})
	if !ok { // closed
		c.release(context.WithoutCancel(ctx), w.key, token, w.l.st)
		w.l.flights.finish(w.key, f, outcome[T]{err: ErrClosed})
	}
}

// plan is how a flight starts.
type plan struct {
	lk      *reply // a lookup already made for the flight; nil: look up first
	mark    uint64 // the flight's mark when lk was sent (0: before the flight)
	token   uint64 // the lease token of lk, or the token to look up with
	noStore bool   // the store is unavailable: load, do not fill
}

// start runs the flight f on a goroutine of the Cache. Once the Cache is
// closed it runs nothing: it gives back the lease the plan may hold and
// ends f with ErrClosed.
func (w *work[T]) start(ctx context.Context, f *flight[T], p plan) {
	if w.l.c.spawn(func() { w.run(ctx, f, p) }) {
		return
	}
	if !p.noStore {
		w.l.c.release(context.WithoutCancel(ctx), w.key, p.token, w.l.st)
	}
	w.l.flights.finish(w.key, f, outcome[T]{err: ErrClosed})
}

var errGoexit = errors.New("paddock: load called runtime.Goexit")

// run is the body of a flight: look up (or poll the lease holder), load,
// fill, and publish the outcome. It runs on its own goroutine, on a context
// detached from the caller that started it.
func (w *work[T]) run(ctx context.Context, f *flight[T], p plan) {
	ctx = context.WithoutCancel(ctx)
	l, c := w.l, w.l.c
	var (
		out      outcome[T]
		finished bool
		lease    uint64 // a lease to give back if the flight dies
	)
	defer func() {
		if !finished { // the load called runtime.Goexit
			c.release(ctx, w.key, lease, l.st)
			l.flights.finish(w.key, f, outcome[T]{err: errGoexit})
		}
	}()

	lk, token, mark := p.lk, p.token, p.mark
	var waitUntil time.Time
	backoff := time.Millisecond
	for !p.noStore {
		own := false
		if lk == nil {
			if token == 0 {
				token = c.token()
			}
			mark = f.begin()
			r, err := c.lookup(ctx, w.key, w.request(token), l.st)
			if err != nil {
				if errors.Is(err, ErrClosed) {
					out, finished = outcome[T]{err: ErrClosed}, true
					l.flights.finish(w.key, f, out)
					return
				}
				p.noStore = true
				break
			}
			token = r.token
			lk, own = &r, true
		}
		// A lookup handed over in the plan was already found unservable
		// by the caller (or is being refreshed); only our own lookups are
		// read here.
		if own {
			// On a remote store this lookup was made for the flight's
			// callers: a stale (or early-refresh) value reaches them at
			// once.
			if o, ok := l.serve(ctx, w.key, lk, token, mark, w.self); ok {
				out = o
				break
			}
		}
		if lk.Lease || !lk.Held {
			// Ours to load: with the lease, or without one when the entry
			// did not decode (fenced by the ticket all the same).
			if lk.Lease {
				lease = token
			} else {
				token = 0
			}
			out = w.loadAndFill(ctx, f, lk, token, mark)
			break
		}
		// Another caller (likely another process) holds the lease: wait
		// for its fill, up to the wait bound, then load for ourselves.
		if waitUntil.IsZero() {
			waitUntil = time.Now().Add(c.cfg.waitTimeout)
		} else if !time.Now().Before(waitUntil) {
			out = w.loadAndFill(ctx, f, lk, 0, mark)
			break
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-c.closing.Done():
			t.Stop()
			out, finished = outcome[T]{err: ErrClosed}, true
			l.flights.finish(w.key, f, out)
			return
		}
		backoff = min(2*backoff, 50*time.Millisecond)
		lk = nil
	}
	if p.noStore {
		out = w.loadAndFill(ctx, f, nil, 0, 0)
	}
	finished = true
	l.flights.finish(w.key, f, out)
}

// ErrLoadTimeout is matched (with [errors.Is]) by the error of a load that
// ran out of its [LoadTimeout]. The error matches
// [context.DeadlineExceeded] too, but says that the load, not the caller,
// ran out of time.
var ErrLoadTimeout = errors.New("paddock: load timed out")

// loadAndFill runs the load and writes its result with lk's ticket, holding
// lease (or none). Without lk (store unavailable) nothing is written.
// fallbackMark is the mark of the read that produced lk, for a
// stale-if-error value.
func (w *work[T]) loadAndFill(ctx context.Context, f *flight[T], lk *reply, lease uint64, fallbackMark uint64) outcome[T] {
	lctx, ts, cancel := w.l.c.loadContext(ctx, w.pol.loadTimeout)
	defer cancel()
	mark := f.begin()
	gen := w.l.c.invGen.Load()
	start := time.Now()
	v, err := callLoad(lctx, w.load)
	err = w.l.c.loadError(lctx, err, w.pol.loadTimeout)
	w.l.st.loads.Add(1)
	return w.settle(ctx, f, lk, lease, fallbackMark, loaded[T]{v, err, time.Since(start), ts.list(), mark, gen})
}

// loadContext is the context a load runs on: ctx (detached from callers)
// with the load timeout, canceled too when the Cache closes, and carrying
// the set of tags the load names.
func (c *Cache) loadContext(ctx context.Context, timeout time.Duration) (context.Context, *tagSet, context.CancelFunc) {
	lctx, cancel := context.WithTimeout(ctx, timeout)
	stop := context.AfterFunc(c.closing, cancel)
	lctx, ts := withTags(lctx)
	return lctx, ts, func() { stop(); cancel() }
}

// loadError says why a load that returned err failed when its own timeout
// is the reason.
func (c *Cache) loadError(lctx context.Context, err error, timeout time.Duration) error {
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(lctx.Err(), context.DeadlineExceeded) {
		if err != nil && errors.Is(err, context.Canceled) && c.closed.Load() {
			return fmt.Errorf("%w: %w", ErrClosed, err)
		}
		return err
	}
	return fmt.Errorf("%w after %v: %w", ErrLoadTimeout, timeout, err)
}

// loaded is what a load produced, and the mark and pending-invalidation
// count at which it began.
type loaded[T any] struct {
	val  T
	err  error
	dur  time.Duration
	tags []string
	mark uint64
	gen  uint64
}

// settle turns a load's result into the flight's outcome and, unless lk is
// nil, fills the store with it (a negative entry for ErrNotFound).
func (w *work[T]) settle(ctx context.Context, f *flight[T], lk *reply, lease uint64, fallbackMark uint64, ld loaded[T]) outcome[T] {
	l, c, pol := w.l, w.l.c, &w.pol
	out := outcome[T]{status: StatusLoaded, started: ld.mark, gen: ld.gen, fenced: true}
	if lk != nil {
		out.ticket = lk.Ticket
	}
	fill := &store.Fill{Lease: lease, LoadDuration: ld.dur}
	switch {
	case ld.err == nil:
		out.val = ld.val
		fill.TTL, fill.Stale, fill.StaleIfError = pol.ttl, pol.stale, pol.staleIfError
		fill.Value, out.fillErr = l.vc.encode(ld.val)
	case errors.Is(ld.err, ErrNotFound):
		out.err = ld.err
		if pol.negativeTTL == 0 {
			lk = nil // nothing to write
		}
		fill.Negative, fill.TTL = true, pol.negativeTTL
	default:
		l.st.loadErrors.Add(1)
		if fb := w.fallback(lk, fallbackMark, ld.dur); fb != nil {
			fb.loadErr = ld.err
			out = *fb
		} else {
			out = outcome[T]{err: ld.err, status: StatusLoaded}
		}
		lk = nil
	}
	if lk == nil || out.fillErr != nil {
		if out.fillErr != nil {
			l.st.fillErrors.Add(1)
		}
		c.release(ctx, w.key, lease, l.st)
		return out
	}
	fill.Ticket = lk.Ticket
	if hooks.NoFence.Load() {
		if now, err := c.lookup(ctx, w.key, store.LookupRequest{}, l.st); err == nil {
			fill.Ticket = now.Ticket
		}
	}
	if hooks.IgnoreLoadTags.Load() {
		ld.tags = nil
	}
	fill.Tags = mergeTags(pol.tags, ld.tags)
	if c.covered(w.key, fill.Tags) {
		// An invalidation of the key or a tag is pending: the store has
		// not seen it, so it cannot refuse this fill. Refuse it here.
		l.st.fillsRefused.Add(1)
		c.release(ctx, w.key, lease, l.st)
		return out
	}
	fmark := f.begin()
	ok, ferr := c.fill(ctx, w.key, fill, l.st)
	switch {
	case ferr != nil:
		l.st.fillErrors.Add(1)
		out.fillErr = ferr
		c.cfg.logger.Warn("paddock: fill failed", "key", w.key, "err", ferr)
		c.release(ctx, w.key, lease, l.st)
	case ok:
		out.filled = fmark
	default:
		l.st.fillsRefused.Add(1)
	}
	return out
}

// fallback returns the stale-if-error outcome of lk's entry, if it is
// still inside its error window now that the load, which took dur after
// the lookup, has failed. (The window is judged when the load fails, not
// when it began: a load that outlives the window returns its error.)
func (w *work[T]) fallback(lk *reply, mark uint64, dur time.Duration) *outcome[T] {
	if lk == nil || lk.Entry == nil || !lk.Now.Add(dur).Before(lk.Entry.ErrorUntil) {
		return nil
	}
	e := lk.Entry
	if w.l.c.coveredSince(w.key, e.Tags, lk.applied) {
		return nil
	}
	o := &outcome[T]{status: StatusStaleIfError, age: lk.Now.Sub(e.Created), fenced: true, ticket: e.Ticket, started: mark, gen: lk.gen}
	if e.Negative {
		o.err = ErrNotFound
		return o
	}
	v, err := w.l.vc.decode(e.Value)
	if err != nil {
		return nil
	}
	o.val = v
	return o
}

// callLoad runs load, turning a panic into a *PanicError.
func callLoad[T any](ctx context.Context, load LoadFunc[T]) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return load(ctx)
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
	lk, err := l.c.lookup(ctx, full, store.LookupRequest{}, l.st)
	if err != nil {
		return r, false, err
	}
	o, ok := l.read(full, &lk, 0)
	if !ok {
		return r, false, nil
	}
	return Result[T]{Value: o.val, Status: o.status, Age: o.age}, true, o.err
}

// Set writes v under key as a versioned write: it is refused (with
// [ErrFenced]) if an invalidation of key or of one of its tags lands
// between the start of Set and its write, and once it is written no load
// that began before it can overwrite it. Use it right after writing the
// source of truth, instead of invalidating, when the new value is at hand.
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
	switch {
	case err != nil:
		return err
	case !accepted:
		l.st.fillsRefused.Add(1)
		return ErrFenced
	}
	return nil
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
