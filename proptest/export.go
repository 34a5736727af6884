package proptest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/paddockcache/paddock/store"
)

// A Backend is a store for the state machine, for a store that lives
// outside this module (its own module's test runs the machine):
//
//	func TestMain(m *testing.M) { proptest.Main(m) }
//
//	func TestMachine(t *testing.T) { proptest.Run(t, myBackend) }
type Backend struct {
	// Checks is the number of checks a plain `go test` runs (CI). The
	// -rapid.checks flag (or RAPID_CHECKS) overrides it.
	Checks int
	// Setup prepares the test (starts a server, say, stopped by
	// t.Cleanup) and returns open, which the machine calls at the start of
	// each check, inside the check's synctest bubble, for a store that is
	// empty as far as the check can tell.
	Setup func(t *testing.T) (open func(t *rapid.T) *Env)
}

// An Env is the store of one check and the controls the machine needs.
// Every function is called from inside the check's bubble and must be safe
// there: a store that does network I/O runs it outside the bubble (see
// [Outside]). Nil optional controls are skipped.
type Env struct {
	// Store is shared by every node.
	Store store.Store
	// Advance moves the store's clock forward by d, just before the
	// bubble's clock moves by d; nil for a store on the bubble's clock or
	// one that follows it on every call. A store's clock may run ahead of
	// the bubble's, never behind.
	Advance func(d time.Duration)
	// Peek reads key without taking a lease (optional).
	Peek func(ctx context.Context, key string) (store.Lookup, error)
	// SetDown makes the store itself unavailable (optional: the nodes'
	// calls fail instead).
	SetDown func(down bool)
	// Flush loses everything; Restart restarts the server (optional).
	Flush, Restart func()
	// FlushNode makes one node (i modulo their number) of a store made of
	// several lose its data (optional).
	FlushNode func(i int)
	// Close releases the store at the end of the check.
	Close func()
	// FillGap says the store calls hooks.FillGap inside its Fill, between
	// the fence check and the write, when hooks.FillTagGap is on: Set
	// actions then race invalidations there.
	FillGap bool
}

// Run runs the state machine (the one TestMemstore and TestRedis run) on
// b's store, with every invariant of docs/guarantees.md checked after
// each action.
func Run(t *testing.T, b Backend) {
	runMachine(t, backend{
		checks: b.Checks,
		setup: func(t *testing.T) func(*rapid.T) *env {
			open := b.Setup(t)
			return func(rt *rapid.T) *env {
				e := open(rt)
				adv := e.Advance
				if adv == nil {
					adv = func(time.Duration) {}
				}
				return &env{
					store: e.Store, advance: adv, peek: e.Peek, setDown: e.SetDown,
					flush: e.Flush, restart: e.Restart, flushNode: e.FlushNode, close: e.Close,
					fillGap: e.FillGap,
				}
			}
		},
	})
}

// Outside runs functions on goroutines outside every synctest bubble, for
// a store whose calls do network I/O (see [Outside.Store]).
type Outside struct{ o *outside }

// NewOutside starts the goroutine that runs Outside's functions; it ends
// with t.
func NewOutside(t *testing.T) *Outside { return &Outside{newOutside(t)} }

// Do runs f outside the bubble and waits for it. A panic in f is raised
// again in the caller.
func (o *Outside) Do(f func()) { o.o.do(f) }

// Store returns s called from outside the bubble, as a [store.Remote]:
// each call drops its caller's context (whose deadline is on the
// bubble's clock) for a real timeout of its own, after calling tick (nil:
// none), which may publish the bubble's clock to the store.
func (o *Outside) Store(s store.Store, tick func()) store.Store {
	if tick == nil {
		tick = func() {}
	}
	return &outsideStore{out: o.o, s: s, tick: tick}
}

// A BubbleClock publishes a synctest bubble's clock to a real store: the
// bubble's time since it was made, as last seen by Tick, which never goes
// back. A store that adds Offset to the TTLs it writes and subtracts it
// from those it reads (redisstore's and memcachestore's TimeOffset) then
// keeps a clock that is the bubble's plus the real time the check took:
// ahead of the model's, never behind. Make it inside the check's bubble,
// and pass Tick to [Outside.Store], so that each store call publishes.
type BubbleClock struct {
	start   time.Time
	elapsed atomic.Int64
}

// NewBubbleClock returns a BubbleClock that counts from now.
func NewBubbleClock() *BubbleClock { return &BubbleClock{start: time.Now()} }

// Tick publishes the bubble's time since the clock was made, unless a
// later one was published already.
func (c *BubbleClock) Tick() {
	d := int64(time.Since(c.start))
	for {
		old := c.elapsed.Load()
		if d <= old || c.elapsed.CompareAndSwap(old, d) {
			return
		}
	}
}

// Offset returns the time last published by Tick.
func (c *BubbleClock) Offset() time.Duration { return time.Duration(c.elapsed.Load()) }
