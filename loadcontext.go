package paddock

import (
	"context"
	"sync/atomic"
	"time"
	"unsafe"
)

// loadCtx is the context a load runs on: its caller's values, detached
// from the caller's cancellation, with the load's deadline, canceled when
// the Cache closes, and carrying the load's scope.
//
// It is a type of its own rather than context.WithTimeout, AfterFunc and
// WithValue stacked, because a load that never asks for Done (most cache
// loads: a query whose driver does not watch the context, a computation)
// then pays for no timer, no link to the Cache's closing and no extra
// contexts: Err judges the deadline by the clock, and Done, or AfterFunc,
// arms both the first time a load or a context derived from it asks.
// context.WithTimeout(lctx, d) and the like find the AfterFunc method and
// start no goroutine of their own.
//
// A loadCtx is one load's view of a loadState, which holds the scope and
// what changes as the context ends, and which the next load of the Cache
// reuses once this one is done with it (see Cache.doneLoading). A load may
// keep its context past its end, so the view carries the generation of the
// state it was made for: once the state is reused, the view behaves as an
// ended context (its Err is context.Canceled, its Done is closed, its
// AfterFuncs run at once) whose scope takes no more writes, as the scope
// of an ended load did before. Views are never reused; a state hands them
// out from a batch of loadViews, allocated at once (see newLoadCtx).
//
// So a miss allocates nothing for its load's context but a share of a
// batch of views, and writes to memory that is in the CPU's caches: with
// a full store, a miss that allocated the 300 bytes of a whole context
// spent a tenth of its time more, most of it on memory fetched to be
// written. A context kept past its load keeps its batch (2 KiB, and the
// values of the contexts of the callers of its loads) from the
// collector.
type loadCtx struct {
	st       *loadState
	gen      uint64 // st.sc.gen when the view was made
	parent   context.Context
	deadline time.Duration // since the Cache's epoch
}

// loadState is the part of a load's context that is reused, from load to
// load: the scope, whose mu guards the rest, and the generation (sc.gen).
type loadState struct {
	sc scope

	// ended is one more than the generation of the load that last
	// returned (see finish): the current load has returned when it is
	// sc.gen+1, and a reused state needs no reset. armed is set once a
	// Done or AfterFunc has made done (see arm); the timer and the
	// AfterFuncs that arming sets up end with the context, and those that
	// run late find the generation moved on (see loadCtx.lock).
	ended atomic.Uint64
	armed atomic.Bool

	err    error
	done   chan struct{} // made by the first Done or AfterFunc
	timer  *time.Timer
	stop   func() bool // the link to closing, once armed
	afters map[*afterFunc]struct{}

	// views holds the views not yet handed out of the state's batch.
	// Only the state's owner (the load, then newLoadCtx) touches it.
	views []loadCtx
}

// loadViews is how many views a batch holds: as many as fill 2 KiB, with
// the header the allocator gives an object that size.
const loadViews = (2<<10 - 8) / int(unsafe.Sizeof(loadCtx{}))

type afterFunc struct{ f func() }

// newLoadCtx returns the context of a load that starts at start with
// timeout, and its scope. Once the load's outcome is settled, give the
// context back with doneLoading.
func (c *Cache) newLoadCtx(ctx context.Context, timeout time.Duration, start time.Time) (*loadCtx, *scope) {
	return c.loadCtxOn(nil, ctx, timeout, start)
}

// loadCtxOn is newLoadCtx on state st, one that releaseLoad gave back, or
// if st is nil on one from the Cache's pool.
func (c *Cache) loadCtxOn(st *loadState, ctx context.Context, timeout time.Duration, start time.Time) (*loadCtx, *scope) {
	if st == nil {
		st, _ = c.loadStates.Get().(*loadState)
	}
	if st == nil {
		st = new(loadState)
		st.sc.c = c
	}
	if len(st.views) == 0 {
		st.views = c.views()
	}
	x := &st.views[0]
	st.views = st.views[1:]
	// st.sc.gen is written only under st.sc.mu, before st went back to
	// the pool: this read, by the state's new owner, races with no write.
	*x = loadCtx{st: st, gen: st.sc.gen, parent: detach(ctx), deadline: start.Sub(c.epoch) + timeout}
	return x, &st.sc
}

// maxKeptTags is the capacity of the largest tag list a reused scope
// keeps.
const maxKeptTags = 64

// views returns a batch of views never handed out: what is left of the
// batch of a state that was not reused (see releaseLoad), or a new one.
func (c *Cache) views() []loadCtx {
	if p, ok := c.spareViews.Get().(*[]loadCtx); ok {
		return *p
	}
	return make([]loadCtx, loadViews)
}

// doneLoading gives x's state back for another load, once nothing of this
// load reads it any more: the load has returned (finish), its scope has
// been read (kept), and its flights no longer look at it (see
// flight.knows). Views of it that the load kept see it ended from then
// on, with context.Canceled. A state whose load saw its context end
// otherwise (its deadline passed, an Err of DeadlineExceeded) is left to
// the collector, since a context's Err does not change once it is set;
// the views its batch has not handed out go to the next state made.
func (c *Cache) doneLoading(x *loadCtx) {
	if st := releaseLoad(x); st != nil {
		c.loadStates.Put(st)
	}
}

// releaseLoad is doneLoading for a caller that keeps the state for its
// next load (see flightWork): it returns the state, ready for loadCtxOn,
// or nil if it may not be reused.
func releaseLoad(x *loadCtx) *loadState {
	st := x.st
	s := &st.sc
	if !s.lockAt(x.gen) {
		return nil // released already: the state, and its views, are another load's
	}
	if st.err != nil && st.err != context.Canceled {
		s.mu.Unlock()
		if views := st.views; len(views) > 0 {
			st.views = nil
			s.c.spareViews.Put(&views)
		}
		return nil
	}
	s.gen++
	tags := s.tags[:0]
	if cap(tags) > maxKeptTags {
		tags = nil
	}
	s.scopeFields = scopeFields{tags: tags}
	// An armed context has ended (finish canceled it): its timer and its
	// link to closing are stopped, its AfterFuncs started, done closed.
	if st.armed.Load() {
		st.err, st.done, st.timer, st.stop, st.afters = nil, nil, nil, nil, nil
		st.armed.Store(false)
	}
	st.err = nil
	s.mu.Unlock()
	return st
}

// detach returns ctx without its cancellation: ctx itself if it has none.
func detach(ctx context.Context) context.Context {
	if _, ok := ctx.Deadline(); ok || ctx.Done() != nil {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

func (x *loadCtx) Deadline() (time.Time, bool) { return x.st.sc.c.epoch.Add(x.deadline), true }

func (x *loadCtx) Value(key any) any {
	if key == (scopeKey{}) {
		return x // see scopeOf
	}
	return x.parent.Value(key)
}

func (x *loadCtx) String() string { return "paddock load context" }

// Err reports the deadline or the Cache's closing as soon as either has
// passed, whether or not Done was armed.
func (x *loadCtx) Err() error {
	if !x.lock() {
		return context.Canceled
	}
	defer x.unlock()
	x.check()
	return x.st.err
}

// lock locks x's state and reports true if x is still its view; if the
// state was reused, it is left unlocked: x has ended (see loadCtx).
func (x *loadCtx) lock() bool { return x.st.sc.lockAt(x.gen) }

func (x *loadCtx) unlock() { x.st.sc.mu.Unlock() }

// check ends the context if its deadline passed or the Cache is closing.
// The caller holds the lock (see lock).
func (x *loadCtx) check() {
	st := x.st
	switch {
	case st.err != nil:
	case st.ended.Load() == x.gen+1:
		st.end(context.Canceled)
	case st.sc.c.closing.Err() != nil:
		st.end(context.Canceled)
	case time.Since(st.sc.c.epoch) >= x.deadline:
		st.end(context.DeadlineExceeded)
	}
}

func (x *loadCtx) Done() <-chan struct{} {
	if !x.lock() {
		return closed
	}
	defer x.unlock()
	x.arm()
	return x.st.done
}

// arm makes done and, unless the context already ended, the timer and the
// link to closing that end it. The caller holds the lock.
func (x *loadCtx) arm() {
	st := x.st
	if st.done != nil {
		return
	}
	st.armed.Store(true) // before check reads ended: see finish
	x.check()            // before done is made: an end here closes nothing
	st.done = make(chan struct{})
	if st.err != nil {
		close(st.done)
		return
	}
	st.timer = time.AfterFunc(x.deadline-time.Since(st.sc.c.epoch), func() { x.cancel(context.DeadlineExceeded) })
	st.stop = context.AfterFunc(st.sc.c.closing, func() { x.cancel(context.Canceled) })
}

// AfterFunc runs f on a goroutine of its own once the context ends, as
// context.AfterFunc does; stop unregisters it (see context.AfterFunc).
func (x *loadCtx) AfterFunc(f func()) (stop func() bool) {
	if !x.lock() {
		go f()
		return func() bool { return false }
	}
	defer x.unlock()
	x.arm()
	st := x.st
	a := &afterFunc{f}
	if st.err != nil {
		go f()
		return func() bool { return false }
	}
	if st.afters == nil {
		st.afters = make(map[*afterFunc]struct{})
	}
	st.afters[a] = struct{}{}
	return func() bool {
		if !x.lock() {
			return false // the context ended, and f ran, before the state was reused
		}
		defer x.unlock()
		_, ok := st.afters[a]
		delete(st.afters, a)
		return ok
	}
}

// finish ends the context with context.Canceled once its load has
// returned (the load may have kept it). A context that nobody armed, most
// of them, takes no lock: ended is enough, since Err and arm read it. It
// is stored before armed is read, and arm stores armed before it reads
// ended, so that one of the two always ends the context.
func (x *loadCtx) finish() {
	x.st.ended.Store(x.gen + 1)
	if x.st.armed.Load() {
		x.cancel(context.Canceled)
	}
}

// cancel ends the context with err, if it has not ended.
func (x *loadCtx) cancel(err error) {
	if !x.lock() {
		return
	}
	defer x.unlock()
	if x.st.err == nil {
		x.st.end(err)
	}
}

// end records err, closes done and runs the AfterFuncs. The caller holds
// the lock and has checked that the context had not ended.
func (st *loadState) end(err error) {
	st.err = err
	if st.done != nil {
		close(st.done)
	}
	if st.timer != nil {
		st.timer.Stop()
	}
	if st.stop != nil {
		st.stop()
	}
	for a := range st.afters {
		go a.f()
	}
	st.afters = nil
}
