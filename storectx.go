package paddock

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// The deadline of a call to a remote store. context.WithTimeout costs a
// timer per call, armed and stopped in the runtime's timer heap, and three
// allocations: on a Redis hit about a microsecond of a 30 µs call. A store
// call whose caller's context cannot end (a background job's, the Cache's
// own retries) gets a storeCtx instead: the deadline exact (what a
// client sets its socket deadlines from), and a Done channel shared by
// every call whose deadline falls in the same slice of deadlineSlack,
// closed by one timer at the end of that slice. Done thus closes at most
// deadlineSlack after the deadline (plus the timer's own lateness), and
// Err follows Done, as the context contract asks. A caller whose context
// can end keeps context.WithTimeout: its Done must also close when the
// caller's does.

// deadlineSlack is how late a storeCtx's Done may close after its
// deadline, and so the slice of deadlines one timer serves.
const deadlineSlack = time.Millisecond

// deadlines hands out the shared Done channels of a Cache's store calls.
type deadlines struct {
	cur atomic.Pointer[deadlineSlice] // the latest slice
	mu  sync.Mutex                    // serializes making a slice
}

// A deadlineSlice is a Done channel for the deadlines in (end-deadlineSlack, end].
type deadlineSlice struct {
	end  time.Time
	done chan struct{}
}

// slice returns the slice that serves deadline d: the latest one if d is
// in it, else a new one that begins at d.
func (ds *deadlines) slice(d time.Time) *deadlineSlice {
	if s := ds.cur.Load(); s != nil && s.serves(d) {
		return s
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if s := ds.cur.Load(); s != nil && s.serves(d) {
		return s
	}
	s := &deadlineSlice{end: d.Add(deadlineSlack), done: make(chan struct{})}
	if wait := time.Until(s.end); wait > 0 {
		time.AfterFunc(wait, func() { close(s.done) })
	} else {
		close(s.done) // asked first past the slice's end: ended already
	}
	ds.cur.Store(s)
	return s
}

func (s *deadlineSlice) serves(d time.Time) bool {
	return !d.After(s.end) && s.end.Sub(d) <= deadlineSlack
}

// storeCtx is the context of one store call whose caller's context cannot
// end: the caller's values, the call's deadline, and a shared Done.
type storeCtx struct {
	parent   context.Context // Done is nil
	deadline time.Time
	ds       *deadlines
	s        atomic.Pointer[deadlineSlice] // set by the first Done or Err
}

func (x *storeCtx) Deadline() (time.Time, bool) { return x.deadline, true }
func (x *storeCtx) Value(key any) any           { return x.parent.Value(key) }
func (x *storeCtx) String() string              { return "paddock store-call context" }

func (x *storeCtx) Done() <-chan struct{} { return x.slice().done }

// Err is DeadlineExceeded once Done is closed, and nil until then.
func (x *storeCtx) Err() error {
	select {
	case <-x.slice().done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (x *storeCtx) slice() *deadlineSlice {
	if s := x.s.Load(); s != nil {
		return s
	}
	x.s.CompareAndSwap(nil, x.ds.slice(x.deadline)) // a racing call's wins: Done returns one channel
	return x.s.Load()

}

// AfterFunc lets context.AfterFunc, and the contexts derived from x
// (context.WithCancel, WithTimeout), wait for x's end with a timer rather
// than a goroutine each. f runs on its own goroutine once Done is closed.
func (x *storeCtx) AfterFunc(f func()) (stop func() bool) {
	s := x.slice()
	select {
	case <-s.done:
		go f()
		return func() bool { return false }
	default:
	}
	t := time.AfterFunc(time.Until(s.end), func() {
		<-s.done // the slice's own timer may fire a moment after this one
		f()
	})
	return t.Stop
}

// noCancel is the CancelFunc of a storeCtx: it holds nothing to release.
func noCancel() {}
