package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// Memory and GC: each library fills N entries in a fresh child process
// (this binary re-run with -child memory), so that no other library's heap
// is counted. Per entry: the live Go heap after a full GC (and, for the
// Redis rows, Redis's used_memory) divided by N. Then the child forces
// gcRuns collections and reports their wall time (the mark work grows with
// the pointers the cache holds) and their stop-the-world pauses.

const gcRuns = 5

type memReport struct {
	N            int           `json:"n"`
	KeyLen       int           `json:"key_len"`
	Fill         time.Duration `json:"fill"`
	HeapPerEntry float64       `json:"heap_per_entry"`
	ObjsPerEntry float64       `json:"objs_per_entry"`
	RedisPer     float64       `json:"redis_per_entry"`
	GCWall       time.Duration `json:"gc_wall"`  // median over gcRuns
	GCPause      time.Duration `json:"gc_pause"` // max STW pause over gcRuns
	Err          string        `json:"err,omitempty"`
}

func runMemory(ctx context.Context, e *env) error {
	n := e.pick(100_000, 1_000_000)
	nRedis := e.pick(10_000, 100_000)
	size := 1024
	fmt.Fprintf(e.out, "Each library fills %d entries (Redis rows: %d) of %d B values with keys of about 40 B, in a process of its own. "+
		"Heap/entry is the live Go heap after a full GC over N (value and key included); objects/entry counts heap objects. "+
		"GC is %d forced full collections: the median wall time of runtime.GC() and the longest stop-the-world pause.\n\n",
		n, nRedis, size, gcRuns)
	if e.quick {
		fmt.Fprintf(e.out, "(-quick: %d entries, not 1,000,000.)\n\n", n)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	t := newTable("library", "store", "entries", "Go heap/entry", "objects/entry", "Redis used_memory/entry", "GC wall (median)", "GC STW pause (max)", "fill time")
	for _, lib := range e.libs {
		if !e.usable(lib) || lib.Memcached {
			// memcached's memory is its own slab allocator's, which
			// neither the Go heap nor Redis's INFO measures.
			continue
		}
		count := n
		if lib.Redis {
			count = nRedis
		}
		args := []string{"-child", "memory", "-lib", lib.Name, "-n", fmt.Sprint(count), "-size", fmt.Sprint(size), "-redis", e.redis, "-prefix", e.key(lib, "mem")}
		cmd := exec.CommandContext(ctx, exe, args...)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		var r memReport
		if err == nil {
			err = json.Unmarshal(out, &r)
		}
		if err == nil && r.Err != "" {
			err = fmt.Errorf("%s", r.Err)
		}
		if err != nil {
			t.add(lib.Name, where(lib), e.failed(lib.Name, err), "", "", "", "", "", "")
			continue
		}
		redisPer := "—"
		if lib.Redis {
			redisPer = fmt.Sprintf("%.0f B", r.RedisPer)
			e.note(lib.Name, "mem", redisPer+" in Redis")
		} else {
			mem := fmt.Sprintf("%.0f B", r.HeapPerEntry)
			if lib.Disk {
				mem = "on disk (" + mem + " of Go heap)"
			}
			e.note(lib.Name, "mem", mem)
			gc := fmtDur(r.GCWall)
			if r.N != 1_000_000 {
				gc = fmt.Sprintf("%s (%d entries)", gc, r.N)
			}
			e.note(lib.Name, "gc", gc)
		}
		t.add(lib.Name, where(lib), r.N, fmt.Sprintf("%.0f B", r.HeapPerEntry), fmt.Sprintf("%.2f", r.ObjsPerEntry), redisPer,
			fmtDur(r.GCWall), fmtDur(r.GCPause), fmtDur(r.Fill))
		e.logf("   %-16s %d entries heap/entry %.0f B objs %.2f redis %.0f gc %v pause %v fill %v",
			lib.Name, r.N, r.HeapPerEntry, r.ObjsPerEntry, r.RedisPer, r.GCWall, r.GCPause, r.Fill)
	}
	t.print(e.out)
	return nil
}

func memKey(prefix string, i int) string { return fmt.Sprintf("%s:%08d", prefix, i) }

func memoryChild(args []string) error {
	fs := flag.NewFlagSet("memory", flag.ContinueOnError)
	libName := fs.String("lib", "", "")
	n := fs.Int("n", 0, "")
	size := fs.Int("size", 1024, "")
	redisAddr := fs.String("redis", "", "")
	prefix := fs.String("prefix", "m", "")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the child's run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	r, err := measureMemory(*libName, *n, *size, *redisAddr, *prefix)
	if err != nil {
		r.Err = err.Error()
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

func measureMemory(libName string, n, size int, redisAddr, prefix string) (r memReport, err error) {
	r = memReport{N: n, KeyLen: len(memKey(prefix, n-1))}
	ctx := context.Background()
	lib, err := lookupLib(libName)
	if err != nil {
		return r, err
	}
	var used0 int64
	if lib.Redis {
		rdb := newRedisClient(redisAddr, 1)
		defer rdb.Close()
		defer func() {
			if used1, err := redisUsedMemory(ctx, rdb); err == nil {
				r.RedisPer = float64(used1-used0) / float64(n)
			}
		}()
		if used0, err = redisUsedMemory(ctx, rdb); err != nil {
			return r, err
		}
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)

	c, err := lib.New(Config{TTL: time.Hour, Stale: time.Hour, Entries: n, ValueSize: size, Redis: redisAddr})
	if err != nil {
		return r, err
	}
	defer c.Close()
	load := func(context.Context) ([]byte, error) {
		// A value of its own per entry, as rows loaded from a database are.
		return value(size, "v"), nil
	}
	workers := runtime.GOMAXPROCS(0)
	if lib.Redis {
		workers = 32
	}
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		ferr atomic.Pointer[error]
	)
	t0 := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if _, err := c.Get(ctx, memKey(prefix, i), load); err != nil {
					ferr.Store(&err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := ferr.Load(); p != nil {
		return r, *p
	}
	if s, ok := c.(settler); ok {
		if err := s.Settle(ctx, memKey(prefix, n-1)); err != nil {
			return r, err
		}
	}
	r.Fill = time.Since(t0)

	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	r.HeapPerEntry = float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(n)
	r.ObjsPerEntry = float64(int64(m1.HeapObjects)-int64(m0.HeapObjects)) / float64(n)

	walls := make([]time.Duration, gcRuns)
	before := m1.NumGC
	for i := range walls {
		t := time.Now()
		runtime.GC()
		walls[i] = time.Since(t)
	}
	var m2 runtime.MemStats
	runtime.ReadMemStats(&m2)
	for g := before + 1; g <= m2.NumGC; g++ {
		r.GCPause = max(r.GCPause, time.Duration(m2.PauseNs[(g+255)%256]))
	}
	r.GCWall = quantiles(walls, 0.5)[0]
	// The entries must still be reachable through the measurements above.
	runtime.KeepAlive(c)
	return r, nil
}
