package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/store"
)

// failFastOptions are the client options of the package doc ("Client
// options that matter") and of ExampleNew, for a StoreTimeout of 250 ms.
func failFastOptions(o *redis.Options) {
	const storeTimeout = 250 * time.Millisecond
	o.ContextTimeoutEnabled = true
	o.DialTimeout = storeTimeout
	o.DialerRetries = 1
	o.MaxRetries = -1
	o.MinRetryBackoff, o.MaxRetryBackoff = -1, -1
	o.PoolTimeout = storeTimeout
	o.ReadTimeout, o.WriteTimeout = time.Second, time.Second
}

// TestDeadRedisFailsFast: with the recommended client options, a call to
// a Redis that is not there (a refused port, or a server killed under the
// pool's connections) fails at once instead of spending its deadline on
// dial and command retries. With go-redis's defaults each call below takes
// most of a second (5 dials 100 ms apart, for each of 4 command attempts,
// with backoff): the ten take several times their budget.
func TestDeadRedisFailsFast(t *testing.T) {
	const calls, budget = 10, 2 * time.Second // the budget is for all calls
	run := func(t *testing.T, client *redis.Client) {
		s := newStore(t, client)
		start := time.Now()
		for i := range calls {
			ctx, cancel := context.WithTimeout(t.Context(), budget)
			_, err := s.Lookup(ctx, fmt.Sprint("k", i), store.LookupRequest{Lease: 1, LeaseTTL: time.Minute})
			cancel()
			if err == nil {
				t.Fatal("a Lookup on a dead Redis succeeded")
			}
		}
		d := time.Since(start)
		t.Logf("%d calls in %v", calls, d)
		if d >= budget {
			t.Fatalf("%d calls on a dead Redis took %v: the client retries", calls, d)
		}
	}
	t.Run("refused", func(t *testing.T) {
		o := &redis.Options{Addr: deadAddr(t)}
		failFastOptions(o)
		client := redis.NewClient(o)
		t.Cleanup(func() { _ = client.Close() })
		run(t, client)
	})
	t.Run("killed", func(t *testing.T) {
		srv := redistest.Start(t)
		client := srv.Client(t, failFastOptions)
		warm := newStore(t, client)
		for i := range 4 {
			if _, err := warm.Lookup(t.Context(), fmt.Sprint("w", i), store.LookupRequest{}); err != nil {
				t.Fatal(err)
			}
		}
		srv.Stop()
		run(t, client)
	})
}
