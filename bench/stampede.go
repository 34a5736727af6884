package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The cold stampede: callers miss the same key at the same instant and the
// load takes stampedeLoad. A library that coalesces runs the load once;
// each caller's latency is then about one load.

const stampedeLoad = 50 * time.Millisecond

func runStampede(ctx context.Context, e *env) error {
	callers := 1000
	rounds := e.pick(3, 10)
	fmt.Fprintf(e.out, "%d callers Get one missing key at once; the load sleeps %v. %d rounds, a new key each; "+
		"loads per round (median, max) and each caller's latency from the common start to its answer (all rounds).\n\n",
		callers, stampedeLoad, rounds)
	t := newTable("library", "store", "loads/stampede (median)", "max", "p50", "p99", "errors")
	for _, lib := range e.libs {
		if !e.usable(lib) {
			continue
		}
		r, err := stampede(ctx, e, lib, callers, rounds)
		if err != nil {
			t.add(lib.Name, where(lib), e.failed(lib.Name, err), "", "", "", "")
			continue
		}
		q := quantiles(r.lat, 0.5, 0.99)
		t.add(lib.Name, where(lib), fmt.Sprintf("%g", median(r.loads)), fmt.Sprintf("%g", maxf(r.loads)), fmtDur(q[0]), fmtDur(q[1]), r.errors)
		e.logf("   %-16s loads %v p50 %v p99 %v", lib.Name, r.loads, q[0], q[1])
		e.note(lib.Name, "stampede", fmt.Sprintf("%g", median(r.loads)))
	}
	t.print(e.out)
	return nil
}

type stampedeResult struct {
	loads  []float64
	lat    []time.Duration
	errors int
}

func stampede(ctx context.Context, e *env, lib Lib, callers, rounds int) (stampedeResult, error) {
	var r stampedeResult
	c, err := lib.New(e.config(Config{TTL: time.Minute, Stale: time.Minute, Entries: rounds}))
	if err != nil {
		return r, err
	}
	defer c.Close()
	val := value(1024, "v")
	for round := 0; round < rounds; round++ {
		key := e.key(lib, "stampede", round)
		loads, lat, errs := stampedeRound(ctx, c, key, callers, func(ctx context.Context) ([]byte, error) {
			time.Sleep(stampedeLoad)
			return val, nil
		}, nil)
		r.loads = append(r.loads, float64(loads))
		r.lat = append(r.lat, lat...)
		r.errors += errs
	}
	return r, nil
}

// stampedeRound starts callers goroutines that all Get key once the last
// of them is ready, and returns the loads run, each caller's latency and
// the number of errors.
// If wait is not nil, it is called once the callers are ready, to choose
// the instant they start.
func stampedeRound(ctx context.Context, c Cache, key string, callers int, load LoadFunc, wait func()) (int64, []time.Duration, int) {
	var (
		loads atomic.Int64
		errs  atomic.Int64
		ready sync.WaitGroup
		done  sync.WaitGroup
		start = make(chan struct{})
		lat   = make([]time.Duration, callers)
	)
	counted := func(ctx context.Context) ([]byte, error) {
		loads.Add(1)
		return load(ctx)
	}
	ready.Add(callers)
	done.Add(callers)
	var t0 time.Time
	for i := range callers {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			v, err := c.Get(gctx, key, counted)
			cancel()
			lat[i] = time.Since(t0)
			if err != nil || len(v) == 0 {
				errs.Add(1)
			}
		}()
	}
	ready.Wait()
	if wait != nil {
		wait()
	}
	t0 = time.Now()
	close(start)
	done.Wait()
	return loads.Load(), lat, int(errs.Load())
}

func maxf(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
