package memcachestore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/paddockcache/paddock/memcachestore/internal/memcachedtest"
	"github.com/paddockcache/paddock/proptest"
	"github.com/paddockcache/paddock/store"
)

func TestMain(m *testing.M) { proptest.Main(m) }

// TestMachine runs paddock's state machine on a real memcached, with
// flush_all and restarts among the faults.
func TestMachine(t *testing.T) { proptest.Run(t, machineBackend(60)) }

// machineBackend runs each check on a fresh prefix of one memcached,
// emptied with flush_all first.
//
// Time: the machine's clock is a synctest bubble's, memcached's is real.
// The store's TimeOffset follows the bubble: it is the bubble's time since
// the check began, as last published by a store call (it never goes
// back). The store adds it to the TTLs it writes and subtracts it from
// the remaining TTLs it reads, so an item written at offset o with TTL d
// reads, at offset o', as having d - (o' - o) less the real time passed:
// the store's clock is the bubble's plus the real time the check took,
// ahead of the model's by that (and by memcached's whole seconds), never
// behind it.
func machineBackend(checks int) proptest.Backend {
	return proptest.Backend{
		Checks: checks,
		Setup: func(t *testing.T) func(*rapid.T) *proptest.Env {
			srv := memcachedtest.Start(t)
			out := proptest.NewOutside(t)
			ft := fatalPanics{t}
			var n atomic.Int64
			return func(rt *rapid.T) *proptest.Env {
				clock := proptest.NewBubbleClock()
				var s *Store
				var err error
				out.Do(func() {
					s, err = New([]string{srv.Socket},
						Prefix(fmt.Sprintf("pt%d:", n.Add(1))),
						Timeout(2*time.Second),
						TimeOffset(clock.Offset))
				})
				if err != nil {
					rt.Fatalf("New: %v", err)
				}
				flush := func() { out.Do(func() { srv.FlushAll(ft) }) }
				flush()
				p := out.Store(s, clock.Tick)
				return &proptest.Env{
					Store: p,
					Peek: func(ctx context.Context, key string) (store.Lookup, error) {
						return p.Lookup(ctx, key, store.LookupRequest{})
					},
					Flush:   flush,
					Restart: func() { out.Do(func() { srv.Restart(ft) }) },
					Close:   func() { out.Do(func() { s.Close() }) },
					FillGap: true,
				}
			}
		},
	}
}

// fatalPanics is the t of the memcachedtest calls made through
// Outside.Do, on goroutines where t.Fatal must not be called: a failure
// panics, and Outside.Do raises the panic again in the check.
type fatalPanics struct{ testing.TB }

func (fatalPanics) Helper()                           {}
func (fatalPanics) FailNow()                          { panic("memcachedtest: FailNow") }
func (fatalPanics) Fatal(args ...any)                 { panic(fmt.Sprint(args...)) }
func (fatalPanics) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// TestMachineCanFail runs TestMachine in a copy of this test binary with
// one of the store's mechanisms switched off, and checks that the machine
// finds the violation it must: without breaking the lease of an
// invalidated key (the store's "md <lease>" in Invalidate), a Get in
// another process waits for a load whose fill will be refused (I7);
// without the versions' second read after a fill's write (FillTagGap), an
// invalidation that lands between a Set's check and its write does not
// refuse it, and a later Get serves the old row (I1).
func TestMachineCanFail(t *testing.T) {
	if proptest.InCanFailRun() {
		t.Skip("inside a can-fail run")
	}
	memcachedtest.Require(t)
	for _, m := range []proptest.Mechanism{
		{Invariant: "I7", Hook: "LeaseOutlivesInvalidation", Want: "doomed", Why: "a Get in another process waits for a load whose fill will be refused"},
		{Invariant: "I1", Hook: "FillTagGap", Want: "load that began before", Why: "an invalidation between a Set's check and its write does not refuse it; a later Get serves the old row"},
	} {
		t.Run(m.Invariant+"/"+m.Hook, func(t *testing.T) {
			proptest.CanFail(t, "TestMachine", 600, m)
		})
	}
}
