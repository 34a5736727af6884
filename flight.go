package paddock

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/store"
)

// The flight engine: what a caller does with a lookup (decide), and the
// flights that look up, load and fill on the Cache's goroutines. The join
// rule that says which callers may share a flight's result is in
// singleflight.go.

// action is what a caller does with a lookup.
type action uint8

const (
	// actServe: the entry is servable; serve it.
	actServe action = iota
	// actServeRefresh: serve it, and refresh it in the background with
	// the lease the lookup was granted (it is stale, or its early-refresh
	// instant has come).
	actServeRefresh
	// actLoad: load and fill, holding the lease the lookup was granted.
	actLoad
	// actLoadUnleased: load and fill without a lease, fenced by the
	// lookup's ticket: nobody holds the lease and this lookup was not
	// given it (an entry that did not decode, or leases are off).
	actLoadUnleased
	// actWait: another caller, here or in another process, holds the
	// lease: wait for its fill.
	actWait
	// actNoStore: the store could not answer; load without it.
	actNoStore
	// actFail: return the lookup's error (the caller's context ended, or
	// the Cache or store is closed).
	actFail
)

// decide is the read path's one decision: given a lookup made at mark
// (and local instant at) or its error, it says what to do and, for
// actServe and actServeRefresh, writes the outcome to serve in o. For the
// other actions o holds nothing of use (a miss writes nothing there; see
// read), and the flight's outcome replaces it. A caller that needs a fresh
// value (a nested Get of a refresh, see scope.fresh) is served no stale
// one.
func (l *Loader[T]) decide(key string, lk *reply, err error, mark uint64, at time.Time, fresh bool, o *outcome[T]) action {
	switch {
	case unavailable(err):
		return actNoStore
	case err != nil:
		return actFail
	}
	if fresh && lk.State == store.StateStale {
		return leaseAction(lk)
	}
	if l.read(key, lk, mark, at, o) {
		if lk.Lease {
			return actServeRefresh
		}
		return actServe
	}
	return leaseAction(lk)
}

// leaseAction says who loads an entry that is not servable.
func leaseAction(lk *reply) action {
	switch {
	case lk.Lease:
		return actLoad
	case lk.Held:
		return actWait
	default:
		return actLoadUnleased
	}
}

// read turns a servable entry into the outcome o and reports true. It
// reports false when the entry is not servable or is covered by a pending
// invalidation, leaving o alone, or when it does not decode, leaving in o
// the entry without its value (what a nested Peek depends on).
func (l *Loader[T]) read(key string, lk *reply, mark uint64, at time.Time, o *outcome[T]) bool {
	if lk.State != store.StateFresh && lk.State != store.StateStale {
		return false
	}
	e := lk.Entry
	if l.c.coveredSince(key, e.Tags, lk.applied) {
		return false
	}
	*o = outcome[T]{status: StatusHit, age: lk.Now.Sub(e.Created), fenced: true, ticket: e.Ticket, started: mark, gen: lk.gen, entry: e, now: lk.Now, at: at}
	if lk.State == store.StateStale {
		o.status = StatusStale
	}
	if e.Negative {
		o.err = ErrNotFound
		return true
	}
	v, err := l.vc.decode(e.Value)
	if err != nil {
		l.st.decodeErrors.Add(1)
		return false
	}
	o.val = v
	return true
}

// work is one Get's key, load and options, shared with its flights.
type work[T any] struct {
	l    *Loader[T]
	key  string
	load LoadFunc[T]
	pol  policy
	// fresh: the Get needs a fresh value (see scope.needFresh), and so do
	// the nested Gets of its load.
	fresh bool
}

// request is the lookup a Get makes with lease token.
func (l *Loader[T]) request(pol *policy, token uint64) store.LookupRequest {
	if hooks.NoLease.Load() {
		token = 0
	}
	return store.LookupRequest{Lease: token, LeaseTTL: l.c.cfg.leaseTTL, Early: pol.beta > 0}
}

// plan is how a flight starts.
type plan struct {
	lk      *reply // a lookup already made for the flight, found unservable; nil: look up first
	mark    uint64 // the flight's mark when lk was sent (0: before the flight)
	noStore bool   // the store is unavailable: load, do not fill
	solo    bool   // the caller may not share another's load: never wait for a lease holder
}

// keep returns f's copy of lk, for f's plan: the caller's own lk stays on
// its stack, and no other copy is allocated.
func (f *flight[T]) keep(lk reply) *reply {
	f.working()
	f.lk = lk
	return &f.lk
}

// start runs the flight f for a caller with context ctx. A caller whose
// context can end (ctx.Done is not nil) must be free to return when it
// does, so f runs on a goroutine of the Cache; a caller whose context
// cannot end would wait for f anyway, and runs it on its own goroutine,
// which saves a goroutine's start, its stack growth and two switches on
// every miss. Once the Cache is closed it runs nothing: it gives back the
// lease the plan may hold and ends f with ErrClosed.
func (w *work[T]) start(ctx context.Context, f *flight[T], p plan) {
	c := w.l.c
	if ctx.Done() == nil {
		if c.enter() {
			defer c.bg.exit()
			w.run(ctx, f, p)
			f.inline = true
			return
		}
	} else if c.spawn(func() { _ = growStack(); w.run(ctx, f, p) }) {
		return
	}
	if p.lk != nil && p.lk.Lease {
		w.l.c.release(context.WithoutCancel(ctx), w.key, p.lk.token, w.l.st)
	}
	w.l.flights.finish(w.key, f, outcome[T]{err: ErrClosed})
}

// refresh reloads the entry in the background with the lease lk granted,
// while its old value is served.
func (w *work[T]) refresh(ctx context.Context, lk reply) {
	c := w.l.c
	if lk.State == store.StateFresh {
		w.l.st.earlyRefreshes.Add(1)
	}
	w.l.st.refreshes.Add(1)
	f := w.l.flights.start(w.key, w.pol.tags, true)
	ok := c.spawn(func() {
		_ = growStack()
		w.run(ctx, f, plan{lk: &lk})
		// Nobody waits for a background refresh: report its failure.
		if err := cmp.Or(f.out.loadErr, f.out.err); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrClosed) {
			c.cfg.logger.Warn("paddock: background refresh failed", "key", w.key, "err", err)
		}
	})
	if !ok { // closed
		c.release(context.WithoutCancel(ctx), w.key, lk.token, w.l.st)
		w.l.flights.finish(w.key, f, outcome[T]{err: ErrClosed})
	}
}

// growStack grows the stack of a new goroutine that is about to run a
// flight to what the flight's own calls need, while the stack holds only a
// frame or two. A goroutine starts with a 2 KiB stack, and a flight's
// calls (the lookup, the load, the encoding, the store's fill) need more:
// the runtime would grow the stack twice from deep inside them, each time
// walking every frame to copy it, which cost a miss on a caller whose
// context can end 2 µs, a third of it. The frame of growStack, a little
// over 3 KiB, makes the runtime grow the stack to 4 KiB here, at the cost
// of clearing it. (A technique of CockroachDB's growstack package; Go has
// no way to ask for a goroutine's initial stack size.)
//
//go:noinline
func growStack() byte {
	var b [3 << 10]byte
	b[stackIndex] = 1
	return b[stackIndex/2]
}

// stackIndex, never written, keeps growStack's frame from being optimized
// away.
var stackIndex int

var errGoexit = errors.New("paddock: load called runtime.Goexit")

// onGoexit runs cleanup if the function that deferred it did not set
// *finished: the load it ran called runtime.Goexit.
func onGoexit(finished *bool, cleanup func()) {
	if !*finished {
		cleanup()
	}
}

// run is the body of a flight: look up (or wait for the lease holder),
// load, fill, and publish the outcome. It runs on its own goroutine, on a
// context detached from the caller that started it.
func (w *work[T]) run(ctx context.Context, f *flight[T], p plan) {
	ctx = detach(ctx)
	finished := false
	defer onGoexit(&finished, func() {
		w.l.c.release(ctx, w.key, f.lease.Swap(0), w.l.st)
		w.l.flights.finish(w.key, f, outcome[T]{err: errGoexit})
	})
	w.fly(ctx, f, p, &f.out)
	finished = true
	w.l.flights.publish(w.key, f, nil)
}

// fly writes the outcome of flight f in out (f.out, which nobody reads
// before the flight is published: an outcome is written where it is
// read, not copied up through every call).
func (w *work[T]) fly(ctx context.Context, f *flight[T], p plan, out *outcome[T]) {
	l, c := w.l, w.l.c
	if p.noStore {
		w.loadAndFill(ctx, f, nil, 0, 0, out)
		return
	}
	lk, mark := p.lk, p.mark
	var (
		token     uint64
		waitUntil time.Time
		backoff   = time.Millisecond
		w8        watcher
	)
	defer w8.stop()
	if lk != nil {
		token = lk.token
	}
	for {
		var act action
		polled := lk == nil // this turn's lookup is the flight's own
		if lk == nil {
			if token == 0 {
				token = c.token()
			}
			mark = f.begin()
			r, err := c.lookup(ctx, w.key, l.request(&w.pol, token), l.st)
			switch act = l.decide(w.key, &r, err, mark, time.Now(), w.fresh, out); act {
			case actFail:
				if errors.Is(err, ErrClosed) {
					*out = outcome[T]{err: ErrClosed}
					return
				}
				w.loadAndFill(ctx, f, nil, 0, 0, out)
				return
			case actNoStore:
				w.loadAndFill(ctx, f, nil, 0, 0, out)
				return
			case actServe:
				// On a remote store this lookup was made for the flight's
				// callers: a stale (or early-refresh) value reaches them
				// at once.
				return
			case actServeRefresh:
				w.refresh(ctx, r)
				return
			}
			token, lk = r.token, f.keep(r)
		} else {
			// A lookup handed over in the plan was already found
			// unservable by the caller (or is being refreshed).
			act = leaseAction(lk)
		}
		switch {
		case act == actLoad:
			w.loadAndFill(ctx, f, lk, mark, token, out)
			return
		case act == actLoadUnleased, p.solo:
			w.loadAndFill(ctx, f, lk, mark, 0, out)
			return
		}
		// Another caller (likely another process) holds the lease: wait
		// for its fill, up to the wait bound, then load for ourselves.
		if waitUntil.IsZero() {
			waitUntil = time.Now().Add(c.cfg.waitTimeout)
		} else if !time.Now().Before(waitUntil) {
			w.loadAndFill(ctx, f, lk, mark, 0, out)
			return
		}
		// A store that wakes waiters (store.Waker) says when the holder
		// may have filled or released: look again at once. The watch is
		// set before the lookup that found the lease held, except for the
		// first one, made before the flight: a fill since is seen at the
		// first poll.
		w8.watch(c.waker, w.key)
		nudge, _ := f.poll(true)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-w8.wake:
			t.Stop()
		case <-nudge:
			t.Stop()
		case <-c.closing.Done():
			t.Stop()
			f.poll(false)
			*out = outcome[T]{err: ErrClosed}
			return
		}
		if _, next := f.poll(false); next != nil {
			// The holder is a flight of this process, registered after
			// this one, and has taken its place: take its outcome. If it
			// is not to be shared, this flight, out of the map now, must
			// not go on beside the flights that later callers start:
			// its callers start over.
			if o, ok := w.follow(next); ok {
				*out = o
				return
			}
			*out = outcome[T]{retry: true}
			return
		}
		if polled {
			if w.handed(&w8, lk, mark, out) {
				return
			}
		}
		backoff = min(2*backoff, 50*time.Millisecond)
		w8.renew(c.waker, w.key) // before the next lookup
		lk = nil
	}
}

// follow waits for next, the flight of this process that took the place
// of a flight waiting for its lease, and returns its outcome for the
// waiting flight's callers. Its load began after they did (it registered
// after their flight did), so they may take it, as its own joiners may,
// its error included; a result made private, or a background refresh's
// (which a caller that needs a fresh value may not take), is not shared:
// ok is false, and the waiting flight's callers start over.
func (w *work[T]) follow(next *flight[T]) (o outcome[T], ok bool) {
	done, _, _ := next.signals(false)
	select {
	case <-done:
	case <-w.l.c.closing.Done():
		return outcome[T]{err: ErrClosed}, true
	}
	if next.out.private || next.background {
		return o, false
	}
	o = next.out
	o.followed = true
	return o, true
}

// handed writes in out the outcome of the fill that woke w8's watch, and
// reports true, if the wake-up carried its entry (store.Handoff) and the
// flight's callers may take it: lk is the lookup, made at mark, that found the lease held, and
// the wake-up's answer must be no older than lk's ticket (exact for a
// miss). Then every invalidation that returned before the callers began
// (before mark) came before lk, and so before the instant of that
// answer: it is as good as the reply of a lookup made at mark, which is
// the mark the outcome carries. Anything else (no entry carried, an older
// ticket, an entry a pending invalidation covers) is looked up as before.
//
// Only callers who began before lk was sent may take the outcome: a caller
// that joined the flight later rejects it (see outcome.takeable) and looks
// the key up itself, a round trip of its own where it would have shared
// the flight's. So the flight hands over only after a lookup of its own,
// made by its wait: the lookup handed over in its plan was sent before
// the flight's joiners came (most of them, in a stampede), and a wake-up
// after it is looked up once for all of them, as before.
func (w *work[T]) handed(w8 *watcher, lk *reply, mark uint64, out *outcome[T]) bool {
	if w8.handed == nil || lk == nil || lk.State != store.StateMiss {
		return false
	}
	hl, ok := w8.handed()
	if !ok || !hl.Ticket.AtLeast(lk.Ticket) {
		return false
	}
	r := reply{Lookup: hl, gen: lk.gen, applied: lk.applied, token: lk.token}
	// Decided into out, as fly's own lookups are: what a refusal leaves
	// there, the flight's outcome replaces.
	return w.l.decide(w.key, &r, nil, mark, time.Now(), w.fresh, out) == actServe
}

// watcher is a flight's watch of its key on a store that wakes waiters
// (see store.Waker), with the wake-up's answer if the store hands one
// over (store.Handoff); the zero watcher watches nothing, and a nil waker
// makes every method a no-op.
type watcher struct {
	wake   <-chan struct{}
	handed func() (store.Lookup, bool)
	done   func()
}

// watch starts a watch of key unless one is on.
func (w *watcher) watch(s store.Waker, key string) {
	if s == nil || w.done != nil {
		return
	}
	if h, ok := s.(store.Handoff); ok {
		w.wake, w.handed, w.done = h.WatchFill(key)
		return
	}
	w.wake, w.done = s.Watch(key)
}

// renew replaces the watch with a new one, so that a fill after this
// point wakes the caller.
func (w *watcher) renew(s store.Waker, key string) {
	w.stop()
	w.watch(s, key)
}

func (w *watcher) stop() {
	if w.done != nil {
		w.done()
		w.wake, w.handed, w.done = nil, nil, nil
	}
}

// ErrLoadTimeout is matched (with [errors.Is]) by the error of a load that
// ran out of its [LoadTimeout]. The error matches
// [context.DeadlineExceeded] too, but says that the load, not the caller,
// ran out of time.
var ErrLoadTimeout = errors.New("paddock: load timed out")

// loadAndFill runs f's load, writes its result with lk's ticket,
// holding the lease token (or none, if zero). Without lk (store
// unavailable) nothing is written. lkMark is the mark of the read that
// produced lk, for a stale-if-error value.
func (w *work[T]) loadAndFill(ctx context.Context, f *flight[T], lk *reply, lkMark, token uint64, out *outcome[T]) {
	mark := f.begin()
	var start time.Time
	if token != 0 && lk != nil && w.l.c.localClock {
		// The lookup that granted the lease was the flight's last step,
		// and its instant is one of the Cache's clock: the load's time
		// counts from it, and the clock is read once less.
		start = lk.Now
	} else {
		start = w.l.c.now()
	}
	lctx, sc := w.l.c.loadCtxOn(f.ls, ctx, w.pol.loadTimeout, start)
	f.ls = nil
	sc.needFresh = f.background || w.fresh
	sc.background = f.background
	f.loading(token, sc)
	v, ld := timedLoad(w.l, lctx, w.pol.loadTimeout, sc, start, 1, w.load)
	lctx.finish()
	ld.mark = mark
	fill := w.prepare(f, lk, lkMark, v, ld, out)
	if fill == nil {
		w.l.c.release(ctx, w.key, f.lease.Swap(0), w.l.st)
	} else {
		fmark := f.begin()
		ok, err := w.l.c.fillNow(ctx, w.key, fill, w.l.st, ld.end)
		f.recycle(fill)
		w.filled(ctx, f, out, ok, err, fmark)
	}
	// The scope has been read, and the flight holds the lease no more: an
	// invalidation has nothing left to doom. The state of the load's
	// context goes back for the next load (this flight's own next one, if
	// it is reusable: see flightWork), and the flight, which may still be
	// asked whether its load named a tag (see flight.knows), sees from
	// the generation that its load is over.
	if f.reusable {
		f.ls = releaseLoad(lctx)
	} else {
		w.l.c.doneLoading(lctx)
	}
}

// loaded is how a load went: its error, how long it took, when it ended
// (by this process's clock), its scope, and the mark and
// pending-invalidation count at which it began.
type loaded struct {
	err  error
	dur  time.Duration
	end  time.Time
	sc   *scope
	mark uint64
	gen  uint64
}

// timedLoad runs load on lctx (made by newLoadCtx with timeout and start,
// whose scope is sc) for loader l, and says how it went. A panic becomes a
// *PanicError; running out of the timeout, an ErrLoadTimeout. keys is how
// many keys the load is for, for the Recorder.
func timedLoad[T, V any](l *Loader[T], lctx context.Context, timeout time.Duration, sc *scope, start time.Time, keys int, load func(context.Context) (V, error)) (V, loaded) {
	gen := l.c.invGen.Load()
	v, err := callLoad(lctx, load)
	dur := time.Since(start)
	ld := loaded{err: l.c.loadError(lctx, err, timeout), dur: dur, end: start.Add(dur), sc: sc, gen: gen}
	l.st.loads.Add(1)
	if r := l.c.rec; r != nil {
		r.RecordLoad(LoadEvent{Namespace: l.ns, Result: loadResult(ld.err), Duration: dur, Keys: keys, Background: sc.background})
	}
	return v, ld
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

// callLoad runs load, turning a panic into a *PanicError.
func callLoad[V any](ctx context.Context, load func(context.Context) (V, error)) (v V, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return load(ctx)
}

// prepare turns a load's result (v, ld) into the flight's outcome, in
// out, and returns the fill that writes it with lk's ticket, or nil when
// nothing is to be written: no lk (the store is unavailable), a failed
// load, a result the load keeps out of the cache, or one covered by a
// pending invalidation.
func (w *work[T]) prepare(f *flight[T], lk *reply, lkMark uint64, v T, ld loaded, out *outcome[T]) *store.Fill {
	l, c, pol := w.l, w.l.c, &w.pol
	unreachable := lk == nil // the store could not be asked: nothing is written
	*out = outcome[T]{status: StatusLoaded, started: ld.mark, gen: ld.gen, fenced: true}
	if lk != nil {
		out.ticket = lk.Ticket
	}
	now := ld.end
	var k keptAs
	fill := &f.fill
	*fill = store.Fill{LoadDuration: ld.dur}
	switch {
	case ld.err == nil:
		out.val = v
		k = ld.sc.kept(pol.ttl, pol.stale, pol.staleIfError, now)
		if f.buf, out.fillErr = l.vc.encodeBuf(f.buf, v); out.fillErr == nil {
			fill.Value = *f.buf
		}
	case errors.Is(ld.err, ErrNotFound):
		out.err = ld.err
		if k = ld.sc.kept(pol.negativeTTL, 0, 0, now); pol.negativeTTL == 0 && !k.hasTTL {
			lk = nil // negative caching is off
		}
		fill.Negative = true
	default:
		ld.sc.end()
		l.st.loadErrors.Add(1)
		if fb := w.fallback(lk, lkMark, ld.dur); fb != nil {
			fb.loadErr = ld.err
			*out = *fb
			return nil
		}
		*out = outcome[T]{err: ld.err, status: StatusLoaded}
		return nil
	}
	fill.TTL, fill.Stale, fill.StaleIfError = k.ttl, k.stale, k.staleIfError
	// The entry's early-refresh instant is drawn here, once per fill, not
	// per read: with a draw per read, a key read thousands of times per
	// TTL is almost sure to draw a large factor soon after each fill, and
	// refreshes almost continuously.
	fill.Early = pol.earlyLead(ld.dur, c.exp)
	if hooks.IgnoreLoadTags.Load() {
		k.tags = nil
	}
	fill.Tags = mergeTags(pol.tags, k.tags)
	out.private, out.noStore = k.private, k.noStore
	out.made, out.at = fill, now
	switch {
	case out.fillErr != nil:
		l.st.fillErrors.Add(1)
		c.recordFill(l.st, FillEncodeError)
		return nil
	case unreachable && !k.noStore && k.servable():
		// A value that would have been stored: say why it was not.
		out.fillErr = fmt.Errorf("%w: not stored, the store could not be reached", ErrStoreUnavailable)
		c.recordFill(l.st, FillStoreError)
		return nil
	case lk == nil || k.noStore || !k.servable():
		return nil
	case c.covered(w.key, fill.Tags):
		// An invalidation of the key or a tag is pending: the store has
		// not seen it, so it cannot refuse this fill. Refuse it here.
		l.st.fillsRefused.Add(1)
		c.recordFill(l.st, FillPending)
		return nil
	}
	fill.Ticket, fill.Lease = lk.Ticket, f.lease.Load()
	if hooks.NoFence.Load() {
		if now, err := c.lookup(context.Background(), w.key, store.LookupRequest{}, l.st); err == nil {
			fill.Ticket = now.Ticket
		}
	}
	return fill
}

// filled completes out with the answer (ok, err) to its fill, sent at
// mark.
func (w *work[T]) filled(ctx context.Context, f *flight[T], out *outcome[T], ok bool, err error, mark uint64) {
	l, c := w.l, w.l.c
	switch {
	case err != nil:
		l.st.fillErrors.Add(1)
		out.fillErr = err
		c.recordFill(l.st, fillResult(err))
		c.cfg.logger.Warn("paddock: fill failed", "key", w.key, "err", err)
		c.release(ctx, w.key, f.lease.Swap(0), l.st)
	case ok:
		f.lease.Store(0) // the fill released it
		out.filled = mark
		c.recordFill(l.st, FillStored)
	default:
		f.lease.Store(0)
		l.st.fillsRefused.Add(1)
		c.recordFill(l.st, FillFenced)
	}
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
	o := &outcome[T]{status: StatusStaleIfError, age: lk.Now.Sub(e.Created), fenced: true, ticket: e.Ticket, started: mark, gen: lk.gen,
		entry: e, now: lk.Now, at: time.Now().Add(-dur)}
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
