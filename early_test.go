package paddock_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/store"
)

// TestEarlyRefreshOncePerTTL reads one key thousands of times per TTL, with
// no stale window, for many TTLs. At the defaults the key is refreshed
// about once per TTL, each time early, and no read waits for a load: the
// refresh starts a little more than one load before expiry, at an instant
// drawn once per entry. With Beta(0) it is never refreshed early, and each
// expiry makes the reader wait for a load. (Drawn per read instead, one of
// the thousands of draws after each fill is almost sure to be large, and
// the key refreshes far more often than once per TTL.)
func TestEarlyRefreshOncePerTTL(t *testing.T) {
	const (
		ttl  = time.Second
		load = 100 * time.Millisecond
		pace = 500 * time.Microsecond // 2000 reads per TTL
		ttls = 20
	)
	modes(t, func(t *testing.T, newStore func(*testing.T) store.Store) {
		for _, tc := range []struct {
			name string
			opts []paddock.LoaderOption
			beta bool
		}{
			{"beta=default", nil, true},
			{"beta=0", []paddock.LoaderOption{paddock.Beta(0)}, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					// A seeded source: the draws vary from fill to fill (and
					// would from read to read) as with the default, but the
					// test sees the same ones every run.
					var mu sync.Mutex
					rng := rand.New(rand.NewPCG(1, 2))
					c := newCache(t, newStore(t), paddock.Rand(func() float64 {
						mu.Lock()
						defer mu.Unlock()
						return rng.Float64()
					}))
					l := newLoader[string](t, c, "p", append([]paddock.LoaderOption{paddock.TTL(ttl)}, tc.opts...)...)
					var loads atomic.Int64
					ld := func(context.Context) (string, error) {
						time.Sleep(load)
						return fmt.Sprint("v", loads.Add(1)), nil
					}
					if _, err := l.Get(ctx, "k", ld); err != nil {
						t.Fatal(err)
					}
					start := time.Now()
					var (
						reads, waits int
						longest      time.Duration
					)
					for time.Since(start) < ttls*ttl {
						t0 := time.Now()
						if _, err := l.Get(ctx, "k", ld); err != nil {
							t.Fatal(err)
						}
						// The bubble's clock moves only while every goroutine
						// is blocked: a read that took time waited for a load.
						if w := time.Since(t0); w > 0 {
							waits++
							longest = max(longest, w)
						}
						reads++
						time.Sleep(pace)
					}
					synctest.Wait()
					n := loads.Load() - 1 // the loads after the first
					st := c.Stats()["p"]
					t.Logf("%d reads in %d TTLs: %d loads, %d early; %d reads waited, the longest %v", reads, ttls, n, st.EarlyRefreshes, waits, longest)
					if tc.beta {
						if n < ttls-2 || n > ttls+2 {
							t.Errorf("%d loads in %d TTLs, want about one per TTL", n, ttls)
						}
						if st.EarlyRefreshes != uint64(n) {
							t.Errorf("%d of %d loads were early refreshes, want all", st.EarlyRefreshes, n)
						}
						// A refresh starts at the first read after its instant,
						// which is at least one load before expiry: a read can
						// wait only for less than the gap between reads.
						if longest >= pace {
							t.Errorf("a read waited %v for a load (%d reads waited), want none longer than %v", longest, waits, pace)
						}
						return
					}
					if st.EarlyRefreshes != 0 {
						t.Errorf("Beta(0): %d early refreshes, want none", st.EarlyRefreshes)
					}
					// A plain TTL: one load per TTL plus a load, each one
					// waited for.
					if want := int64(ttls * ttl / (ttl + load)); n < want-1 || n > want+1 {
						t.Errorf("Beta(0): %d loads in %d TTLs, want about %d", n, ttls, want)
					}
					if int64(waits) != n || longest < load {
						t.Errorf("Beta(0): %d reads waited (the longest %v), want each of the %d loads waited for", waits, longest, n)
					}
				})
			})
		}
	})
}
