package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Tag invalidation: N entries carry one tag; the time is that of the one
// call that drops them all. Libraries without tags get a row saying so.

func runTags(ctx context.Context, e *env) error {
	sizes := []int{10, 1000, 100_000}
	if e.quick {
		sizes = []int{10, 1000}
	}
	head := []string{"library", "store"}
	for _, n := range sizes {
		head = append(head, fmt.Sprintf("%d entries", n))
	}
	fmt.Fprintf(e.out, "Time of one InvalidateTags call that drops N entries carrying the tag (filled first through Get, 64 B values; "+
		"one untimed call of another tag before it); then %d of the entries are read again and must all load.\n\n", tagCheck)
	t := newTable(head...)
	for _, lib := range e.libs {
		if !e.usable(lib) {
			continue
		}
		row := []any{lib.Name, where(lib)}
		for _, n := range sizes {
			d, err := tagInvalidation(ctx, e, lib, n)
			switch {
			case err == errNoTags:
				row = append(row, "n/a (no tags)")
				e.note(lib.Name, "tags", "n/a (no tags)")
			case err != nil:
				row = append(row, e.failed(lib.Name, err))
			default:
				row = append(row, fmtDur(d))
				if n == 100_000 {
					e.note(lib.Name, "tags", fmtDur(d))
				} else {
					e.note(lib.Name, "tags", fmt.Sprintf("%s (%d entries)", fmtDur(d), n))
				}
				e.logf("   %-16s %6d entries: %v", lib.Name, n, d)
			}
		}
		t.add(row...)
	}
	t.print(e.out)
	return nil
}

const tagCheck = 100

var errNoTags = fmt.Errorf("no tags")

func tagInvalidation(ctx context.Context, e *env, lib Lib, n int) (time.Duration, error) {
	c, err := lib.New(e.config(Config{TTL: time.Hour, Stale: time.Hour, Entries: n, ValueSize: 64}))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	tg, ok := c.(Tagger)
	if !ok {
		return 0, errNoTags
	}
	tag := e.key(lib, "tag", n)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = e.key(lib, "tagged", n, i)
	}
	val := value(64, "v")
	var loads atomic.Int64
	load := func(context.Context) ([]byte, error) {
		loads.Add(1)
		return val, nil
	}
	// Fill with a few workers: the Redis rows are round trips.
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		ferr atomic.Pointer[error]
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if _, err := tg.GetTagged(ctx, keys[i], []string{tag}, load); err != nil {
					ferr.Store(&err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := ferr.Load(); p != nil {
		return 0, *p
	}
	if s, ok := c.(settler); ok {
		for _, k := range keys {
			if err := s.Settle(ctx, k); err != nil {
				return 0, err
			}
		}
	}
	// One untimed call first, of a tag nothing carries: a first call may
	// load a script or warm a connection, which is not what is measured.
	if err := tg.InvalidateTag(ctx, tag+"-warmup"); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := tg.InvalidateTag(ctx, tag); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	loads.Store(0)
	check := min(n, tagCheck)
	for i := range check {
		if _, err := c.Get(ctx, keys[i*n/check], load); err != nil {
			return 0, err
		}
	}
	if got := loads.Load(); got != int64(check) {
		return 0, fmt.Errorf("after the invalidation %d of %d entries were still cached", int64(check)-got, check)
	}
	return d, nil
}
