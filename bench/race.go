package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The stale-set race, built the same way in every trial:
//
//	loader: Get(key) misses; its load reads the row (old) and blocks
//	writer:                                      row = new; Invalidate(key) returns
//	loader: the load returns old; the library writes it (or refuses to)
//	reader: Get(key) -> old is a stale read after the invalidation
//
// This is the news homepage that keeps showing the old article after
// publishing. Plain cache-aside loses every time.

func runRace(ctx context.Context, e *env) error {
	trials := e.pick(100, 1000)
	fmt.Fprintf(e.out, "Per trial: a Get's load reads the old row and blocks; the writer updates the row and invalidates; the load then returns; "+
		"a new Get follows. Counted: new Gets that returned the old row after the invalidation had returned, per 1000 trials (%d trials run).\n\n", trials)
	t := newTable("library", "store", "stale reads / 1000", "racing Get errors")
	for _, lib := range e.libs {
		if !e.usable(lib) {
			continue
		}
		stale, lerrs, err := race(ctx, e, lib, trials)
		if err != nil {
			t.add(lib.Name, where(lib), e.failed(lib.Name, err), "")
			continue
		}
		t.add(lib.Name, where(lib), fmt.Sprintf("%.0f", float64(stale)*1000/float64(trials)), lerrs)
		e.logf("   %-16s stale %d/%d", lib.Name, stale, trials)
		e.note(lib.Name, "race", fmt.Sprintf("%.0f", float64(stale)*1000/float64(trials)))
	}
	t.print(e.out)
	return nil
}

func race(ctx context.Context, e *env, lib Lib, trials int) (stale, loaderErrs int, err error) {
	c, err := lib.New(e.config(Config{TTL: time.Minute, Stale: time.Minute, Entries: trials}))
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	for i := range trials {
		s, lerr, err := raceTrial(ctx, c, e.key(lib, "race", i))
		if err != nil {
			return stale, loaderErrs, err
		}
		if s {
			stale++
		}
		if lerr != nil {
			loaderErrs++
		}
	}
	return stale, loaderErrs, nil
}

// raceTrial runs one trial on key and reports whether the reader saw the
// old row, and the racing loader's own error.
func raceTrial(ctx context.Context, c Cache, key string) (stale bool, loaderErr, err error) {
	oldRow, newRow := value(64, "old:"+key), value(64, "new:"+key)
	var row atomic.Pointer[[]byte]
	row.Store(&oldRow)
	readRow := func() []byte { return *row.Load() }

	read := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	slow := func(ctx context.Context) ([]byte, error) {
		v := readRow()
		once.Do(func() {
			close(read)
			<-release
		})
		return v, nil
	}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	loaded := make(chan error, 1)
	go func() {
		_, err := c.Get(tctx, key, slow)
		loaded <- err
	}()
	select {
	case <-read:
	case <-tctx.Done():
		return false, nil, errors.New("the load never started")
	}
	row.Store(&newRow)
	if err := c.Invalidate(tctx, key); err != nil {
		close(release)
		return false, nil, fmt.Errorf("invalidate: %w", err)
	}
	close(release)
	select {
	case loaderErr = <-loaded:
	case <-tctx.Done():
		return false, nil, errors.New("the racing Get never returned")
	}
	v, err := c.Get(tctx, key, func(ctx context.Context) ([]byte, error) { return readRow(), nil })
	if err != nil {
		return false, loaderErr, fmt.Errorf("reader: %w", err)
	}
	return bytes.Equal(v, oldRow), loaderErr, nil
}
