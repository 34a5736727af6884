package paddock_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/paddockcache/paddock"
)

// countingLoad returns a load that counts its calls and returns the
// value v points to.
func countingLoad(n *atomic.Int64, v *string) paddock.LoadFunc[string] {
	return func(context.Context) (string, error) { n.Add(1); return *v, nil }
}

// A hot hit costs no store read and no allocation.
func TestHotHitAllocatesNothing(t *testing.T) {
	c := newCache(t, nil)
	l := newLoader[[]byte](t, c, "p")
	v := make([]byte, 1024)
	load := func(context.Context) ([]byte, error) { return v, nil }
	l.Get(ctx, "k", load)
	l.Get(ctx, "k", load) // from the store: now in the tier
	if n := testing.AllocsPerRun(100, func() { l.Get(ctx, "k", load) }); n != 0 {
		t.Errorf("a hot hit allocates %v times, want 0", n)
	}
	if r, _ := l.Fetch(ctx, "k", load); r.Status != paddock.StatusHit || r.TTL <= 0 {
		t.Errorf("hot hit %+v", r)
	}
}

// Every invalidation that covers a hot copy makes it unservable before it
// returns: of the key, of a tag, of a value it was built from, a Set, a
// soft one; from this Cache or another one sharing the store.
func TestHotTierIsExact(t *testing.T) {
	for _, tc := range []struct {
		name       string
		invalidate func(c, other *paddock.Cache, l *paddock.Loader[string], rows *paddock.Loader[string]) error
	}{
		{"key", func(c, _ *paddock.Cache, l, _ *paddock.Loader[string]) error { return l.Invalidate(ctx, "k") }},
		{"tag", func(c, _ *paddock.Cache, _, _ *paddock.Loader[string]) error { return c.InvalidateTags(ctx, "t") }},
		{"late tag", func(c, _ *paddock.Cache, _, _ *paddock.Loader[string]) error { return c.InvalidateTags(ctx, "late") }},
		{"dependency", func(_, _ *paddock.Cache, _, rows *paddock.Loader[string]) error { return rows.Invalidate(ctx, "r") }},
		{"soft", func(c, _ *paddock.Cache, l, _ *paddock.Loader[string]) error { return l.MarkStale(ctx, "k") }},
		{"Set", func(_, _ *paddock.Cache, l, _ *paddock.Loader[string]) error { return l.Set(ctx, "k", "new") }},
		{"another Cache", func(_, other *paddock.Cache, _, _ *paddock.Loader[string]) error {
			return other.InvalidateTags(ctx, "t")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newMem(t)
			c, other := newCache(t, s), newCache(t, s)
			l := newLoader[string](t, c, "p")
			rows := newLoader[string](t, c, "row")
			var loads atomic.Int64
			value := "old"
			load := func(ctx context.Context) (string, error) {
				loads.Add(1)
				paddock.Tag(ctx, "late")
				rows.Get(ctx, "r", func(context.Context) (string, error) { return "row", nil })
				return value, nil
			}
			l.Get(ctx, "k", load, paddock.Tags("t"), paddock.Stale(time.Hour))
			l.Get(ctx, "k", load, paddock.Tags("t"))
			if v, _ := l.Get(ctx, "k", load); v != "old" || loads.Load() != 1 {
				t.Fatalf("warm: %q after %d loads", v, loads.Load())
			}
			value = "new"
			if err := tc.invalidate(c, other, l, rows); err != nil {
				t.Fatal(err)
			}
			r, err := l.Fetch(ctx, "k", load, paddock.Tags("t"))
			if err != nil || r.Status == paddock.StatusHit && r.Value == "old" {
				t.Errorf("after the invalidation: %+v, %v: the hot copy was served", r, err)
			}
		})
	}
}

// A hot copy is never served past its fresh window, nor into its
// early-refresh window.
func TestHotTierWindows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[string](t, c, "p")
		var n atomic.Int64
		v := "v"
		l.Get(ctx, "k", countingLoad(&n, &v), paddock.TTL(10*time.Second), paddock.Beta(0))
		l.Get(ctx, "k", countingLoad(&n, &v))
		time.Sleep(9 * time.Second)
		if r, _ := l.Fetch(ctx, "k", countingLoad(&n, &v)); r.Status != paddock.StatusHit {
			t.Errorf("at 9s: %v", r.Status)
		}
		time.Sleep(time.Second)
		if r, _ := l.Fetch(ctx, "k", countingLoad(&n, &v)); r.Status == paddock.StatusHit {
			t.Errorf("at 10s, past the TTL: a hit")
		}
	})
}

// A cached absence is served from the tier too; HotSize(0) turns the tier
// off; a bad size is an error.
func TestHotSize(t *testing.T) {
	c := newCache(t, nil)
	l := newLoader[string](t, c, "p")
	var n atomic.Int64
	missing := func(context.Context) (string, error) { n.Add(1); return "", paddock.ErrNotFound }
	for range 3 {
		if _, err := l.Get(ctx, "gone", missing); !errors.Is(err, paddock.ErrNotFound) {
			t.Fatal(err)
		}
	}
	if n.Load() != 1 {
		t.Errorf("%d loads of an absent key", n.Load())
	}
	off := newLoader[[]byte](t, c, "off", paddock.HotSize(0))
	b := make([]byte, 10)
	off.Get(ctx, "k", func(context.Context) ([]byte, error) { return b, nil })
	off.Get(ctx, "k", func(context.Context) ([]byte, error) { return b, nil })
	if a := testing.AllocsPerRun(20, func() { off.Get(ctx, "k", func(context.Context) ([]byte, error) { return b, nil }) }); a == 0 {
		t.Error("HotSize(0): a hit allocates nothing, so it came from a tier")
	}
	if _, err := paddock.NewLoader[string](c, "bad", paddock.HotSize(-1)); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("HotSize(-1): %v", err)
	}
}
