package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newTestFloor builds a floor-redis cache on the test Redis whose lease
// (and wait before claiming again) lasts lease, closed when the test ends.
func newTestFloor(t *testing.T, lease time.Duration) *floorCache {
	t.Helper()
	c, err := newFloor(Config{TTL: time.Minute, Redis: requireRedis(t)}, lease)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func floorKey(t *testing.T) string {
	return fmt.Sprintf("floortest:%d:%s", time.Now().UnixNano(), t.Name())
}

// TestFloorFleetRound runs one round of the fleet scenario on four
// floor-redis caches, one per process of the fleet: one load for the
// fleet, every caller answered, no errors. The lease (and so a waiter's
// wait before it claims again) is longer than a caller's 30 s context:
// the other processes' callers are answered by the holder's wake or not
// at all.
func TestFloorFleetRound(t *testing.T) {
	var kids []*floorCache
	for range fleetProcs {
		kids = append(kids, newTestFloor(t, time.Minute))
	}
	key := floorKey(t)
	at := time.Now().Add(50 * time.Millisecond)
	val := value(1024, "v")
	reps := make([]fleetReport, len(kids))
	var wg sync.WaitGroup
	for i, c := range kids {
		wg.Go(func() { reps[i] = fleetChildRound(c, key, at, val) })
	}
	wg.Wait()
	var loads int64
	errs := 0
	for i, r := range reps {
		loads += r.Loads
		errs += r.Errors
		if len(r.Lat) != fleetCallers {
			t.Fatalf("process %d: %d latencies, want %d", i, len(r.Lat), fleetCallers)
		}
	}
	if loads != 1 || errs != 0 {
		t.Fatalf("%d loads, %d errors; want 1 load for the fleet and no errors", loads, errs)
	}
}

// TestFloorLostWake checks the bounded wait: a waiter whose wake never
// comes (the value is written without a publish) claims again after the
// lease's PX and finds the value, without loading.
func TestFloorLostWake(t *testing.T) {
	ctx := context.Background()
	c := newTestFloor(t, 50*time.Millisecond)
	key := floorKey(t)
	// A holder that will never publish.
	if err := c.rdb.Set(ctx, key+floorLeaseSuffix, "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	c.waiting = func(string) {
		once.Do(func() {
			if err := c.rdb.Set(ctx, key, "written", time.Minute).Err(); err != nil {
				t.Error(err)
			}
		})
	}
	src := newCounter("loaded")
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := c.Get(gctx, key, src.load)
	if err != nil || string(v) != "written" {
		t.Fatalf("Get = %q, %v; want the value written while it waited", v, err)
	}
	if n := src.n.Load(); n != 0 {
		t.Fatalf("%d loads, want 0", n)
	}
}

// TestFloorGoneHolder checks that a lease whose holder is gone (it never
// fills) delays a Get by at most its PX: the Get then takes the lease and
// loads.
func TestFloorGoneHolder(t *testing.T) {
	ctx := context.Background()
	c := newTestFloor(t, 50*time.Millisecond)
	key := floorKey(t)
	if err := c.rdb.Set(ctx, key+floorLeaseSuffix, "1", 100*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	var waited atomic.Int64
	c.waiting = func(string) { waited.Add(1) }
	src := newCounter("loaded")
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := c.Get(gctx, key, src.load)
	if err != nil || string(v) != "loaded" {
		t.Fatalf("Get = %q, %v; want its own load", v, err)
	}
	if n := src.n.Load(); n != 1 || waited.Load() == 0 {
		t.Fatalf("%d loads after %d waits; want 1 load after waiting", n, waited.Load())
	}
}

// TestFloorFailedLoadWakes checks that a holder whose load fails wakes
// the other processes' waiters, which claim again at once rather than
// after the lease's PX: the waiter here waits a minute for a wake, the
// Get's context only 30 s.
func TestFloorFailedLoadWakes(t *testing.T) {
	ctx := context.Background()
	holder := newTestFloor(t, time.Minute)
	waiter := newTestFloor(t, time.Minute)
	key := floorKey(t)
	isWaiting := make(chan struct{})
	var once sync.Once
	waiter.waiting = func(string) { once.Do(func() { close(isWaiting) }) }
	failed := errors.New("the source is down")
	holderDone := make(chan error, 1)
	go func() {
		_, err := holder.Get(ctx, key, func(context.Context) ([]byte, error) {
			<-isWaiting
			return nil, failed
		})
		holderDone <- err
	}()
	// The holder takes the lease before the waiter's claim: wait until
	// the lease exists.
	eventually(t, "the holder takes the lease", func() error {
		n, err := holder.rdb.Exists(ctx, key+floorLeaseSuffix).Result()
		if err == nil && n != 1 {
			err = errors.New("no lease yet")
		}
		return err
	})
	src := newCounter("loaded")
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := waiter.Get(gctx, key, src.load)
	if err != nil || string(v) != "loaded" {
		t.Fatalf("waiter's Get = %q, %v; want its own load after the holder failed", v, err)
	}
	if n := src.n.Load(); n != 1 {
		t.Fatalf("waiter loaded %d times, want 1", n)
	}
	if err := <-holderDone; !errors.Is(err, failed) {
		t.Fatalf("holder's Get: %v, want its load's error", err)
	}
}
