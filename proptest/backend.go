package proptest

import (
	"context"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/store"
)

// A backend is a kind of store the machine runs on. A new store needs one
// backend and a one-line test:
//
//	func TestMystore(t *testing.T) { runMachine(t, mystoreBackend) }
type backend struct {
	// checks is the number of checks a plain `go test` runs (CI). The
	// -rapid.checks flag (or RAPID_CHECKS) overrides it.
	checks int
	// setup prepares the test (starts a server, say, stopped by
	// t.Cleanup) and returns open, which the machine calls at the start
	// of each check, inside the check's synctest bubble, for a store that
	// is empty as far as the check can tell.
	setup func(t *testing.T) (open func(t *rapid.T) *env)
}

// An env is the store of one check and the controls the machine needs.
// Every function is called from inside the bubble and must be safe there.
//
// Quiescence: after each action the machine calls synctest.Wait, which
// returns once every goroutine of the bubble is durably blocked (on a
// load's channel, a poll's timer). A store that does network I/O runs it
// on goroutines outside the bubble (see outside), and a bubbled goroutine
// waiting for one of them is not durably blocked: Wait waits for the call
// to finish. That keeps one way of settling for every store, and keeps
// the bubble's fake clock away from socket deadlines.
type env struct {
	// store is shared by every node.
	store store.Store
	// advance moves the store's clock forward by d, just before the
	// bubble's clock moves by d. No-op for a store on the bubble's clock
	// (memstore), or one that follows it on every call (the Redis stores).
	//
	// A store's clock may run ahead of the bubble's, never behind: the
	// invariants are written so that a clock ahead only makes them easier
	// to keep (entries and leases expire early), and the lease check
	// compares the store's own readings.
	advance func(d time.Duration)
	// peek reads key without taking a lease, for invariant 4; nil skips
	// the check.
	peek func(ctx context.Context, key string) (store.Lookup, error)
	// setDown makes the store itself unavailable (nil: the nodes' calls
	// fail instead, which every store supports).
	setDown func(down bool)
	// flush and restart are optional: lose everything (FLUSHALL), and
	// restart the server.
	flush, restart func()
	// flushNode, optional, makes one node of a store made of several
	// (Cluster masters; i modulo their number) lose its data.
	flushNode func(i int)
	// close releases the store at the end of the check.
	close func()
	// fillGap: the store calls hooks.FillGap inside its Fill when
	// hooks.FillTagGap is on (memstore, memcachestore).
	fillGap bool
}

// memstoreBackend is the in-process store. It reads time.Now, which inside
// the bubble is synctest's fake clock, so time needs no help.
var memstoreBackend = backend{
	checks: 2500,
	setup: func(*testing.T) func(*rapid.T) *env {
		return func(t *rapid.T) *env {
			s, err := memstore.New(memstore.MaxBytes(1<<20), memstore.MaxEntryBytes(4<<10))
			if err != nil {
				t.Fatalf("memstore.New: %v", err)
			}
			return &env{
				store:   s,
				advance: func(time.Duration) {},
				peek: func(ctx context.Context, key string) (store.Lookup, error) {
					return s.Lookup(ctx, key, store.LookupRequest{})
				},
				close:   func() { s.Close() },
				fillGap: true,
			}
		}
	},
}
