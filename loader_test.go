package paddock_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/store"
)

var ctx = context.Background()

// remoteStore presents a memstore as a remote store, so that the Cache
// takes its lookup-coalescing path (the one a Redis store gets).
type remoteStore struct{ store.Store }

func (remoteStore) Remote() bool { return true }

// modes runs f once with a local store and once with a "remote" one.
func modes(t *testing.T, f func(t *testing.T, store func(t *testing.T) store.Store)) {
	t.Run("store=local", func(t *testing.T) {
		f(t, func(t *testing.T) store.Store { return newMem(t) })
	})
	t.Run("store=remote", func(t *testing.T) {
		f(t, func(t *testing.T) store.Store { return remoteStore{newMem(t)} })
	})
}

func constant[T any](v T) func(int64) (T, error) {
	return func(int64) (T, error) { return v, nil }
}

func TestStampedeLoadsOnce(t *testing.T) {
	modes(t, func(t *testing.T, store func(*testing.T) store.Store) {
		for _, arrival := range []string{"together", "after-first"} {
			t.Run("arrival="+arrival, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) { stampede(t, store(t), arrival == "after-first") })
			})
		}
	})
}

// stampede sends 1000 callers at one cold key. With afterFirst, the first
// caller's load is running before the others arrive, so every other caller
// must be coalesced into it; arriving together, some may instead wait for
// the fill through the store (the lease is held before the holder's flight
// is registered), but there is still one load.
func stampede(t *testing.T, store store.Store, afterFirst bool) {
	c := newCache(t, store)
	l := newLoader[string](t, c, "page")
	g := &gatedLoad[string]{release: make(chan struct{}), value: constant("v")}
	const n = 1000
	var wg sync.WaitGroup
	statuses := make(chan paddock.Status, n)
	for i := range n {
		wg.Go(func() {
			r, err := l.Fetch(ctx, "home", g.load)
			if err != nil || r.Value != "v" {
				t.Errorf("Fetch = %q, %v", r.Value, err)
			}
			statuses <- r.Status
		})
		if i == 0 && afterFirst {
			synctest.Wait()
		}
	}
	synctest.Wait() // every caller waits on the one load
	if got := g.calls.Load(); got != 1 {
		t.Fatalf("loads while callers wait = %d, want 1", got)
	}
	close(g.release)
	wg.Wait()
	close(statuses)
	count := map[paddock.Status]int{}
	for s := range statuses {
		count[s]++
	}
	if got := g.calls.Load(); got != 1 {
		t.Errorf("loads = %d, want 1", got)
	}
	st := c.Stats()["page"]
	if count[paddock.StatusLoaded] != 1 || st.Loads != 1 {
		t.Errorf("statuses = %v, stats %+v; want exactly one load", count, st)
	}
	if afterFirst && (count[paddock.StatusCoalesced] != n-1 || st.Coalesced != n-1 || st.Misses != n) {
		t.Errorf("statuses = %v, stats %+v; want %d coalesced", count, st, n-1)
	}
	if r, err := l.Fetch(ctx, "home", g.load); err != nil || r.Status != paddock.StatusHit {
		t.Errorf("after the load: %v, %v; want a hit", r.Status, err)
	}
}

// The news-homepage race: a render reads the old rows, the editor
// publishes and invalidates, the old render finishes last.
func TestInvalidateFencesLoadInFlight(t *testing.T) {
	modes(t, func(t *testing.T, store func(*testing.T) store.Store) {
		synctest.Test(t, func(t *testing.T) {
			c := newCache(t, store(t))
			l := newLoader[string](t, c, "home")
			db := newRow("old title")
			started := make(chan struct{})
			release := make(chan struct{})
			var calls atomic.Int64
			load := func(ctx context.Context) (string, error) {
				v := db.read() // the render reads the rows first
				if calls.Add(1) == 1 {
					close(started)
					<-release
				}
				return v, nil
			}
			first := make(chan string)
			go func() {
				v, err := l.Get(ctx, "index", load)
				if err != nil {
					t.Error(err)
				}
				first <- v
			}()
			<-started
			db.write("new title")
			if err := l.Invalidate(ctx, "index"); err != nil {
				t.Fatal(err)
			}
			// A Get that starts after the invalidation returned.
			second := make(chan string)
			go func() {
				v, err := l.Get(ctx, "index", load)
				if err != nil {
					t.Error(err)
				}
				second <- v
			}()
			synctest.Wait()
			close(release)
			if v := <-first; v != "old title" {
				t.Errorf("first Get (began before the invalidation) = %q", v)
			}
			if v := <-second; v != "new title" {
				t.Errorf("Get after the invalidation = %q, want the new title", v)
			}
			r, err := l.Fetch(ctx, "index", load)
			if err != nil || r.Value != "new title" || r.Status != paddock.StatusHit {
				t.Errorf("cached = %q (%v, %v), want the new title as a hit", r.Value, r.Status, err)
			}
			if st := c.Stats()["home"]; st.FillsRefused != 1 || st.Loads != 2 {
				t.Errorf("stats = %+v, want 1 refused fill and 2 loads", st)
			}
		})
	})
}

// A Get that joins a load across an unrelated invalidation still shares
// it: flights are only split when the fill is refused.
func TestUnrelatedInvalidationKeepsFlightShared(t *testing.T) {
	modes(t, func(t *testing.T, store func(*testing.T) store.Store) {
		synctest.Test(t, func(t *testing.T) {
			c := newCache(t, store(t))
			l := newLoader[string](t, c, "p")
			g := &gatedLoad[string]{started: make(chan struct{}, 2), release: make(chan struct{}), value: constant("v")}
			done := make(chan paddock.Status, 2)
			go func() {
				r, _ := l.Fetch(ctx, "a", g.load)
				done <- r.Status
			}()
			<-g.started
			if err := l.Invalidate(ctx, "b"); err != nil {
				t.Fatal(err)
			}
			if err := c.InvalidateTags(ctx, "unrelated"); err != nil {
				t.Fatal(err)
			}
			go func() {
				r, _ := l.Fetch(ctx, "a", g.load)
				done <- r.Status
			}()
			synctest.Wait()
			close(g.release)
			<-done
			<-done
			if got := g.calls.Load(); got != 1 {
				t.Errorf("loads = %d, want 1", got)
			}
		})
	})
}

type row struct {
	mu sync.Mutex
	v  string
}

func newRow(v string) *row { return &row{v: v} }
func (r *row) read() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.v
}
func (r *row) write(v string) {
	r.mu.Lock()
	r.v = v
	r.mu.Unlock()
}

func TestTagAddedLateFencesFill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[string](t, c, "page")
		started, release := make(chan struct{}), make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			v, err := l.Get(ctx, "author-7", func(ctx context.Context) (string, error) {
				close(started)
				<-release
				paddock.Tag(ctx, paddock.ModelTag("article", 42)) // known only after the query
				return "old", nil
			})
			if err != nil || v != "old" {
				t.Errorf("Get = %q, %v", v, err)
			}
		}()
		<-started
		if err := c.InvalidateTags(ctx, "article:42"); err != nil {
			t.Fatal(err)
		}
		close(release)
		<-done
		if _, found, _ := l.Peek(ctx, "author-7"); found {
			t.Error("a load that began before InvalidateTags filled the cache")
		}
		if st := c.Stats()["page"]; st.FillsRefused != 1 || st.Fills["fenced"] != 1 || len(st.Fills) != 1 {
			t.Errorf("FillsRefused = %d, Fills = %v, want 1 and fenced=1", st.FillsRefused, st.Fills)
		}
	})
}

func TestInvalidateTagsCrossesLoaders(t *testing.T) {
	c := newCache(t, nil)
	type article struct{ Title string }
	articles := newLoader[article](t, c, "article")
	pages := newLoader[string](t, c, "page")
	var loads atomic.Int64
	getArticle := func(id string) {
		t.Helper()
		_, err := articles.Get(ctx, id, func(ctx context.Context) (article, error) {
			loads.Add(1)
			return article{"t" + id}, nil
		}, paddock.Tags("article:"+id))
		if err != nil {
			t.Fatal(err)
		}
	}
	getPage := func(name string) {
		t.Helper()
		_, err := pages.Get(ctx, name, func(ctx context.Context) (string, error) {
			loads.Add(1)
			paddock.Tag(ctx, "article:42", "author:7")
			return "<html>", nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	getArticle("42")
	getArticle("43")
	getPage("home")
	if loads.Load() != 3 {
		t.Fatalf("loads = %d", loads.Load())
	}
	if err := c.InvalidateTags(ctx, "article:42"); err != nil {
		t.Fatal(err)
	}
	getArticle("42")
	getArticle("43")
	getPage("home")
	if got := loads.Load(); got != 5 {
		t.Errorf("loads after InvalidateTags = %d, want 5 (article 42 and home reloaded, 43 kept)", got)
	}
	if err := c.InvalidateTags(ctx, "author:7"); err != nil {
		t.Fatal(err)
	}
	getPage("home")
	if got := loads.Load(); got != 6 {
		t.Errorf("loads = %d, want 6", got)
	}
}

func TestSetFencesOlderLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[string](t, c, "p")
		g := &gatedLoad[string]{started: make(chan struct{}, 1), release: make(chan struct{}), value: constant("old")}
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.Get(ctx, "k", g.load)
		}()
		<-g.started
		if err := l.Set(ctx, "k", "set"); err != nil {
			t.Fatal(err)
		}
		close(g.release)
		<-done
		r, found, err := l.Peek(ctx, "k")
		if !found || err != nil || r.Value != "set" {
			t.Errorf("Peek = %q, %v, %v; want the Set value", r.Value, found, err)
		}
	})
}

func TestSetRacedByInvalidationIsRefused(t *testing.T) {
	mem := newMem(t)
	fs := &faultStore{Store: mem}
	c := newCache(t, fs)
	l := newLoader[string](t, c, "p")
	fs.beforeFil = func() { // the invalidation lands between Set's start and its write
		if err := mem.Invalidate(ctx, store.Invalidation{Keys: []string{l.Key("k")}}); err != nil {
			t.Error(err)
		}
	}
	if err := l.Set(ctx, "k", "v"); !errors.Is(err, paddock.ErrFenced) {
		t.Fatalf("Set = %v, want ErrFenced", err)
	}
	if _, found, _ := l.Peek(ctx, "k"); found {
		t.Error("a Set raced by an invalidation was stored")
	}
	fs.beforeFil = nil
	if err := l.Set(ctx, "k", "v", paddock.Tags("t")); err != nil {
		t.Fatal(err)
	}
	if r, found, _ := l.Peek(ctx, "k"); !found || r.Value != "v" {
		t.Errorf("Peek after Set = %q, %v", r.Value, found)
	}
	if err := c.InvalidateTags(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := l.Peek(ctx, "k"); found {
		t.Error("Set's tags were not kept")
	}
}

func TestPanicReachesEveryCaller(t *testing.T) {
	modes(t, func(t *testing.T, store func(*testing.T) store.Store) {
		synctest.Test(t, func(t *testing.T) {
			c := newCache(t, store(t))
			l := newLoader[string](t, c, "p")
			release := make(chan struct{})
			var calls atomic.Int64
			load := func(ctx context.Context) (string, error) {
				if calls.Add(1) == 1 {
					<-release
					panic("boom")
				}
				return "ok", nil
			}
			var wg sync.WaitGroup
			for i := range 10 {
				if i == 1 {
					synctest.Wait() // the load runs before the others join
				}
				wg.Go(func() {
					_, err := l.Get(ctx, "k", load)
					var pe *paddock.PanicError
					if !errors.Is(err, paddock.ErrLoadPanicked) || !errors.As(err, &pe) {
						t.Errorf("err = %v, want a PanicError", err)
						return
					}
					if pe.Value != "boom" || len(pe.Stack) == 0 {
						t.Errorf("PanicError = %v with %d bytes of stack", pe.Value, len(pe.Stack))
					}
				})
			}
			synctest.Wait()
			close(release)
			wg.Wait()
			if v, err := l.Get(ctx, "k", load); err != nil || v != "ok" {
				t.Errorf("Get after the panic = %q, %v; the key must not stay stuck", v, err)
			}
			if st := c.Stats()["p"]; st.LoadErrors != 1 {
				t.Errorf("LoadErrors = %d", st.LoadErrors)
			}
		})
	})
}

// A load that calls runtime.Goexit ends the goroutine it runs on, and
// leaves the key free. A caller whose context can end has its flight run
// on a goroutine of the Cache, and gets an error; a caller whose context
// cannot end runs the flight on its own goroutine, which ends (as
// singleflight.Group.Do's does), while the callers joined with it get the
// error.
func TestGoexitInLoadDoesNotStickKey(t *testing.T) {
	t.Run("ctx=cancelable", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newCache(t, nil)
			l := newLoader[string](t, c, "p")
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			_, err := l.Get(cctx, "k", func(ctx context.Context) (string, error) {
				runtime.Goexit()
				return "", nil
			})
			if err == nil {
				t.Fatal("Get after runtime.Goexit in the load returned no error")
			}
			if v, err := l.Get(ctx, "k", func(context.Context) (string, error) { return "ok", nil }); err != nil || v != "ok" {
				t.Errorf("next Get = %q, %v", v, err)
			}
		})
	})
	t.Run("ctx=background", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newCache(t, nil)
			l := newLoader[string](t, c, "p")
			entered, exit := make(chan struct{}), make(chan struct{})
			returned := false
			var owner sync.WaitGroup
			owner.Go(func() {
				_, _ = l.Get(context.Background(), "k", func(ctx context.Context) (string, error) {
					close(entered)
					<-exit
					runtime.Goexit()
					return "", nil
				})
				returned = true
			})
			<-entered
			var joinErr error
			var joiner sync.WaitGroup
			joiner.Go(func() {
				_, joinErr = l.Get(ctx, "k", func(context.Context) (string, error) { return "joiner's", nil })
			})
			synctest.Wait() // the joiner waits on the owner's flight
			close(exit)
			owner.Wait()
			joiner.Wait()
			if returned {
				t.Error("the Get whose load called runtime.Goexit returned; its goroutine should have ended")
			}
			if joinErr == nil {
				t.Error("a caller joined with a load that called runtime.Goexit got no error")
			}
			if v, err := l.Get(ctx, "k", func(context.Context) (string, error) { return "ok", nil }); err != nil || v != "ok" {
				t.Errorf("next Get = %q, %v", v, err)
			}
		})
	})
}

func TestCallerContextEndsWhileLoadGoesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[string](t, c, "p")
		release := make(chan struct{})
		var loadCtxErr error
		load := func(ctx context.Context) (string, error) {
			<-release
			loadCtxErr = ctx.Err()
			return "v", nil
		}
		cctx, cancel := context.WithCancel(ctx)
		firstErr := make(chan error)
		go func() {
			_, err := l.Get(cctx, "k", load)
			firstErr <- err
		}()
		second := make(chan string)
		go func() {
			v, _ := l.Get(ctx, "k", load)
			second <- v
		}()
		synctest.Wait()
		cancel()
		if err := <-firstErr; !errors.Is(err, context.Canceled) {
			t.Errorf("canceled caller got %v", err)
		}
		close(release)
		if v := <-second; v != "v" {
			t.Errorf("other caller got %q", v)
		}
		if loadCtxErr != nil {
			t.Errorf("load's context ended with its first caller: %v", loadCtxErr)
		}
	})
}

func TestLoadTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[string](t, c, "p", paddock.LoadTimeout(3*time.Second))
		start := time.Now()
		_, err := l.Get(ctx, "k", func(ctx context.Context) (string, error) {
			<-ctx.Done()
			return "", ctx.Err()
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v", err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("load ended after %v, want the 3s load timeout", d)
		}
	})
}

func TestTTLExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[string](t, c, "p", paddock.TTL(time.Minute), paddock.Beta(0))
		var n atomic.Int64
		load := func(context.Context) (string, error) { return fmt.Sprint("v", n.Add(1)), nil }
		get := func() paddock.Result[string] {
			r, err := l.Fetch(ctx, "k", load)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		get()
		time.Sleep(59 * time.Second)
		if r := get(); r.Value != "v1" || r.Status != paddock.StatusHit || r.Age != 59*time.Second {
			t.Errorf("before TTL: %+v", r)
		}
		time.Sleep(time.Second)
		if r := get(); r.Value != "v2" || r.Status != paddock.StatusLoaded {
			t.Errorf("at TTL: %+v, want a reload", r)
		}
	})
}

func TestStaleWhileRevalidate(t *testing.T) {
	modes(t, func(t *testing.T, store func(*testing.T) store.Store) {
		synctest.Test(t, func(t *testing.T) {
			c := newCache(t, store(t))
			l := newLoader[string](t, c, "p", paddock.TTL(time.Minute), paddock.Stale(time.Hour), paddock.Beta(0))
			g := &gatedLoad[string]{value: func(n int64) (string, error) { return fmt.Sprint("v", n), nil }}
			if _, err := l.Get(ctx, "k", g.load); err != nil {
				t.Fatal(err)
			}
			g.release = make(chan struct{}) // the refresh blocks
			time.Sleep(2 * time.Minute)
			var wg sync.WaitGroup
			for range 100 {
				wg.Go(func() {
					r, err := l.Fetch(ctx, "k", g.load)
					if err != nil || r.Value != "v1" || r.Status != paddock.StatusStale || r.Age != 2*time.Minute {
						t.Errorf("stale Get = %+v, %v", r, err)
					}
				})
			}
			wg.Wait() // every caller returned while the refresh is blocked
			synctest.Wait()
			if got := g.calls.Load(); got != 2 {
				t.Fatalf("loads = %d, want the first and exactly one refresh", got)
			}
			close(g.release)
			synctest.Wait()
			if r, _ := l.Fetch(ctx, "k", g.load); r.Value != "v2" || r.Status != paddock.StatusHit {
				t.Errorf("after the refresh: %+v", r)
			}
			st := c.Stats()["p"]
			if st.StaleHits != 100 || st.Refreshes != 1 || st.Loads != 2 {
				t.Errorf("stats = %+v", st)
			}
			// Past the stale window the entry is a plain miss.
			time.Sleep(2 * time.Hour)
			if r, _ := l.Fetch(ctx, "k", g.load); r.Value != "v3" || r.Status != paddock.StatusLoaded {
				t.Errorf("past the stale window: %+v", r)
			}
		})
	})
}

func TestStaleIfError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[string](t, c, "p", paddock.TTL(time.Minute), paddock.StaleIfError(time.Hour), paddock.Beta(0))
		boom := errors.New("db down")
		var fail atomic.Bool
		load := func(context.Context) (string, error) {
			if fail.Load() {
				return "", boom
			}
			return "v1", nil
		}
		if _, err := l.Get(ctx, "k", load); err != nil {
			t.Fatal(err)
		}
		fail.Store(true)
		time.Sleep(2 * time.Minute)
		r, err := l.Fetch(ctx, "k", load)
		if err != nil || r.Value != "v1" || r.Status != paddock.StatusStaleIfError || !errors.Is(r.LoadErr, boom) {
			t.Errorf("inside the error window: %+v, %v", r, err)
		}
		time.Sleep(time.Hour)
		if _, err := l.Fetch(ctx, "k", load); !errors.Is(err, boom) {
			t.Errorf("past the error window: err = %v, want the load error", err)
		}
	})
}

func TestEarlyRefresh(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rand  float64
		beta  float64
		early bool
	}{
		{"due", 0.9999999, 1, true},     // -ln(1e-7) ≈ 16 load durations ahead
		{"not-due", 0.5, 1, false},      // -ln(0.5) ≈ 0.7 load durations ahead
		{"beta=0", 0.9999999, 0, false}, // early refresh off
		{"beta=large", 0.5, 100, true},  // 69 load durations ahead
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCache(t, nil, paddock.Rand(func() float64 { return tc.rand }))
				l := newLoader[string](t, c, "p", paddock.TTL(time.Minute), paddock.Beta(tc.beta))
				var n atomic.Int64
				load := func(context.Context) (string, error) {
					time.Sleep(time.Second) // a load that takes 1s
					return fmt.Sprint("v", n.Add(1)), nil
				}
				if _, err := l.Get(ctx, "k", load); err != nil {
					t.Fatal(err)
				}
				time.Sleep(50 * time.Second) // 10s before expiry
				r, err := l.Fetch(ctx, "k", load)
				if err != nil || r.Value != "v1" || r.Status != paddock.StatusHit {
					t.Fatalf("Fetch = %+v, %v; want the fresh value at once", r, err)
				}
				time.Sleep(2 * time.Second) // let a refresh's 1s load finish
				synctest.Wait()
				st := c.Stats()["p"]
				if got := st.EarlyRefreshes == 1 && n.Load() == 2; got != tc.early {
					t.Errorf("early refresh = %v, want %v (stats %+v)", got, tc.early, st)
				}
			})
		})
	}
}

func TestNegativeCaching(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[string](t, c, "p", paddock.NegativeTTL(10*time.Second))
		var calls atomic.Int64
		load := func(context.Context) (string, error) {
			calls.Add(1)
			return "", fmt.Errorf("article 9: %w", paddock.ErrNotFound)
		}
		if _, err := l.Get(ctx, "9", load); !errors.Is(err, paddock.ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
		r, err := l.Fetch(ctx, "9", load)
		if !errors.Is(err, paddock.ErrNotFound) || r.Status != paddock.StatusHit || calls.Load() != 1 {
			t.Errorf("second Get: %+v, %v, loads %d; want a cached not-found", r, err, calls.Load())
		}
		time.Sleep(10 * time.Second)
		l.Get(ctx, "9", load)
		if calls.Load() != 2 {
			t.Errorf("loads after the negative TTL = %d, want 2", calls.Load())
		}
		off := newLoader[string](t, c, "off", paddock.NegativeTTL(0))
		off.Get(ctx, "9", load)
		off.Get(ctx, "9", load)
		if calls.Load() != 4 {
			t.Errorf("NegativeTTL(0) cached the not-found")
		}
	})
}

func TestSoftAndHardInvalidation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[string](t, c, "p", paddock.TTL(time.Hour), paddock.Stale(time.Hour), paddock.Beta(0))
		var n atomic.Int64
		load := func(ctx context.Context) (string, error) {
			paddock.Tag(ctx, "t")
			return fmt.Sprint("v", n.Add(1)), nil
		}
		l.Get(ctx, "k", load)

		if err := l.MarkStale(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if r, _ := l.Fetch(ctx, "k", load); r.Value != "v1" || r.Status != paddock.StatusStale {
			t.Errorf("after MarkStale: %+v, want the old value as stale", r)
		}
		synctest.Wait()
		if r, _ := l.Fetch(ctx, "k", load); r.Value != "v2" || r.Status != paddock.StatusHit {
			t.Errorf("after the refresh: %+v", r)
		}

		if err := c.MarkStaleTags(ctx, "t"); err != nil {
			t.Fatal(err)
		}
		if r, _ := l.Fetch(ctx, "k", load); r.Value != "v2" || r.Status != paddock.StatusStale {
			t.Errorf("after MarkStaleTags: %+v", r)
		}
		synctest.Wait()

		// A hard invalidation is never served as stale, even with a stale window.
		if err := l.Invalidate(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if r, _ := l.Fetch(ctx, "k", load); r.Value != "v4" || r.Status != paddock.StatusLoaded {
			t.Errorf("after Invalidate: %+v, want a load", r)
		}
		if err := c.InvalidateTags(ctx, "t"); err != nil {
			t.Fatal(err)
		}
		if r, _ := l.Fetch(ctx, "k", load); r.Value != "v5" || r.Status != paddock.StatusLoaded {
			t.Errorf("after InvalidateTags: %+v, want a load", r)
		}
	})
}

func TestValueTypes(t *testing.T) {
	c := newCache(t, nil)
	b := newLoader[[]byte](t, c, "bytes")
	s := newLoader[string](t, c, "string")
	type article struct {
		ID    int
		Title string
	}
	a := newLoader[article](t, c, "struct")
	g := newLoader[article](t, c, "gob", paddock.WithCodec(paddock.Gob))
	for range 2 {
		if v, err := b.Get(ctx, "k", func(context.Context) ([]byte, error) { return []byte{0, 1, 2}, nil }); err != nil || string(v) != "\x00\x01\x02" {
			t.Errorf("[]byte: %q, %v", v, err)
		}
		if v, err := s.Get(ctx, "k", func(context.Context) (string, error) { return "héllo", nil }); err != nil || v != "héllo" {
			t.Errorf("string: %q, %v", v, err)
		}
		want := article{42, "Paddock"}
		if v, err := a.Get(ctx, "k", func(context.Context) (article, error) { return want, nil }); err != nil || v != want {
			t.Errorf("json: %+v, %v", v, err)
		}
		if v, err := g.Get(ctx, "k", func(context.Context) (article, error) { return want, nil }); err != nil || v != want {
			t.Errorf("gob: %+v, %v", v, err)
		}
	}
	st := c.Stats()
	for _, ns := range []string{"bytes", "string", "struct", "gob"} {
		if st[ns].Hits != 1 || st[ns].Loads != 1 {
			t.Errorf("%s: %+v, want one load then one hit", ns, st[ns])
		}
	}
}

func TestVersionAndCorruptBytesAreMisses(t *testing.T) {
	mem := newMem(t)
	v1 := newLoader[string](t, newCache(t, mem), "p", paddock.Version(1))
	v1.Get(ctx, "k", func(context.Context) (string, error) { return "old shape", nil })

	c2 := newCache(t, mem) // the next deploy, on the same store
	v2 := newLoader[string](t, c2, "p", paddock.Version(2))
	r, err := v2.Fetch(ctx, "k", func(context.Context) (string, error) { return "new shape", nil })
	if err != nil || r.Value != "new shape" || r.Status != paddock.StatusLoaded {
		t.Errorf("Version(2) read: %+v, %v; want a miss and a load", r, err)
	}
	if got := c2.Stats()["p"].DecodeErrors; got != 1 {
		t.Errorf("DecodeErrors = %d, want 1", got)
	}

	// Bytes that are not a value of this loader at all.
	lk, err := mem.Lookup(ctx, "p:junk", store.LookupRequest{Lease: 7, LeaseTTL: time.Minute})
	if err != nil || !lk.Lease {
		t.Fatalf("lookup: %+v, %v", lk, err)
	}
	if ok, err := mem.Fill(ctx, "p:junk", &store.Fill{Value: []byte{0xff, 0xff, 0xff}, Ticket: lk.Ticket, Lease: 7, TTL: time.Hour}); !ok || err != nil {
		t.Fatalf("fill: %v, %v", ok, err)
	}
	r, err = v2.Fetch(ctx, "junk", func(context.Context) (string, error) { return "fixed", nil })
	if err != nil || r.Value != "fixed" {
		t.Errorf("corrupt entry: %+v, %v", r, err)
	}
	if r, _, _ := v2.Peek(ctx, "junk"); r.Value != "fixed" {
		t.Errorf("the reload did not replace the corrupt entry: %+v", r)
	}
}

func TestGetMany(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		l := newLoader[string](t, c, "p")
		l.Get(ctx, "a", func(context.Context) (string, error) { return "A", nil })
		var batches [][]string
		release := make(chan struct{})
		load := func(ctx context.Context, keys []string) (map[string]string, error) {
			batches = append(batches, keys)
			<-release
			m := map[string]string{}
			for _, k := range keys {
				if k != "d" {
					m[k] = k + "!"
				}
			}
			return m, nil
		}
		got := make(chan map[string]string)
		go func() {
			m, err := l.GetMany(ctx, []string{"a", "b", "c", "d", "b"}, load)
			if err != nil {
				t.Error(err)
			}
			got <- m
		}()
		synctest.Wait()
		// A concurrent Get of a key in the batch joins it.
		single := make(chan string)
		go func() {
			v, _ := l.Get(ctx, "c", func(context.Context) (string, error) {
				t.Error("Get of a key in a running batch loaded it again")
				return "", nil
			})
			single <- v
		}()
		synctest.Wait()
		close(release)
		m := <-got
		if v := <-single; v != "c!" {
			t.Errorf("concurrent Get = %q", v)
		}
		want := map[string]string{"a": "A", "b": "b!", "c": "c!"}
		if fmt.Sprint(m) != fmt.Sprint(want) {
			t.Errorf("GetMany = %v, want %v", m, want)
		}
		if len(batches) != 1 || fmt.Sprint(batches[0]) != "[b c d]" {
			t.Errorf("batches = %v, want one batch of the missing keys", batches)
		}
		m, err := l.GetMany(ctx, []string{"a", "b", "c", "d"}, load)
		if err != nil || len(batches) != 1 || len(m) != 3 {
			t.Errorf("second GetMany: %v, %v, %d batches; want everything cached, d as not found", m, err, len(batches))
		}
	})
}

func TestGetManyErrors(t *testing.T) {
	c := newCache(t, nil)
	l := newLoader[string](t, c, "p")
	boom := errors.New("boom")
	m, err := l.GetMany(ctx, []string{"x", "y"}, func(context.Context, []string) (map[string]string, error) {
		return nil, boom
	})
	if !errors.Is(err, boom) || len(m) != 0 {
		t.Errorf("GetMany = %v, %v", m, err)
	}
	m, err = l.GetMany(ctx, []string{"x"}, func(context.Context, []string) (map[string]string, error) {
		panic("batch")
	})
	if !errors.Is(err, paddock.ErrLoadPanicked) {
		t.Errorf("panicking batch: %v, %v", m, err)
	}
}

func TestPeekNeverLoads(t *testing.T) {
	c := newCache(t, nil)
	l := newLoader[string](t, c, "p")
	if _, found, err := l.Peek(ctx, "k"); found || err != nil {
		t.Errorf("Peek of a cold key = %v, %v", found, err)
	}
	l.Get(ctx, "k", func(context.Context) (string, error) { return "v", nil })
	r, found, err := l.Peek(ctx, "k")
	if !found || err != nil || r.Value != "v" || r.Status != paddock.StatusHit {
		t.Errorf("Peek = %+v, %v, %v", r, found, err)
	}
	if st := c.Stats()["p"]; st.Loads != 1 {
		t.Errorf("Loads = %d", st.Loads)
	}
}

func TestBadOptions(t *testing.T) {
	mem := newMem(t)
	if _, err := paddock.New(nil); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("New(nil) = %v", err)
	}
	for name, o := range map[string]paddock.Option{
		"LeaseTTL":     paddock.LeaseTTL(0),
		"WaitTimeout":  paddock.WaitTimeout(-1),
		"StoreTimeout": paddock.StoreTimeout(0),
		"Breaker":      paddock.Breaker(0, time.Second),
		"Rand":         paddock.Rand(nil),
		"Logger":       paddock.Logger(nil),
	} {
		if _, err := paddock.New(mem, o); !errors.Is(err, paddock.ErrInvalidOption) {
			t.Errorf("New with bad %s = %v", name, err)
		}
	}
	c := newCache(t, mem)
	for name, o := range map[string]paddock.LoaderOption{
		"TTL":          paddock.TTL(0),
		"Stale":        paddock.Stale(-time.Second),
		"StaleIfError": paddock.StaleIfError(-time.Second),
		"NegativeTTL":  paddock.NegativeTTL(-1),
		"LoadTimeout":  paddock.LoadTimeout(0),
		"Beta":         paddock.Beta(-1),
		"Tags":         paddock.Tags(""),
		"WithCodec":    paddock.WithCodec(nil),
	} {
		if _, err := paddock.NewLoader[string](c, "ns"+name, o); !errors.Is(err, paddock.ErrInvalidOption) {
			t.Errorf("NewLoader with bad %s = %v", name, err)
		}
	}
	for _, ns := range []string{"", "a:b"} {
		if _, err := paddock.NewLoader[string](c, ns); !errors.Is(err, paddock.ErrInvalidOption) {
			t.Errorf("NewLoader(%q) = %v", ns, err)
		}
	}
	l := newLoader[string](t, c, "taken")
	if _, err := paddock.NewLoader[int](c, "taken"); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("second loader on a namespace = %v", err)
	}
	called := false
	load := func(context.Context) (string, error) { called = true; return "", nil }
	if _, err := l.Get(ctx, "k", load, paddock.Beta(-1)); !errors.Is(err, paddock.ErrInvalidOption) || called {
		t.Errorf("Get with a bad option = %v (load called: %v)", err, called)
	}
	if _, err := l.Get(ctx, "k", nil); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("Get with a nil load = %v", err)
	}
	if _, err := l.Get(ctx, "k", load, nil); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("Get with a nil GetOption = %v", err)
	}
	if _, err := paddock.New(newMem(t), nil); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("New with a nil Option = %v", err)
	}
	if _, err := paddock.NewLoader[string](c, "nilopt", nil); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("NewLoader with a nil LoaderOption = %v", err)
	}
}

func TestStoreDownFallsBackToLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := &faultStore{Store: newMem(t)}
		c := newCache(t, fs, paddock.Breaker(3, 10*time.Second))
		l := newLoader[string](t, c, "p")
		fs.setFail(errDown)
		gate := make(chan struct{})
		var calls atomic.Int64
		load := func(context.Context) (string, error) {
			calls.Add(1)
			<-gate
			return "v", nil
		}
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				if v, err := l.Get(ctx, "k", load); err != nil || v != "v" {
					t.Errorf("Get with the store down = %q, %v", v, err)
				}
			})
			if i == 0 {
				synctest.Wait() // the others join after the load began
			}
		}
		synctest.Wait()
		if got := calls.Load(); got != 1 {
			t.Fatalf("loads with the store down = %d, want 1", got)
		}
		gate <- struct{}{} // the first load ends
		synctest.Wait()
		// Without the store there is no ticket to prove the first result
		// fresh for callers that joined after it began: they retry once,
		// together, and never more.
		if got := calls.Load(); got != 2 {
			t.Errorf("loads after the first = %d, want 2", got)
		}
		close(gate)
		wg.Wait()
		if got := calls.Load(); got != 2 {
			t.Errorf("loads = %d, want 2", got)
		}
		g := &gatedLoad[string]{value: constant("v")}
		if c.Stats()["p"].StoreErrors == 0 {
			t.Error("no store errors counted")
		}

		// The breaker is open: Gets do not touch the store.
		before := fs.calls.Load()
		for range 10 {
			l.Get(ctx, "k", g.load)
		}
		if got := fs.calls.Load(); got != before {
			t.Errorf("store calls while the breaker is open: %d", got-before)
		}
		// It recovers by itself once the store answers again.
		fs.setFail(nil)
		time.Sleep(10 * time.Second)
		l.Get(ctx, "k", g.load) // the probe, fills
		n := g.calls.Load()
		if r, err := l.Fetch(ctx, "k", g.load); err != nil || r.Status != paddock.StatusHit || g.calls.Load() != n {
			t.Errorf("after recovery: %+v, %v; want a hit", r, err)
		}
	})
}

func TestInvalidateReportsStoreFailure(t *testing.T) {
	fs := &faultStore{Store: newMem(t)}
	c := newCache(t, fs)
	fs.setFail(errDown)
	if err := c.Invalidate(ctx, "p:k"); !errors.Is(err, paddock.ErrStoreUnavailable) || !errors.Is(err, errDown) {
		t.Errorf("Invalidate = %v", err)
	}
	if err := c.InvalidateTags(ctx, ""); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("InvalidateTags(\"\") = %v", err)
	}
}

func TestDeadLeaseHolderIsReplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMem(t)
		c := newCache(t, mem, paddock.LeaseTTL(10*time.Second))
		l := newLoader[string](t, c, "p")
		// Another node took the lease and died.
		lk, err := mem.Lookup(ctx, l.Key("k"), store.LookupRequest{Lease: 99, LeaseTTL: 10 * time.Second})
		if err != nil || !lk.Lease {
			t.Fatal(lk, err)
		}
		start := time.Now()
		var calls atomic.Int64
		v, err := l.Get(ctx, "k", func(context.Context) (string, error) {
			calls.Add(1)
			return "v", nil
		})
		waited := time.Since(start)
		if err != nil || v != "v" || calls.Load() != 1 {
			t.Fatalf("Get = %q, %v, %d loads", v, err, calls.Load())
		}
		if waited < 10*time.Second || waited > 11*time.Second {
			t.Errorf("waited %v for a dead lease holder, want the 10s lease TTL (plus a poll)", waited)
		}
		if _, found, _ := l.Peek(ctx, "k"); !found {
			t.Error("the replacing load did not fill")
		}
	})
}

func TestWaitTimeoutLoadsWithoutLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMem(t)
		c := newCache(t, mem, paddock.LeaseTTL(time.Minute), paddock.WaitTimeout(2*time.Second))
		l := newLoader[string](t, c, "p")
		mem.Lookup(ctx, l.Key("k"), store.LookupRequest{Lease: 99, LeaseTTL: time.Minute})
		start := time.Now()
		v, err := l.Get(ctx, "k", func(context.Context) (string, error) { return "v", nil })
		if err != nil || v != "v" {
			t.Fatal(v, err)
		}
		if waited := time.Since(start); waited < 2*time.Second || waited > 3*time.Second {
			t.Errorf("waited %v, want the 2s wait bound", waited)
		}
	})
}

func TestValueTooLarge(t *testing.T) {
	mem := newMem(t, memstoreMaxEntry(512))
	c := newCache(t, mem)
	l := newLoader[[]byte](t, c, "p")
	big := make([]byte, 4096)
	r, err := l.Fetch(ctx, "k", func(context.Context) ([]byte, error) { return big, nil })
	if err != nil || len(r.Value) != len(big) || !errors.Is(r.FillErr, paddock.ErrTooLarge) {
		t.Errorf("Fetch = %d bytes, %v, FillErr %v; want the value and ErrTooLarge", len(r.Value), err, r.FillErr)
	}
	if err := l.Set(ctx, "k", big); !errors.Is(err, paddock.ErrTooLarge) {
		t.Errorf("Set = %v, want ErrTooLarge", err)
	}
	if st := c.Stats()["p"]; st.FillErrors != 1 {
		t.Errorf("FillErrors = %d", st.FillErrors)
	}
	// The lease was given back: the next Get loads at once.
	if _, err := l.Get(ctx, "k", func(context.Context) ([]byte, error) { return []byte("small"), nil }); err != nil {
		t.Error(err)
	}
}

func TestClosed(t *testing.T) {
	c := newCache(t, nil)
	l := newLoader[string](t, c, "p")
	c.Close()
	if _, err := l.Get(ctx, "k", func(context.Context) (string, error) { return "", nil }); !errors.Is(err, paddock.ErrClosed) {
		t.Errorf("Get after Close = %v", err)
	}
	if err := c.Invalidate(ctx, "p:k"); !errors.Is(err, paddock.ErrClosed) {
		t.Errorf("Invalidate after Close = %v", err)
	}
}

func TestFailedRefreshIsLogged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logged bytes.Buffer
		c := newCache(t, nil, paddock.Logger(slog.New(slog.NewTextHandler(&logged, nil))))
		l := newLoader[string](t, c, "p", paddock.TTL(time.Minute), paddock.Stale(time.Hour), paddock.Beta(0))
		var fail atomic.Bool
		load := func(context.Context) (string, error) {
			if fail.Load() {
				return "", errors.New("db down")
			}
			return "v1", nil
		}
		l.Get(ctx, "k", load)
		fail.Store(true)
		time.Sleep(2 * time.Minute)
		if r, err := l.Fetch(ctx, "k", load); err != nil || r.Status != paddock.StatusStale {
			t.Fatalf("Fetch = %+v, %v", r, err)
		}
		synctest.Wait()
		if !strings.Contains(logged.String(), "background refresh failed") || !strings.Contains(logged.String(), "db down") {
			t.Errorf("log = %q, want the failed refresh", logged.String())
		}
		if st := c.Stats()["p"]; st.LoadErrors != 1 {
			t.Errorf("LoadErrors = %d", st.LoadErrors)
		}
	})
}

func TestMust(t *testing.T) {
	c := paddock.Must(paddock.New(newMem(t)))
	l := paddock.Must(paddock.NewLoader[string](c, "must"))
	if l.Namespace() != "must" {
		t.Fatalf("Namespace = %q", l.Namespace())
	}
	defer func() {
		r := recover()
		err, ok := r.(error)
		if !ok || !errors.Is(err, paddock.ErrInvalidOption) {
			t.Fatalf("Must of a bad option panicked with %v, want an ErrInvalidOption", r)
		}
	}()
	paddock.Must(paddock.NewLoader[string](c, "bad", paddock.TTL(0)))
	t.Fatal("Must did not panic")
}

// goroutineID returns the ID of the calling goroutine, from its stack
// header ("goroutine 42 [running]:").
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf), "goroutine "), " ")
	return id
}

// A miss whose caller's context cannot end runs its load on the caller's
// goroutine (no goroutine is started for it); one whose context can end
// runs it on a goroutine of the Cache, so that the caller can leave.
func TestMissRunsLoadOnCallerGoroutineWhenContextCannotEnd(t *testing.T) {
	c := newCache(t, nil)
	l := newLoader[string](t, c, "p")
	var loadOn string
	load := func(context.Context) (string, error) { loadOn = goroutineID(); return "v", nil }

	if _, err := l.Get(context.Background(), "a", load); err != nil {
		t.Fatal(err)
	}
	if caller := goroutineID(); loadOn != caller {
		t.Errorf("context.Background(): the load ran on goroutine %s, the caller is %s", loadOn, caller)
	}

	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := l.Get(cctx, "b", load); err != nil {
		t.Fatal(err)
	}
	if caller := goroutineID(); loadOn == caller {
		t.Errorf("a cancelable context: the load ran on the caller's goroutine %s", caller)
	}
}
