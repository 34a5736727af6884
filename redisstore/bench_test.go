package redisstore_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/benchtest"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// BenchmarkRedis measures paddock on one local redis-server (unix socket)
// next to a plain GET of the same value in the same run:
//
//	go test -run xxx -bench . -benchmem -count 6 ./redisstore/ | tee new.txt
//	benchstat -col /impl new.txt
//
// op=hit is a warm Get of a 1 KiB value (one MGET; impl=store-lookup is
// the Store's Lookup alone, without the Cache; impl=paddock-vs-raw-get
// alternates blocks of Gets and of raw GETs in one process, on one client,
// and reports their ratio, get/raw-get); op=miss a Get of a cold
// key (the MGET, the lookup script, the fill: three calls); op=stampede a
// fleet of 4 Caches × 8 callers on one cold key per iteration, reporting
// loads/op. The hits also report what the server spent on them, read
// from the benchmark's own redis-server before and after: redis-cpu-us/op
// (INFO cpu, used_cpu_sys + used_cpu_user: the whole process, system
// calls included) and redis-cmd-us/op (INFO commandstats, usec summed over
// the commands: the commands' own time).
func BenchmarkRedis(b *testing.B) {
	// Each run (of -count) gets its own prefix: a run never finds the keys
	// of the one before.
	var runs atomic.Int64
	prefix := func() redisstore.Option {
		return redisstore.Prefix("bench" + strconv.FormatInt(runs.Add(1), 10) + ":")
	}
	srv := redistest.Start(b)
	client := srv.Client(b, nil)
	ctx := context.Background()
	value := strings.Repeat("x", 1024)

	admin := srv.Client(b, nil)
	b.Run("op=hit/impl=raw-get", func(b *testing.B) {
		if err := client.Set(ctx, "raw:k", value, 0).Err(); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		defer serverCost(b, admin)()
		for b.Loop() {
			if v, err := client.Get(ctx, "raw:k").Result(); err != nil || len(v) != len(value) {
				b.Fatal(v, err)
			}
		}
	})
	// A warm Get through the Cache, on a store with opts.
	paddockHit := func(opts ...redisstore.Option) func(b *testing.B) {
		return func(b *testing.B) {
			s := newStore(b, client, append([]redisstore.Option{prefix()}, opts...)...)
			l := newLoader(b, newCache(b, s), "hit", paddock.Beta(0), paddock.TTL(time.Hour))
			load := func(context.Context) (string, error) { return value, nil }
			for range 2 { // the second Get verifies the server (see redisstore.CheckServers)
				if _, err := l.Get(ctx, "k", load); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			defer serverCost(b, admin)()
			for b.Loop() {
				if v, err := l.Get(ctx, "k", load); err != nil || len(v) != len(value) {
					b.Fatal(v, err)
				}
			}
		}
	}
	b.Run("op=hit/impl=paddock", paddockHit())
	b.Run("op=hit/impl=store-lookup", func(b *testing.B) {
		// The Store alone, without the Cache: one script call.
		s := newStore(b, client, prefix())
		lk, err := s.Lookup(ctx, "k", store.LookupRequest{Lease: 1, LeaseTTL: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		if ok, err := s.Fill(ctx, "k", &store.Fill{Value: []byte(value), Ticket: lk.Ticket, Lease: 1, TTL: time.Hour}); !ok || err != nil {
			b.Fatal(ok, err)
		}
		req := store.LookupRequest{Lease: 2, LeaseTTL: time.Minute}
		if _, err := s.Lookup(ctx, "k", req); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		defer serverCost(b, admin)()
		for b.Loop() {
			if lk, err := s.Lookup(ctx, "k", req); err != nil || lk.State != store.StateFresh {
				b.Fatal(lk.State, err)
			}
		}
	})
	b.Run("op=hit/impl=paddock-nofailovercheck", paddockHit(redisstore.SkipFailoverCheck()))
	b.Run("op=hit/impl=paddock/parallel", func(b *testing.B) {
		s := newStore(b, client, prefix())
		l := newLoader(b, newCache(b, s), "hitp", paddock.Beta(0), paddock.TTL(time.Hour))
		load := func(context.Context) (string, error) { return value, nil }
		for range 2 {
			for i := range 64 {
				if _, err := l.Get(ctx, strconv.Itoa(i), load); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportAllocs()
		defer serverCost(b, admin)()
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			key := strconv.Itoa(int(n.Add(1)) % 64)
			for pb.Next() {
				if _, err := l.Get(ctx, key, load); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("op=hit/impl=raw-get/parallel", func(b *testing.B) {
		b.ReportAllocs()
		defer serverCost(b, admin)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := client.Get(ctx, "raw:k").Err(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("op=hit/impl=paddock-vs-raw-get", func(b *testing.B) {
		// The two side by side on one client: blocks of warm Gets and of
		// raw GETs of the same value, alternated (ABBA), each timed, so
		// that where the kernel puts the client and the server (which
		// moves a serial round trip by ±20% from one process to the next)
		// weighs on both alike. It reports each one's time per call and
		// their ratio (ns/op is a pair of blocks).
		if err := client.Set(ctx, "raw:k", value, 0).Err(); err != nil {
			b.Fatal(err)
		}
		s := newStore(b, client, prefix())
		l := newLoader(b, newCache(b, s), "hitvs", paddock.Beta(0), paddock.TTL(time.Hour))
		load := func(context.Context) (string, error) { return value, nil }
		for range 2 {
			if _, err := l.Get(ctx, "k", load); err != nil {
				b.Fatal(err)
			}
		}
		raw := func() {
			if v, err := client.Get(ctx, "raw:k").Result(); err != nil || len(v) != len(value) {
				b.Fatal(v, err)
			}
		}
		get := func() {
			if v, err := l.Get(ctx, "k", load); err != nil || len(v) != len(value) {
				b.Fatal(v, err)
			}
		}
		const block = 100
		blockOf := func(f func()) func() {
			return func() {
				for range block {
					f()
				}
			}
		}
		spent, n := benchtest.Interleave(b, nil, blockOf(raw), blockOf(get))
		tRaw, tGet := spent[0], spent[1]
		calls := float64(n * block)
		b.ReportMetric(float64(tGet.Nanoseconds())/calls, "get-ns/call")
		b.ReportMetric(float64(tRaw.Nanoseconds())/calls, "raw-get-ns/call")
		b.ReportMetric(float64(tGet)/float64(tRaw), "get/raw-get")
	})
	b.Run("op=miss/impl=paddock", func(b *testing.B) {
		s := newStore(b, client, prefix())
		l := newLoader(b, newCache(b, s), "miss", paddock.Beta(0), paddock.TTL(time.Minute))
		load := func(context.Context) (string, error) { return value, nil }
		var i int
		b.ReportAllocs()
		for b.Loop() {
			i++
			if _, err := l.Get(ctx, strconv.Itoa(i), load); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=miss/impl=raw-get-set", func(b *testing.B) {
		// The naive read-through: GET (nil), load, SET. No lease, no fence.
		var i int
		run := strconv.FormatInt(runs.Add(1), 10)
		b.ReportAllocs()
		for b.Loop() {
			i++
			k := "rawmiss:" + run + ":" + strconv.Itoa(i)
			if err := client.Get(ctx, k).Err(); err == nil {
				b.Fatal("hit")
			}
			if err := client.Set(ctx, k, value, time.Minute).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=stampede/impl=paddock", func(b *testing.B) {
		const nodes, callers = 4, 8
		ls := make([]*paddock.Loader[string], nodes)
		p := prefix()
		for i := range ls {
			s := newStore(b, srv.Client(b, nil), p)
			ls[i] = newLoader(b, newCache(b, s, paddock.WaitTimeout(time.Minute)), "stampede", paddock.Beta(0))
		}
		var loads atomic.Int64
		load := func(context.Context) (string, error) { loads.Add(1); return value, nil }
		var i int
		b.ReportAllocs()
		for b.Loop() {
			i++
			key := strconv.Itoa(i)
			var wg sync.WaitGroup
			for _, l := range ls {
				for range callers {
					wg.Go(func() {
						if _, err := l.Get(ctx, key, load); err != nil {
							b.Error(err)
						}
					})
				}
			}
			wg.Wait()
		}
		b.ReportMetric(float64(loads.Load())/float64(i), "loads/op")
	})
}

// BenchmarkLookupMany measures a warm lookup of 50 keys (1 KiB values) on
// one local redis-server: LookupMany, one pipeline, next to 50 Lookups in
// a row, one round trip each. An op is the 50 keys.
//
//	go test -run '^$' -bench LookupMany -benchmem ./redisstore/
func BenchmarkLookupMany(b *testing.B) {
	srv := redistest.Start(b)
	s := newStore(b, srv.Client(b, nil), redisstore.Prefix("benchmany:"))
	ctx := context.Background()
	const n = 50
	keys, reqs := batchKeys("k", n), leaseReqs(n, 1)
	lks, errs := s.LookupMany(ctx, keys, reqs)
	if errs != nil {
		b.Fatal(errs)
	}
	fills := fillsFor(lks, reqs, strings.Repeat("x", 1024))
	for _, f := range fills {
		f.TTL = time.Hour
	}
	if _, errs := s.FillMany(ctx, keys, fills); errs != nil {
		b.Fatal(errs)
	}
	reqs = leaseReqs(n, 100)
	perKey := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
	}
	b.Run("keys=50/impl=lookupmany", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			lks, errs := s.LookupMany(ctx, keys, reqs)
			if errs != nil || lks[n-1].State != store.StateFresh {
				b.Fatal(lks[n-1].State, errs)
			}
		}
		perKey(b)
	})
	b.Run("keys=50/impl=lookup", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for i, k := range keys {
				if lk, err := s.Lookup(ctx, k, reqs[i]); err != nil || lk.State != store.StateFresh {
					b.Fatal(lk.State, err)
				}
			}
		}
		perKey(b)
	})
}

// serverCost reads the server's CPU time and its commands' time, and
// returns a function that reports what the benchmark's iterations added,
// per iteration (see BenchmarkRedis).
func serverCost(b *testing.B, admin *redis.Client) func() {
	cpu0, cmd0 := serverTimes(b, admin)
	return func() {
		cpu1, cmd1 := serverTimes(b, admin)
		b.ReportMetric((cpu1-cpu0)/float64(b.N), "redis-cpu-us/op")
		b.ReportMetric((cmd1-cmd0)/float64(b.N), "redis-cmd-us/op")
	}
}

// serverTimes returns the server's CPU time (used_cpu_sys +
// used_cpu_user) and its commands' time (the usec of every command in
// INFO commandstats), in µs.
func serverTimes(b *testing.B, admin *redis.Client) (cpu, cmds float64) {
	ctx := context.Background()
	info, err := admin.Info(ctx, "cpu", "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "used_cpu_sys:"), strings.HasPrefix(line, "used_cpu_user:"):
			_, v, _ := strings.Cut(line, ":")
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			cpu += f * 1e6
		case strings.HasPrefix(line, "cmdstat_"):
			// cmdstat_get:calls=3,usec=12,usec_per_call=4.00,...
			_, fields, _ := strings.Cut(line, ":")
			for f := range strings.SplitSeq(fields, ",") {
				if v, ok := strings.CutPrefix(f, "usec="); ok {
					n, err := strconv.ParseFloat(v, 64)
					if err != nil {
						b.Fatal(err)
					}
					cmds += n
				}
			}
		}
	}
	return cpu, cmds
}
