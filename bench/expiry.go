package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Expiry under load: expiryReaders goroutines each read one hot key every
// expiryPace for a while; the key's TTL is 1s (go-redis/cache's shortest)
// and a load takes expiryLoad. The readers are paced, not a closed loop: on
// two cores a closed loop of CPU-bound readers measures the scheduler's
// time slices, not waits for a load. Each expiry is a chance to stampede (several
// loads) and to block readers (Gets that wait for a load). Libraries with
// a refresh option (paddock's Stale, sturdyc's early refreshes, otter's
// RefreshCalculator) have it on with a 1-minute window.

const (
	expiryTTL     = time.Second
	expiryLoad    = 20 * time.Millisecond
	expiryReaders = 16
	expiryPace    = time.Millisecond
)

// expiryLoadShape is one expiry-under-load workload: readers goroutines
// each Get one hot key every pace for dur, and a load sleeps load. The
// TTL and the refresh window are the cache's.
type expiryLoadShape struct {
	readers int
	pace    time.Duration
	load    time.Duration
	dur     time.Duration
}

// slow is how long a Get must take to count as waiting for a load.
func (w expiryLoadShape) slow() time.Duration { return w.load / 2 }

func runExpiry(ctx context.Context, e *env) error {
	expiries := e.pick(3, 10)
	// Half a TTL past the last expiry, so that each run sees exactly
	// that many.
	dur := time.Duration(expiries)*expiryTTL + expiryTTL/2
	fmt.Fprintf(e.out, "%d readers each Get one hot key every %v for %v (%d expiries); TTL %v, the load sleeps %v, stale/refresh window 1m where the library has one. "+
		"Loads and blocked Gets are per expiry; a blocked Get waited for a load: it took at least %v and a load ended while it ran. "+
		"Slow Gets took as long with no load ending meanwhile (the machine, the network, Redis).\n\n",
		expiryReaders, expiryPace, dur, expiries, expiryTTL, expiryLoad, expiryLoad/2)
	t := newTable("library", "store", "loads/expiry", "blocked Gets/expiry", "Get p50", "p99", "max", "Gets", "slow Gets")
	for _, lib := range e.libs {
		if !e.usable(lib) {
			continue
		}
		c, err := lib.New(e.config(Config{TTL: expiryTTL, Stale: time.Minute, Entries: 16}))
		var r *expiryResult
		if err == nil {
			r, err = expiry(ctx, e.key(lib, "expiry"), c, expiryLoadShape{
				readers: expiryReaders, pace: expiryPace, load: expiryLoad, dur: dur,
			})
			c.Close()
		}
		n := float64(expiries)
		if err != nil {
			t.add(lib.Name, where(lib), e.failed(lib.Name, err), "", "", "", "", "")
			continue
		}
		t.add(lib.Name, where(lib), fmt.Sprintf("%.1f", float64(r.loads)/n), fmt.Sprintf("%.1f", float64(r.blocked)/n),
			fmtDur(r.h.quantile(0.5)), fmtDur(r.h.quantile(0.99)), fmtDur(r.h.max), r.h.n, r.slow)
		e.note(lib.Name, "blocked", fmt.Sprintf("%.1f", float64(r.blocked)/n))
		e.logf("   %-16s loads %d blocked %d slow %d p99 %v max %v gets %d errors %d", lib.Name, r.loads, r.blocked, r.slow, r.h.quantile(0.99), r.h.max, r.h.n, r.errors)
	}
	t.print(e.out)
	return nil
}

type expiryResult struct {
	loads, blocked, slow, errors uint64
	h                            hist
}

// span is a Get that took at least half a load.
type span struct{ start, end time.Time }

// expiry drives c with workload w on key and counts its loads, the Gets
// that waited for one (blocked) and the Gets as slow for another reason.
func expiry(ctx context.Context, key string, c Cache, w expiryLoadShape) (*expiryResult, error) {
	val := value(1024, "v")
	var (
		loads    atomic.Uint64
		endsMu   sync.Mutex
		loadEnds []time.Time
	)
	load := func(ctx context.Context) ([]byte, error) {
		loads.Add(1)
		time.Sleep(w.load)
		endsMu.Lock()
		loadEnds = append(loadEnds, time.Now())
		endsMu.Unlock()
		return val, nil
	}
	if _, err := c.Get(ctx, key, load); err != nil {
		return nil, err
	}
	loads.Store(0)
	endsMu.Lock()
	loadEnds = nil
	endsMu.Unlock()
	r := &expiryResult{}
	var slow []span
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		errs   atomic.Uint64
		cancel = make(chan struct{})
	)
	for range w.readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := new(hist)
			var mine []span
			tick := time.NewTicker(w.pace)
			defer tick.Stop()
			for {
				select {
				case <-cancel:
					mu.Lock()
					r.h.merge(h)
					slow = append(slow, mine...)
					mu.Unlock()
					return
				case <-tick.C:
				}
				t0 := time.Now()
				v, err := c.Get(ctx, key, load)
				t1 := time.Now()
				h.add(t1.Sub(t0))
				if t1.Sub(t0) >= w.slow() {
					mine = append(mine, span{t0, t1})
				}
				if err != nil || len(v) == 0 {
					errs.Add(1)
				}
			}
		}()
	}
	select {
	case <-time.After(w.dur):
	case <-ctx.Done():
	}
	close(cancel)
	wg.Wait()
	r.loads = loads.Load()
	endsMu.Lock()
	ends := slices.Clone(loadEnds)
	endsMu.Unlock()
	slices.SortFunc(ends, time.Time.Compare)
	for _, g := range slow {
		// The first load end at or after the Get's start: did it come
		// before the Get's end?
		i, _ := slices.BinarySearchFunc(ends, g.start, time.Time.Compare)
		if i < len(ends) && !ends[i].After(g.end) {
			r.blocked++
		} else {
			r.slow++
		}
	}
	r.errors = errs.Load()
	return r, nil
}
