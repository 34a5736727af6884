package paddock_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/store"
)

// Tests of what a load decides about its result (SetTTL, SetStale,
// NoStore, Private), and of Gets after an invalidation not waiting for the
// load it doomed.

func TestSetTTLOverridesTheGets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[string](t, c, "p", paddock.TTL(time.Hour), paddock.Beta(0))
		load := func(ctx context.Context) (string, error) {
			paddock.SetTTL(ctx, 10*time.Second) // the row's own expiry
			return "v", nil
		}
		if _, err := l.Get(ctx, "k", load); err != nil {
			t.Fatal(err)
		}
		time.Sleep(9 * time.Second)
		if r, _ := l.Fetch(ctx, "k", load); r.Status != paddock.StatusHit {
			t.Fatalf("9 s later: %v, want a hit", r.Status)
		}
		time.Sleep(2 * time.Second)
		if r, _ := l.Fetch(ctx, "k", load); r.Status != paddock.StatusLoaded {
			t.Fatalf("11 s later: %v, want a load", r.Status)
		}
	})
}

func TestSetTTLZeroStoresStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[string](t, c, "p", paddock.TTL(time.Hour), paddock.Beta(0))
		var n atomic.Int64
		load := func(ctx context.Context) (string, error) {
			paddock.SetTTL(ctx, 0)             // max-age=0
			paddock.SetStale(ctx, time.Minute) // stale-while-revalidate=60
			return fmt.Sprint(n.Add(1)), nil
		}
		if v, _ := l.Get(ctx, "k", load); v != "1" {
			t.Fatal(v)
		}
		r, _ := l.Fetch(ctx, "k", load)
		if r.Status != paddock.StatusStale || r.Value != "1" {
			t.Fatalf("after SetTTL(0): %+v, want the value served stale", r)
		}
		synctest.Wait() // its refresh
		time.Sleep(2 * time.Minute)
		if r, _ := l.Fetch(ctx, "k", load); r.Status != paddock.StatusLoaded {
			t.Fatalf("past the stale window: %v, want a load", r.Status)
		}
	})
}

func TestSetStaleOverridesTheGets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[string](t, c, "p", paddock.TTL(time.Minute), paddock.Beta(0))
		load := func(ctx context.Context) (string, error) {
			paddock.SetStale(ctx, time.Hour)
			return "v", nil
		}
		if _, err := l.Get(ctx, "k", load); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Minute)
		if r, _ := l.Fetch(ctx, "k", load); r.Status != paddock.StatusStale {
			t.Fatalf("inside the load's stale window: %v, want stale", r.Status)
		}
	})
}

func TestNoStoreSharesButDoesNotCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[string](t, c, "p")
		g := &gatedLoad[string]{started: make(chan struct{}, 100), release: make(chan struct{})}
		g.value = func(n int64) (string, error) { return fmt.Sprint("error page ", n), nil }
		load := func(ctx context.Context) (string, error) {
			paddock.NoStore(ctx)
			return g.load(ctx)
		}
		var wg sync.WaitGroup
		got := make(chan string, 10)
		for range 10 {
			wg.Go(func() {
				v, err := l.Get(ctx, "k", load)
				if err != nil {
					t.Error(err)
				}
				got <- v
			})
		}
		synctest.Wait()
		close(g.release)
		wg.Wait()
		close(got)
		for v := range got {
			if v != "error page 1" {
				t.Errorf("a coalesced caller got %q, want the one load's value", v)
			}
		}
		if _, found, _ := l.Peek(ctx, "k"); found {
			t.Error("a NoStore value was cached")
		}
		if v, _ := l.Get(ctx, "k", load); v != "error page 2" {
			t.Errorf("the next Get = %q, want a new load", v)
		}
	})
}

// A Private value reaches only the caller whose request ran the load: 100
// coalesced callers each run a load of their own.
func TestPrivateWith100CoalescedCallers(t *testing.T) {
	for _, remote := range []bool{false, true} {
		t.Run(fmt.Sprintf("remote=%v", remote), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var s = newMem(t)
				c := newCache(t, s)
				if remote {
					c = newCache(t, &holdStore{Store: s})
				}
				l := newLoader[string](t, c, "p")
				release := make(chan struct{})
				var loads atomic.Int64
				load := func(name string) paddock.LoadFunc[string] {
					return func(ctx context.Context) (string, error) {
						loads.Add(1)
						<-release
						paddock.Private(ctx) // the response set a cookie for name
						return "page for " + name, nil
					}
				}
				var wg sync.WaitGroup
				errs := make(chan string, 100)
				for i := range 100 {
					name := fmt.Sprint("user", i)
					wg.Go(func() {
						r, err := l.Fetch(ctx, "k", load(name))
						if err != nil || r.Value != "page for "+name || r.Status != paddock.StatusLoaded {
							errs <- fmt.Sprintf("%s got %+v, %v", name, r, err)
						}
					})
					if i == 0 {
						synctest.Wait() // the first caller's load runs; the others join it
					}
				}
				synctest.Wait()
				if n := loads.Load(); n != 1 {
					t.Fatalf("%d loads before the first ended, want 1 (the others coalesced)", n)
				}
				close(release)
				wg.Wait()
				close(errs)
				for e := range errs {
					t.Error(e)
				}
				if n := loads.Load(); n != 100 {
					t.Errorf("loads = %d, want 100: one per caller", n)
				}
				if _, found, _ := l.Peek(ctx, "k"); found {
					t.Error("a Private value was cached")
				}
			})
		})
	}
}

// Outside a load the functions do nothing.
func TestLoadDecisionsOutsideALoad(t *testing.T) {
	paddock.SetTTL(ctx, time.Second)
	paddock.SetStale(ctx, time.Second)
	paddock.NoStore(ctx)
	paddock.Private(ctx)
	paddock.Tag(ctx, "t")
}

// A Get that begins after Invalidate(k) returned does not wait for the
// load of k that began before: it loads at once, and the Gets after it
// share that one load.
func TestGetAfterInvalidateDoesNotWaitForDoomedLoad(t *testing.T) {
	for _, tc := range []struct {
		name       string
		remote     bool
		invalidate func(l *paddock.Loader[string]) error
		waitDoomed bool
	}{
		{"key", false, func(l *paddock.Loader[string]) error { return l.Invalidate(ctx, "k") }, false},
		{"key remote", true, func(l *paddock.Loader[string]) error { return l.Invalidate(ctx, "k") }, false},
		{"tag", false, func(l *paddock.Loader[string]) error { return l.Cache().InvalidateTags(ctx, "t") }, false},
		{"tag remote", true, func(l *paddock.Loader[string]) error { return l.Cache().InvalidateTags(ctx, "t") }, false},
		{"soft key", false, func(l *paddock.Loader[string]) error { return l.MarkStale(ctx, "k") }, false},
		{"key, switched off", true, func(l *paddock.Loader[string]) error { return l.Invalidate(ctx, "k") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				defer hooks.Reset()
				hooks.WaitDoomed.Store(tc.waitDoomed)
				hooks.LeaseOutlivesInvalidation.Store(tc.waitDoomed)
				s := newMem(t)
				c := newCache(t, s)
				if tc.remote {
					c = newCache(t, &holdStore{Store: s})
				}
				l := newLoader[string](t, c, "p")
				oldRelease := make(chan struct{})
				old := func(ctx context.Context) (string, error) {
					paddock.Tag(ctx, "t")
					<-oldRelease
					return "old", nil
				}
				oldDone := make(chan string)
				go func() {
					v, _ := l.Get(ctx, "k", old)
					oldDone <- v
				}()
				synctest.Wait() // the old load runs
				if err := tc.invalidate(l); err != nil {
					t.Fatal(err)
				}
				var loads atomic.Int64
				newRelease := make(chan struct{})
				fresh := func(ctx context.Context) (string, error) {
					loads.Add(1)
					<-newRelease
					return "new", nil
				}
				results := make(chan string, 10)
				for range 10 {
					go func() {
						v, _ := l.Get(ctx, "k", fresh)
						results <- v
					}()
				}
				synctest.Wait()
				if tc.waitDoomed {
					if n := loads.Load(); n != 0 {
						t.Fatalf("switched off: %d new loads while the doomed one runs, want 0 (they wait for it)", n)
					}
					close(oldRelease)
					<-oldDone
					synctest.Wait()
				} else if n := loads.Load(); n != 1 {
					t.Fatalf("%d new loads while the doomed one runs, want 1", n)
				}
				close(newRelease)
				for range 10 {
					if v := <-results; v != "new" {
						t.Errorf("a Get after the invalidation got %q", v)
					}
				}
				if n := loads.Load(); n != 1 {
					t.Errorf("new loads = %d, want 1 per key per invalidation", n)
				}
				if !tc.waitDoomed {
					close(oldRelease)
					if v := <-oldDone; v != "old" {
						t.Errorf("the Get that began before got %q", v)
					}
				}
				if v, _ := l.Get(ctx, "k", old); v != "new" {
					t.Errorf("the doomed load's fill was accepted: %q", v)
				}
			})
		})
	}
}

// batchFault is a memstore whose LookupMany fails while fail is set, and
// whose FillMany fails while failFill is set.
type batchFault struct {
	*memstore.Store
	fail, failFill atomic.Bool
	batches        atomic.Int64
}

func (b *batchFault) FillMany(ctx context.Context, keys []string, fills []*store.Fill) ([]bool, []error) {
	if b.failFill.Load() {
		errs := make([]error, len(keys))
		for i := range errs {
			errs[i] = errDown
		}
		return make([]bool, len(keys)), errs
	}
	return b.Store.FillMany(ctx, keys, fills)
}

func (b *batchFault) LookupMany(ctx context.Context, keys []string, reqs []store.LookupRequest) ([]store.Lookup, []error) {
	b.batches.Add(1)
	if b.fail.Load() {
		errs := make([]error, len(keys))
		for i := range errs {
			errs[i] = errDown
		}
		return make([]store.Lookup, len(keys)), errs
	}
	return b.Store.LookupMany(ctx, keys, reqs)
}

// A batch lookup that fails is one failed store call for the breaker,
// however many keys it carried: GetMany of 10 keys on a failing store
// does not open a breaker whose threshold is 3.
func TestGetManyFailureCountsOnceForTheBreaker(t *testing.T) {
	bs := &batchFault{Store: newMem(t)}
	c := newCache(t, bs, paddock.Breaker(3, time.Hour))
	l := newLoader[string](t, c, "p")
	keys := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
	load := func(_ context.Context, keys []string) (map[string]string, error) {
		m := make(map[string]string, len(keys))
		for _, k := range keys {
			m[k] = "v" + k
		}
		return m, nil
	}
	bs.fail.Store(true)
	if m, err := l.GetMany(ctx, keys, load); err != nil || len(m) != len(keys) {
		t.Fatalf("GetMany with the store failing = %d values, %v; want every value, loaded without the store", len(m), err)
	}
	bs.fail.Store(false)
	before := bs.batches.Load()
	if _, err := l.GetMany(ctx, keys, load); err != nil {
		t.Fatal(err)
	}
	if bs.batches.Load() == before {
		t.Fatal("the breaker opened after one failed batch lookup: the next GetMany skipped the store")
	}

	// The same for a batch fill.
	bs.failFill.Store(true)
	cold := []string{"a", "b", "c", "d", "e", "f"}
	if m, err := l.GetMany(ctx, cold, load); err != nil || len(m) != len(cold) {
		t.Fatalf("GetMany with the fills failing = %d values, %v", len(m), err)
	}
	bs.failFill.Store(false)
	before = bs.batches.Load()
	if _, err := l.GetMany(ctx, cold, load); err != nil {
		t.Fatal(err)
	}
	if bs.batches.Load() == before {
		t.Fatal("the breaker opened after one failed batch fill: the next GetMany skipped the store")
	}
}

// A load that calls Private releases its coalesced callers at once, while
// it goes on: a response that streams for minutes does not hold them. So
// does the key's lease: a caller that comes later loads at once too.
func TestPrivateReleasesWaitersAtOnce(t *testing.T) {
	for _, remote := range []bool{false, true} {
		t.Run(fmt.Sprintf("remote=%v", remote), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var s = newMem(t)
				c := newCache(t, s)
				if remote {
					c = newCache(t, &holdStore{Store: s})
				}
				l := newLoader[string](t, c, "p")
				private, end := make(chan struct{}), make(chan struct{})
				first := func(ctx context.Context) (string, error) {
					<-private
					paddock.Private(ctx)
					<-end // the stream goes on
					return "stream", nil
				}
				var others atomic.Int64
				other := func(ctx context.Context) (string, error) {
					others.Add(1)
					return "own", nil
				}
				var wg sync.WaitGroup
				wg.Go(func() {
					if v, err := l.Get(ctx, "k", first); v != "stream" || err != nil {
						t.Errorf("first caller got %q, %v", v, err)
					}
				})
				synctest.Wait()
				got := make(chan string, 10)
				for range 5 {
					wg.Go(func() {
						v, _ := l.Get(ctx, "k", other)
						got <- v
					})
				}
				synctest.Wait() // the five wait on the first load
				if n := others.Load(); n != 0 {
					t.Fatalf("%d loads before Private, want 0 (coalesced)", n)
				}
				close(private)
				for range 5 {
					if v := <-got; v != "own" {
						t.Errorf("a coalesced caller got %q, want its own load", v)
					}
				}
				// The lease is given back: a later caller loads without
				// waiting for it.
				if v, _ := l.Get(ctx, "k", other); v != "own" {
					t.Errorf("a later caller got %q", v)
				}
				// (Each released caller looks up before it loads: one may
				// find the value another one's load stored.)
				if n := others.Load(); n < 1 || n > 6 {
					t.Errorf("%d own loads, want 1 to 6", n)
				}
				close(end)
				wg.Wait()
			})
		})
	}
}

// SetStaleIfError replaces the Get's window; Result.TTL says how long a
// stored value stays fresh.
func TestSetStaleIfErrorAndResultTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[string](t, c, "p")
		r, err := l.Fetch(ctx, "k", func(ctx context.Context) (string, error) {
			paddock.SetTTL(ctx, 10*time.Second)
			paddock.SetStaleIfError(ctx, time.Minute)
			return "v", nil
		}, paddock.StaleIfError(0))
		if err != nil || r.TTL != 10*time.Second || !r.Stored {
			t.Fatalf("loaded: %+v, %v; want TTL 10s, stored", r, err)
		}
		time.Sleep(4 * time.Second) // synctest: virtual time
		if r, _ := l.Fetch(ctx, "k", failLoad); r.Status != paddock.StatusHit || r.TTL != 6*time.Second {
			t.Fatalf("hit: %+v, want TTL 6s", r)
		}
		time.Sleep(30 * time.Second)
		r, err = l.Fetch(ctx, "k", func(context.Context) (string, error) { return "", fmt.Errorf("down") })
		if err != nil || r.Status != paddock.StatusStaleIfError || r.Value != "v" {
			t.Fatalf("after 34s with a failing load: %+v, %v; want the old value (stale-if-error 1m)", r, err)
		}
		if r.TTL != -24*time.Second {
			t.Errorf("stale TTL = %v, want -24s", r.TTL)
		}
	})
}

func failLoad(context.Context) (string, error) { return "", fmt.Errorf("not called") }

// Result.Stored is false for a value kept out of the store and for a fill
// an invalidation refused.
func TestResultStored(t *testing.T) {
	c := newCache(t, nil)
	l := newLoader[string](t, c, "p")
	r, err := l.Fetch(ctx, "a", func(ctx context.Context) (string, error) { paddock.NoStore(ctx); return "v", nil })
	if err != nil || r.Stored {
		t.Errorf("NoStore: %+v, %v; want not stored", r, err)
	}
	r, err = l.Fetch(ctx, "b", func(ctx context.Context) (string, error) {
		if err := c.InvalidateTags(ctx, "t"); err != nil {
			t.Error(err)
		}
		return "old", nil
	}, paddock.Tags("t"))
	if err != nil || r.Stored || r.Value != "old" {
		t.Errorf("fenced: %+v, %v; want the value, not stored", r, err)
	}
	if r, _ := l.Fetch(ctx, "c", func(context.Context) (string, error) { return "v", nil }); !r.Stored {
		t.Errorf("plain load: %+v, want stored", r)
	}
}

// Refreshing tells a background refresh from a load a caller waits for.
func TestRefreshing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[bool](t, c, "p")
		seen := make(chan bool, 2)
		load := func(ctx context.Context) (bool, error) { seen <- paddock.Refreshing(ctx); return true, nil }
		l.Get(ctx, "k", load, paddock.TTL(time.Second), paddock.Stale(time.Minute))
		time.Sleep(2 * time.Second)
		r, _ := l.Fetch(ctx, "k", load, paddock.TTL(time.Second), paddock.Stale(time.Minute))
		synctest.Wait()
		if first, second := <-seen, <-seen; first || !second || r.Status != paddock.StatusStale {
			t.Errorf("Refreshing: %v for the first load, %v for the refresh (%v); want false, true", first, second, r.Status)
		}
		if paddock.Refreshing(ctx) {
			t.Error("Refreshing outside a load")
		}
	})
}
