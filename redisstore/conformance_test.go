package redisstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/storetest"
)

// harness returns a storetest harness factory: each subtest gets a Store
// with its own prefix on client, a clock offset for Advance, FLUSHALL
// (flush) for Flush, and a MaxValueSize of 64 KiB for TooLarge.
func harness(client redis.UniversalClient, flush func(t *testing.T), opts ...redisstore.Option) func(t *testing.T) storetest.Harness {
	var n atomic.Int64
	const maxValue = 64 << 10
	return func(t *testing.T) storetest.Harness {
		var offset atomic.Int64
		o := append([]redisstore.Option{
			redisstore.Prefix(fmt.Sprintf("conf%d:", n.Add(1))),
			redisstore.TimeOffset(func() time.Duration { return time.Duration(offset.Load()) }),
			redisstore.MaxValueSize(maxValue),
		}, opts...)
		s, err := redisstore.New(client, o...)
		if err != nil {
			t.Fatal(err)
		}
		return storetest.Harness{
			Store:    s,
			Advance:  func(d time.Duration) { offset.Add(int64(d)) },
			Flush:    func() { flush(t) },
			TooLarge: maxValue + 1,
		}
	}
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	flush := func(t *testing.T) {
		if err := client.FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("layout=standalone", func(t *testing.T) {
		storetest.Run(t, harness(client, flush))
	})
	// The Cluster code paths (slot epochs, sequence read after the lease,
	// tag checks across slots) against one server.
	t.Run("layout=cluster", func(t *testing.T) {
		storetest.Run(t, harness(client, flush, redisstore.ForceCluster()))
	})
	t.Run("layout=standalone/nofailovercheck", func(t *testing.T) {
		storetest.Run(t, harness(client, flush, redisstore.SkipFailoverCheck()))
	})
	// Every Lookup and Fill through LookupMany and FillMany.
	t.Run("layout=standalone/via=batch", func(t *testing.T) {
		storetest.RunBatched(t, harness(client, flush))
	})
	t.Run("layout=cluster/via=batch", func(t *testing.T) {
		storetest.RunBatched(t, harness(client, flush, redisstore.ForceCluster()))
	})
}
