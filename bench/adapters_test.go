package main

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
)

// newTestCache builds lib for a test, on the test Redis if it needs one.
func newTestCache(t *testing.T, lib Lib, cfg Config) Cache {
	t.Helper()
	if lib.Redis {
		cfg.Redis = requireRedis(t)
	}
	if lib.Memcached {
		cfg.Memcached = requireMemcached(t)
	}
	if cfg.TTL == 0 {
		cfg.TTL = time.Minute
	}
	if cfg.ValueSize == 0 {
		cfg.ValueSize = 64
	}
	c, err := lib.New(cfg)
	if err != nil {
		t.Fatalf("%s: New: %v", lib.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// counter is a load function that returns the current row and counts its
// calls.
type counter struct {
	n   atomic.Int64
	row atomic.Pointer[[]byte]
}

func newCounter(v string) *counter {
	c := new(counter)
	c.set(v)
	return c
}

func (c *counter) set(v string) { b := []byte(v); c.row.Store(&b) }

func (c *counter) load(context.Context) ([]byte, error) {
	c.n.Add(1)
	return *c.row.Load(), nil
}

// eventually retries f for up to 2s: some libraries write loaded values
// (gocache's setter) or learn of deletions (rueidis's client-side cache)
// in the background.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAdapters(t *testing.T) {
	for _, lib := range ordered() {
		t.Run("lib="+lib.Name, func(t *testing.T) {
			ctx := context.Background()
			c := newTestCache(t, lib, Config{})
			key := fmt.Sprintf("test:%d:%s", time.Now().UnixNano(), lib.Name)
			src := newCounter("v1")

			v, err := c.Get(ctx, key, src.load)
			if err != nil || string(v) != "v1" {
				t.Fatalf("first Get = %q, %v; want v1", v, err)
			}
			if n := src.n.Load(); n != 1 {
				t.Fatalf("first Get ran %d loads, want 1", n)
			}
			eventually(t, "a Get after the fill hits", func() error {
				before := src.n.Load()
				v, err := c.Get(ctx, key, src.load)
				switch {
				case err != nil:
					return err
				case string(v) != "v1":
					return fmt.Errorf("got %q, want v1", v)
				case src.n.Load() != before:
					return fmt.Errorf("the Get loaded again")
				}
				return nil
			})

			// gocache writes loaded values from a background goroutine: a
			// Delete that overtakes that write is undone by it. Wait for it.
			if s, ok := c.(settler); ok {
				if err := s.Settle(ctx, key); err != nil {
					t.Fatal(err)
				}
			}
			src.set("v2")
			if err := c.Invalidate(ctx, key); err != nil {
				t.Fatalf("Invalidate: %v", err)
			}
			eventually(t, "a Get after Invalidate loads the new row", func() error {
				v, err := c.Get(ctx, key, src.load)
				if err != nil {
					return err
				}
				if string(v) != "v2" {
					return fmt.Errorf("got %q, want v2", v)
				}
				return nil
			})
		})
	}
}

func TestAdapterTags(t *testing.T) {
	for _, lib := range ordered() {
		t.Run("lib="+lib.Name, func(t *testing.T) {
			ctx := context.Background()
			c := newTestCache(t, lib, Config{})
			tg, ok := c.(Tagger)
			if !ok {
				t.Skip("no tags")
			}
			prefix := fmt.Sprintf("tagtest:%d:%s", time.Now().UnixNano(), lib.Name)
			src := newCounter("v")
			var keys []string
			for i := range 5 {
				k := fmt.Sprintf("%s:%d", prefix, i)
				keys = append(keys, k)
				if _, err := tg.GetTagged(ctx, k, []string{prefix + ":tag"}, src.load); err != nil {
					t.Fatal(err)
				}
			}
			if s, ok := c.(settler); ok {
				for _, k := range keys {
					if err := s.Settle(ctx, k); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := tg.InvalidateTag(ctx, prefix+":tag"); err != nil {
				t.Fatal(err)
			}
			src.n.Store(0)
			for _, k := range keys {
				if _, err := c.Get(ctx, k, src.load); err != nil {
					t.Fatal(err)
				}
			}
			if n := src.n.Load(); n != int64(len(keys)) {
				t.Fatalf("after InvalidateTag %d of %d Gets loaded", n, len(keys))
			}
		})
	}
}

// TestStampedeCoalesces checks the scenario's own claim for the libraries
// that coalesce: many callers, one load.
func TestStampedeCoalesces(t *testing.T) {
	for _, lib := range ordered() {
		t.Run("lib="+lib.Name, func(t *testing.T) {
			c := newTestCache(t, lib, Config{})
			key := fmt.Sprintf("stampede:%d:%s", time.Now().UnixNano(), lib.Name)
			loads, _, errs := stampedeRound(context.Background(), c, key, 100, func(context.Context) ([]byte, error) {
				time.Sleep(20 * time.Millisecond)
				return []byte("v"), nil
			}, nil)
			if errs != 0 {
				t.Fatalf("%d errors", errs)
			}
			if lib.Name == "cacheaside-mem" || lib.Name == "cacheaside-redis" {
				// No coalescing, the point of the row: every caller that
				// runs before the first load ends loads too.
				if loads < 2 {
					t.Fatalf("%d loads, want several", loads)
				}
				return
			}
			if loads != 1 {
				t.Fatalf("%d loads, want 1", loads)
			}
		})
	}
}

// TestRaceTrial checks the race construction: cache-aside always serves
// the old row, paddock never does.
func TestRaceTrial(t *testing.T) {
	for _, name := range []string{"cacheaside-mem", "paddock-mem", "cacheaside-redis", "paddock-redis"} {
		t.Run("lib="+name, func(t *testing.T) {
			lib, err := lookupLib(name)
			if err != nil {
				t.Fatal(err)
			}
			c := newTestCache(t, lib, Config{})
			stale := 0
			const trials = 20
			for i := range trials {
				s, _, err := raceTrial(context.Background(), c, fmt.Sprintf("race:%d:%s:%d", time.Now().UnixNano(), name, i))
				if err != nil {
					t.Fatal(err)
				}
				if s {
					stale++
				}
			}
			want := 0
			if lib.Peer {
				want = trials
			}
			if stale != want {
				t.Fatalf("%d of %d trials stale, want %d", stale, trials, want)
			}
		})
	}
}

// TestEarlyRow checks the early construction on both paddock rows: with
// Beta(0) nothing is refreshed early and readers wait at expiry; at the
// defaults the key is refreshed early.
func TestEarlyRow(t *testing.T) {
	for _, name := range []string{"paddock-mem", "paddock-redis", "paddock-memcached"} {
		t.Run("lib="+name, func(t *testing.T) {
			lib, err := lookupLib(name)
			if err != nil {
				t.Fatal(err)
			}
			e := &env{run: fmt.Sprintf("et%d", time.Now().UnixNano()%1e9)}
			if lib.Redis {
				e.redis = requireRedis(t)
			}
			if lib.Memcached {
				e.memcached = requireMemcached(t)
			}
			// Five TTLs: four expiries for the plain TTL.
			shape := expiryLoadShape{readers: earlyReaders, pace: earlyPace, load: earlyLoad, dur: 5 * earlyTTL}
			r, early, err := earlyRow(t.Context(), e, lib, "off", []paddock.GetOption{paddock.Beta(0)}, shape)
			if err != nil {
				t.Fatal(err)
			}
			if early != 0 || r.blocked == 0 || r.loads == 0 {
				t.Errorf("Beta(0): %d loads, %d early, %d blocked Gets; want loads at expiry, none early, Gets blocked", r.loads, early, r.blocked)
			}
			r, early, err = earlyRow(t.Context(), e, lib, "defaults", nil, shape)
			if err != nil {
				t.Fatal(err)
			}
			if early == 0 || early > r.loads {
				t.Errorf("defaults: %d loads, %d early; want the key refreshed early", r.loads, early)
			}
		})
	}
}

func TestHist(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.quantile(c.q)
		if d := got - c.want; d < -c.want/25 || d > c.want/25 {
			t.Errorf("quantile(%g) = %v, want %v ± 4%%", c.q, got, c.want)
		}
	}
	if n := h.countAbove(500 * time.Microsecond); n < 490 || n > 510 {
		t.Errorf("countAbove(500µs) = %d, want about 500", n)
	}
	if !bytes.Equal(value(4, "ab"), []byte("abxx")) {
		t.Errorf("value(4, ab) = %q", value(4, "ab"))
	}
}
