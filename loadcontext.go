package paddock

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
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
type loadCtx struct {
	parent   context.Context // detached: no Done; its values
	sc       scope           // one allocation for both
	deadline time.Time
	closing  context.Context // the Cache's

	// ended is set once the load has returned (see finish); armed once a
	// Done or AfterFunc has made done (see arm).
	ended, armed atomic.Bool

	mu     sync.Mutex
	err    error
	done   chan struct{} // made by the first Done or AfterFunc
	timer  *time.Timer
	stop   func() bool // the link to closing, once armed
	afters map[*afterFunc]struct{}
}

type afterFunc struct{ f func() }

func (c *Cache) newLoadCtx(ctx context.Context, timeout time.Duration, start time.Time) (*loadCtx, *scope) {
	x := &loadCtx{parent: detach(ctx), deadline: start.Add(timeout), closing: c.closing}
	x.sc.c = c
	return x, &x.sc
}

// detach returns ctx without its cancellation: ctx itself if it has none.
func detach(ctx context.Context) context.Context {
	if _, ok := ctx.Deadline(); ok || ctx.Done() != nil {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

func (x *loadCtx) Deadline() (time.Time, bool) { return x.deadline, true }

func (x *loadCtx) Value(key any) any {
	if key == (scopeKey{}) {
		return &x.sc
	}
	return x.parent.Value(key)
}

func (x *loadCtx) String() string { return "paddock load context" }

// Err reports the deadline or the Cache's closing as soon as either has
// passed, whether or not Done was armed.
func (x *loadCtx) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.check()
	return x.err
}

// check ends the context if its deadline passed or the Cache is closing.
// The caller holds mu.
func (x *loadCtx) check() {
	switch {
	case x.err != nil:
	case x.ended.Load():
		x.end(context.Canceled)
	case x.closing.Err() != nil:
		x.end(context.Canceled)
	case !time.Now().Before(x.deadline):
		x.end(context.DeadlineExceeded)
	}
}

func (x *loadCtx) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.arm()
	return x.done
}

// arm makes done and, unless the context already ended, the timer and the
// link to closing that end it. The caller holds mu.
func (x *loadCtx) arm() {
	if x.done != nil {
		return
	}
	x.armed.Store(true) // before check reads ended: see finish
	x.check()           // before done is made: an end here closes nothing
	x.done = make(chan struct{})
	if x.err != nil {
		close(x.done)
		return
	}
	x.timer = time.AfterFunc(time.Until(x.deadline), func() { x.cancel(context.DeadlineExceeded) })
	x.stop = context.AfterFunc(x.closing, func() { x.cancel(context.Canceled) })
}

// AfterFunc runs f on a goroutine of its own once the context ends, as
// context.AfterFunc does; stop unregisters it (see context.AfterFunc).
func (x *loadCtx) AfterFunc(f func()) (stop func() bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.arm()
	a := &afterFunc{f}
	if x.err != nil {
		go f()
		return func() bool { return false }
	}
	if x.afters == nil {
		x.afters = make(map[*afterFunc]struct{})
	}
	x.afters[a] = struct{}{}
	return func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		_, ok := x.afters[a]
		delete(x.afters, a)
		return ok
	}
}

// finish ends the context with context.Canceled once its load has
// returned (the load may have kept it). A context that nobody armed, most
// of them, takes no lock: ended is enough, since Err and arm read it. It
// is stored before armed is read, and arm stores armed before it reads
// ended, so that one of the two always ends the context.
func (x *loadCtx) finish() {
	x.ended.Store(true)
	if x.armed.Load() {
		x.cancel(context.Canceled)
	}
}

// cancel ends the context with err, if it has not ended.
func (x *loadCtx) cancel(err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.err == nil {
		x.end(err)
	}
}

// end records err, closes done and runs the AfterFuncs. The caller holds
// mu and has checked that the context had not ended.
func (x *loadCtx) end(err error) {
	x.err = err
	if x.done != nil {
		close(x.done)
	}
	if x.timer != nil {
		x.timer.Stop()
	}
	if x.stop != nil {
		x.stop()
	}
	for a := range x.afters {
		go a.f()
	}
	x.afters = nil
}
