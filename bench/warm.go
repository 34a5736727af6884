package main

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/allegro/bigcache/v3"
	"github.com/redis/go-redis/v9"
)

// Warm hits: every Get finds a fresh entry. warmKeys keys of 1 KiB are
// filled first, then read round-robin (serial) or from random offsets
// (parallel, one goroutine per P). The same functions back
// BenchmarkWarmHit in bench_test.go and this program's table.

const (
	warmKeys  = 1024
	warmValue = 1024
)

// A warmTarget is a library (or a raw baseline) ready for warm reads.
type warmTarget struct {
	get   func(ctx context.Context, key string) ([]byte, error)
	keys  []string
	loads *atomic.Int64 // loads after the fill: should stay 0
	close func()
	// cpu reads the Redis server's CPU time in µs (Redis targets): the
	// benchmark reports what its hits cost the server.
	cpu func() float64
}

// warmTargetNames lists the lib= names of the warm benchmarks: the raw
// baselines, then the libraries.
func warmTargetNames(libs []Lib) []string {
	libs = slices.DeleteFunc(slices.Clone(libs), func(l Lib) bool { return l.FleetOnly })
	names := []string{"raw-mutexmap", "raw-bigcache"}
	for _, l := range libs {
		if !l.Redis && !l.Memcached {
			names = append(names, l.Name)
		}
	}
	names = append(names, "raw-redis-get")
	for _, l := range libs {
		if l.Redis {
			names = append(names, l.Name)
		}
	}
	if slices.ContainsFunc(libs, func(l Lib) bool { return l.Memcached }) {
		names = append(names, "raw-memcached-get")
		for _, l := range libs {
			if l.Memcached {
				names = append(names, l.Name)
			}
		}
	}
	return names
}

func isRedisTarget(name string) bool {
	if name == "raw-redis-get" {
		return true
	}
	l, err := lookupLib(name)
	return err == nil && l.Redis
}

func isMemcachedTarget(name string) bool {
	if name == "raw-memcached-get" {
		return true
	}
	l, err := lookupLib(name)
	return err == nil && l.Memcached
}

// newWarmTarget builds and fills the target named name; prefix makes its
// keys unique.
func newWarmTarget(ctx context.Context, name, redisAddr, mcAddr, prefix string) (*warmTarget, error) {
	keys := make([]string, warmKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s:warm:%s:%d", prefix, name, i)
	}
	val := value(warmValue, "v")
	t := &warmTarget{keys: keys, loads: new(atomic.Int64)}
	switch name {
	case "raw-mutexmap":
		var mu sync.RWMutex
		m := make(map[string][]byte, len(keys))
		for _, k := range keys {
			m[k] = val
		}
		t.get = func(_ context.Context, key string) ([]byte, error) {
			mu.RLock()
			v := m[key]
			mu.RUnlock()
			return v, nil
		}
		t.close = func() {}
		return t, nil
	case "raw-bigcache":
		bc, err := bigcache.New(ctx, bigcache.DefaultConfig(time.Hour))
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			bc.Set(k, val)
		}
		t.get = func(_ context.Context, key string) ([]byte, error) { return bc.Get(key) }
		t.close = func() { bc.Close() }
		return t, nil
	case "raw-redis-get":
		if redisAddr == "" {
			return nil, errNoRedis
		}
		rdb := newRedisClient(redisAddr, 0)
		for _, k := range keys {
			if err := rdb.Set(ctx, k, val, 0).Err(); err != nil {
				rdb.Close()
				return nil, err
			}
		}
		t.get = func(ctx context.Context, key string) ([]byte, error) { return rdb.Get(ctx, key).Bytes() }
		t.cpu, t.close = serverCPU(rdb, func() {})
		return t, nil
	case "raw-memcached-get":
		if mcAddr == "" {
			return nil, errNoMemcached
		}
		mc := newRawMemcachedGet(mcAddr)
		for _, k := range keys {
			if _, err := mc.do(ctx, "ms "+k+" "+fmt.Sprint(len(val))+" T0", val); err != nil {
				mc.Close()
				return nil, err
			}
		}
		t.get = func(ctx context.Context, key string) ([]byte, error) { return mc.do(ctx, "mg "+key+" v", nil) }
		t.close = mc.Close
		return t, nil
	}
	lib, err := lookupLib(name)
	if err != nil {
		return nil, err
	}
	c, err := lib.New(Config{TTL: time.Hour, Stale: time.Hour, Entries: warmKeys, ValueSize: warmValue, Redis: redisAddr, Memcached: mcAddr})
	if err != nil {
		return nil, err
	}
	load := func(context.Context) ([]byte, error) {
		t.loads.Add(1)
		return val, nil
	}
	for _, k := range keys {
		if _, err := c.Get(ctx, k, load); err != nil {
			c.Close()
			return nil, err
		}
	}
	if s, ok := c.(settler); ok {
		for _, k := range keys {
			if err := s.Settle(ctx, k); err != nil {
				c.Close()
				return nil, err
			}
		}
	}
	t.loads.Store(0)
	t.get = func(ctx context.Context, key string) ([]byte, error) { return c.Get(ctx, key, load) }
	t.close = func() { c.Close() }
	if lib.Redis {
		t.cpu, t.close = serverCPU(newRedisClient(redisAddr, 1), t.close)
	}
	return t, nil
}

// serverCPU returns a reader of the CPU time of rdb's server and a close
// that closes rdb, then calls then.
func serverCPU(rdb *redis.Client, then func()) (cpu func() float64, close func()) {
	return func() float64 {
			us, err := redisCPU(context.Background(), rdb)
			if err != nil {
				return math.NaN()
			}
			return us
		}, func() {
			rdb.Close()
			then()
		}
}

// settler is implemented by adapters whose library writes loaded values in
// the background: Settle waits until key is written.
type settler interface {
	Settle(ctx context.Context, key string) error
}

// benchWarm reads t's keys in b's loop.
func benchWarm(b *testing.B, t *warmTarget, parallel bool) {
	ctx := context.Background()
	mask := len(t.keys) - 1
	b.ReportAllocs()
	if t.cpu != nil {
		cpu0 := t.cpu()
		defer func() { b.ReportMetric((t.cpu()-cpu0)/float64(b.N), "redis-cpu-us/op") }()
	}
	if !parallel {
		i := 0
		for b.Loop() {
			v, err := t.get(ctx, t.keys[i&mask])
			if err != nil || len(v) != warmValue {
				b.Fatalf("get: %d bytes, %v", len(v), err)
			}
			i++
		}
	} else {
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(len(t.keys))
			for pb.Next() {
				v, err := t.get(ctx, t.keys[i&mask])
				if err != nil || len(v) != warmValue {
					b.Errorf("get: %d bytes, %v", len(v), err)
					return
				}
				i++
			}
		})
	}
	if n := t.loads.Load(); n > 0 {
		b.ReportMetric(float64(n)/float64(b.N), "loads/op")
	}
}

func runWarm(ctx context.Context, e *env) error {
	reps := e.pick(1, 3)
	fmt.Fprintf(e.out, "Warm hits on %d keys of %d B, via testing.Benchmark (benchtime %s, the median of %d runs); parallel is b.RunParallel with GOMAXPROCS goroutines. "+
		"× raw is the ratio to the raw baseline of the same kind (RWMutex map in process, GET on Redis, a meta get on memcached). "+
		"goredis-cache and rueidisaside answer these hits from process memory (a TinyLFU; Redis client-side caching), not from Redis. "+
		"Redis CPU is the server's used_cpu_sys + used_cpu_user over the serial run's hits, per hit (INFO cpu: the whole server, system calls included).\n\n",
		warmKeys, warmValue, e.pickStr("100ms", "1s"), reps)
	t := newTable("library", "store", "serial ns/op", "× raw", "allocs/op", "B/op", "Redis CPU µs/hit", "× raw", "parallel ns/op", "× raw", "allocs/op")
	var base [2]testing.BenchmarkResult
	for _, name := range warmTargetNames(e.libs) {
		isRedis, isMC := isRedisTarget(name), isMemcachedTarget(name)
		if isRedis && e.redis == "" || isMC && e.memcached == "" {
			continue
		}
		store := kind(isRedis)
		if isMC {
			store = "memcached"
		}
		for _, l := range libs {
			if l.Name == name && l.Disk {
				store = where(l)
			}
		}
		tg, err := newWarmTarget(ctx, name, e.redis, e.memcached, e.run)
		if err != nil {
			t.add(name, store, e.failed(name, err), "", "", "", "", "", "")
			continue
		}
		var res [2]testing.BenchmarkResult
		for i, par := range []bool{false, true} {
			// The median of reps runs, by ns/op: the machine is shared.
			runs := make([]testing.BenchmarkResult, reps)
			for j := range runs {
				runs[j] = testing.Benchmark(func(b *testing.B) { benchWarm(b, tg, par) })
			}
			slices.SortFunc(runs, func(a, b testing.BenchmarkResult) int { return cmp.Compare(nsop(a), nsop(b)) })
			res[i] = runs[reps/2]
		}
		tg.close()
		switch name {
		case "raw-mutexmap", "raw-redis-get", "raw-memcached-get":
			base = res
		}
		ratio := func(i int) string {
			if base[i].N == 0 || res[i].N == 0 {
				return ""
			}
			return fmt.Sprintf("%.2g", nsop(res[i])/nsop(base[i]))
		}
		cpu, cpuRatio := "—", ""
		if c, ok := res[0].Extra["redis-cpu-us/op"]; ok {
			cpu = fmt.Sprintf("%.1f", c)
			if b, ok := base[0].Extra["redis-cpu-us/op"]; ok && b > 0 {
				cpuRatio = fmt.Sprintf("%.2g", c/b)
			}
		}
		t.add(name, store, fmt.Sprintf("%.0f", nsop(res[0])), ratio(0), res[0].AllocsPerOp(), res[0].AllocedBytesPerOp(),
			cpu, cpuRatio, fmt.Sprintf("%.0f", nsop(res[1])), ratio(1), res[1].AllocsPerOp())
		e.note(name, "warm", fmtDur(time.Duration(nsop(res[0]))))
		e.logf("   %-16s serial %.0f ns/op %d allocs; parallel %.0f ns/op", name, nsop(res[0]), res[0].AllocsPerOp(), nsop(res[1]))
	}
	t.print(e.out)
	return nil
}

func kind(redis bool) string {
	if redis {
		return "Redis"
	}
	return "in-process"
}

func nsop(r testing.BenchmarkResult) float64 {
	if r.N == 0 {
		return 0
	}
	return float64(r.T.Nanoseconds()) / float64(r.N)
}

func (e *env) pickStr(quick, full string) string {
	if e.quick {
		return quick
	}
	return full
}
