package paddock_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/paddockcache/paddock"
)

// KeepAtMost bounds every window of the entry, and SetTTL, SetStale or a
// longer second call cannot lengthen it; a shorter TTL stays shorter.
func TestKeepAtMost(t *testing.T) {
	for _, tc := range []struct {
		name   string
		load   func(ctx context.Context)
		hitFor time.Duration // the entry is a hit this long, and gone after
	}{
		{"bound", func(ctx context.Context) { paddock.KeepAtMost(ctx, 10*time.Second) }, 10 * time.Second},
		{"then SetTTL", func(ctx context.Context) {
			paddock.KeepAtMost(ctx, 10*time.Second)
			paddock.SetTTL(ctx, 2*time.Hour)
			paddock.SetStale(ctx, 2*time.Hour)
		}, 10 * time.Second},
		{"twice", func(ctx context.Context) {
			paddock.KeepAtMost(ctx, 10*time.Second)
			paddock.KeepAtMost(ctx, time.Hour)
		}, 10 * time.Second},
		{"shorter TTL", func(ctx context.Context) {
			paddock.SetTTL(ctx, 5*time.Second)
			paddock.SetStale(ctx, 0)
			paddock.KeepAtMost(ctx, 10*time.Second)
		}, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCache(t, nil)
				l := newLoader[string](t, c, "kept", paddock.TTL(time.Hour), paddock.Stale(time.Hour),
					paddock.StaleIfError(time.Hour), paddock.Beta(0))
				loads := 0
				load := func(ctx context.Context) (string, error) {
					loads++
					tc.load(ctx)
					return "v", nil
				}
				if _, err := l.Get(ctx, "k", load); err != nil {
					t.Fatal(err)
				}
				time.Sleep(tc.hitFor - time.Second)
				if r, err := l.Fetch(ctx, "k", load); err != nil || r.Status != paddock.StatusHit {
					t.Fatalf("%v later: %v, %v; want a hit", tc.hitFor-time.Second, r.Status, err)
				}
				time.Sleep(2 * time.Second)
				if r, err := l.Fetch(ctx, "k", load); err != nil || r.Status != paddock.StatusLoaded || loads != 2 {
					t.Fatalf("%v later: %v, %v after %d loads; want a load (not a stale hit)", tc.hitFor+time.Second, r.Status, err, loads)
				}
			})
		})
	}
}

// KeepAtMost(0) keeps nothing, and outside a load it does nothing.
func TestKeepAtMostZero(t *testing.T) {
	c := newCache(t, nil)
	l := newLoader[string](t, c, "kept", paddock.TTL(time.Hour))
	paddock.KeepAtMost(ctx, 0) // outside a load: no effect, no panic
	loads := 0
	load := func(ctx context.Context) (string, error) {
		loads++
		paddock.KeepAtMost(ctx, 0)
		return "v", nil
	}
	for range 2 {
		if _, err := l.Get(ctx, "k", load); err != nil {
			t.Fatal(err)
		}
	}
	if loads != 2 {
		t.Fatalf("%d loads, want 2: a value kept at most 0 s is not cached", loads)
	}
}

// An outer entry built from an inner one that KeepAtMost bounded has the
// same bound.
func TestKeepAtMostNested(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		inner := newLoader[string](t, c, "inner", paddock.TTL(time.Hour), paddock.Beta(0))
		outer := newLoader[string](t, c, "outer", paddock.TTL(time.Hour), paddock.Beta(0))
		loads := 0
		build := func(ctx context.Context) (string, error) {
			loads++
			return inner.Get(ctx, "k", func(ctx context.Context) (string, error) {
				paddock.KeepAtMost(ctx, 10*time.Second)
				return "v", nil
			})
		}
		if _, err := outer.Get(ctx, "k", build); err != nil {
			t.Fatal(err)
		}
		time.Sleep(11 * time.Second)
		if r, _ := outer.Fetch(ctx, "k", build); r.Status != paddock.StatusLoaded || loads != 2 {
			t.Fatalf("outer 11 s later: %v after %d loads; want a load", r.Status, loads)
		}
	})
}
