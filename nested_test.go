package paddock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/hooks"
)

// blog is the layered cache of a blog: a page built from a list built
// from rows, each layer a Loader of one Cache, each read counted.
type blog struct {
	c                  *paddock.Cache
	rows, lists, pages *paddock.Loader[string]

	mu    sync.Mutex
	db    map[int]string // the source of truth: article id -> title
	reads map[string]int // layer -> loads
}

func newBlog(t *testing.T, c *paddock.Cache, opts ...paddock.LoaderOption) *blog {
	b := &blog{c: c, db: map[int]string{1: "one", 2: "two"}, reads: map[string]int{}}
	b.rows = newLoader[string](t, c, "row", opts...)
	b.lists = newLoader[string](t, c, "list", opts...)
	b.pages = newLoader[string](t, c, "page", opts...)
	return b
}

func (b *blog) read(layer string) {
	b.mu.Lock()
	b.reads[layer]++
	b.mu.Unlock()
}

func (b *blog) loads(layer string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reads[layer]
}

func (b *blog) write(id int, title string) {
	b.mu.Lock()
	b.db[id] = title
	b.mu.Unlock()
}

// row loads one article, tagged by its model tag.
func (b *blog) row(ctx context.Context, id int) (string, error) {
	return b.rows.Get(ctx, fmt.Sprint(id), func(ctx context.Context) (string, error) {
		b.read("row")
		paddock.Tag(ctx, paddock.ModelTag("article", id))
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.db[id], nil
	})
}

// list is built from rows with nested Gets: it names no tag itself.
func (b *blog) list(ctx context.Context) (string, error) {
	return b.lists.Get(ctx, "latest", func(ctx context.Context) (string, error) {
		b.read("list")
		var titles []string
		for _, id := range []int{1, 2} {
			t, err := b.row(ctx, id)
			if err != nil {
				return "", err
			}
			titles = append(titles, t)
		}
		return strings.Join(titles, ","), nil
	})
}

// page is built from the list.
func (b *blog) page(ctx context.Context) (string, error) {
	return b.pages.Get(ctx, "home", b.buildPage)
}

func (b *blog) buildPage(ctx context.Context) (string, error) {
	b.read("page")
	l, err := b.list(ctx)
	return "<" + l + ">", err
}

func (b *blog) wantPage(t *testing.T, want string) {
	t.Helper()
	got, err := b.page(ctx)
	if err != nil || got != want {
		t.Fatalf("page = %q, %v; want %q", got, err, want)
	}
}

func TestNestedDependencies(t *testing.T) {
	for _, tc := range []struct {
		name       string
		warmList   bool // the list is cached before the page is built
		invalidate func(b *blog) error
		want       string // the page after it
	}{
		{"row tag, cold list", false, func(b *blog) error { return b.c.InvalidateTags(ctx, "article:1") }, "<ONE,two>"},
		{"row tag, warm list", true, func(b *blog) error { return b.c.InvalidateTags(ctx, "article:1") }, "<ONE,two>"},
		{"row key", true, func(b *blog) error { return b.rows.Invalidate(ctx, "1") }, "<ONE,two>"},
		// The list is rebuilt from the rows still cached.
		{"list key", true, func(b *blog) error { return b.lists.Invalidate(ctx, "latest") }, "<one,two>"},
		{"row Set", true, func(b *blog) error { return b.rows.Set(ctx, "1", "ONE") }, "<ONE,two>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBlog(t, newCache(t, nil))
			if tc.warmList {
				if _, err := b.list(ctx); err != nil {
					t.Fatal(err)
				}
			}
			b.wantPage(t, "<one,two>")
			b.wantPage(t, "<one,two>") // cached
			if n := b.loads("page"); n != 1 {
				t.Fatalf("page loads = %d, want 1", n)
			}
			b.write(1, "ONE")
			if err := tc.invalidate(b); err != nil {
				t.Fatal(err)
			}
			b.wantPage(t, tc.want)
			if n := b.loads("page"); n != 2 {
				t.Errorf("page loads = %d, want 2", n)
			}
		})
	}
}

func TestNestedDependenciesSwitchedOff(t *testing.T) {
	defer hooks.Reset()
	hooks.NoDeps.Store(true)
	b := newBlog(t, newCache(t, nil))
	b.wantPage(t, "<one,two>")
	b.write(1, "ONE")
	if err := b.c.InvalidateTags(ctx, "article:1"); err != nil {
		t.Fatal(err)
	}
	// Without the mechanism the page outlives the invalidation: the bug
	// the mechanism exists for.
	b.wantPage(t, "<one,two>")
}

// An invalidation of an inner tag while the outer load runs fences the
// outer fill.
func TestNestedInvalidationFencesOuterFill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBlog(t, newCache(t, nil))
		read := make(chan struct{})
		goOn := make(chan struct{})
		outer := func(ctx context.Context) (string, error) {
			l, err := b.list(ctx)
			close(read)
			<-goOn
			return "<" + l + ">", err
		}
		done := make(chan string)
		go func() {
			v, _ := b.pages.Get(ctx, "home", outer)
			done <- v
		}()
		<-read
		b.write(1, "ONE")
		if err := b.c.InvalidateTags(ctx, "article:1"); err != nil {
			t.Fatal(err)
		}
		close(goOn)
		if v := <-done; v != "<one,two>" {
			t.Fatalf("the racing Get = %q", v) // it began before: the old page is allowed
		}
		st := b.c.Stats()["page"]
		if st.FillsRefused != 1 {
			t.Errorf("page fills refused = %d, want 1", st.FillsRefused)
		}
		b.wantPage(t, "<ONE,two>")
	})
}

// A nested MarkStale soft-invalidates the outer entries: they are served
// stale while one refresh runs.
func TestNestedMarkStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBlog(t, newCache(t, nil), paddock.TTL(time.Minute), paddock.Stale(time.Hour), paddock.Beta(0))
		b.wantPage(t, "<one,two>")
		b.write(1, "ONE")
		if err := b.c.MarkStaleTags(ctx, "article:1"); err != nil {
			t.Fatal(err)
		}
		r, err := b.pages.Fetch(ctx, "home", b.buildPage)
		if err != nil || r.Status != paddock.StatusStale || r.Value != "<one,two>" {
			t.Fatalf("page after MarkStaleTags = %+v, %v; want the old page, stale", r, err)
		}
		synctest.Wait() // the refresh ran: its nested Gets waited for fresh values
		r, err = b.pages.Fetch(ctx, "home", b.buildPage)
		if err != nil || r.Status != paddock.StatusHit || r.Value != "<ONE,two>" {
			t.Fatalf("page after its refresh = %+v, %v; want the new page, fresh", r, err)
		}
		if n := b.loads("page"); n != 2 {
			t.Errorf("page loads = %d, want 2", n)
		}
	})
}

// An outer entry is never fresher than its inputs: built from an inner
// value with 10 s of freshness left, it is fresh for 10 s, not its own
// TTL.
func TestNestedFreshnessBoundedByInputs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		inner := newLoader[string](t, c, "inner", paddock.TTL(time.Minute), paddock.Beta(0))
		outer := newLoader[string](t, c, "outer", paddock.TTL(time.Hour), paddock.Beta(0))
		if _, err := inner.Get(ctx, "k", func(context.Context) (string, error) { return "v", nil }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Second)
		loads := 0
		build := func(ctx context.Context) (string, error) {
			loads++
			v, err := inner.Get(ctx, "k", func(context.Context) (string, error) { return "v2", nil })
			return "outer(" + v + ")", err
		}
		if v, _ := outer.Get(ctx, "k", build); v != "outer(v)" {
			t.Fatalf("outer = %q", v)
		}
		time.Sleep(9 * time.Second)
		if r, _ := outer.Fetch(ctx, "k", build); r.Status != paddock.StatusHit {
			t.Fatalf("outer 9 s later: %v, want a hit", r.Status)
		}
		time.Sleep(2 * time.Second) // the inner value expired: so did the outer
		r, _ := outer.Fetch(ctx, "k", build)
		if r.Status != paddock.StatusLoaded || r.Value != "outer(v2)" || loads != 2 {
			t.Fatalf("outer 11 s later: %+v after %d loads; want a load of the new inner value", r, loads)
		}
	})
}

// An outer value built from an inner value served stale is stored already
// stale: served only inside the inner's stale window, each time with a
// refresh.
func TestNestedStaleInputStoresStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		inner := newLoader[string](t, c, "inner", paddock.TTL(time.Minute), paddock.Stale(time.Hour), paddock.Beta(0))
		outer := newLoader[string](t, c, "outer", paddock.TTL(time.Hour), paddock.Stale(time.Hour), paddock.Beta(0))
		if _, err := inner.Get(ctx, "k", func(context.Context) (string, error) { return "v", nil }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Minute) // the inner value is stale
		hold := make(chan struct{})
		innerLoad := func(context.Context) (string, error) { <-hold; return "v2", nil }
		build := func(ctx context.Context) (string, error) {
			v, err := inner.Get(ctx, "k", innerLoad)
			return "outer(" + v + ")", err
		}
		if v, _ := outer.Get(ctx, "k", build); v != "outer(v)" {
			t.Fatalf("outer = %q", v)
		}
		r, _ := outer.Fetch(ctx, "k", build)
		if r.Status != paddock.StatusStale || r.Value != "outer(v)" {
			t.Fatalf("outer built from a stale input = %+v; want it served stale", r)
		}
		close(hold)
		synctest.Wait()
		if v, _ := outer.Get(ctx, "k", build); v != "outer(v2)" {
			t.Fatalf("outer after the refreshes = %q", v)
		}
	})
}

// A Get inside a load of another Cache is not a nested Get of this one.
func TestNestedAcrossCachesIndependent(t *testing.T) {
	c1, c2 := newCache(t, nil), newCache(t, nil)
	a := newLoader[string](t, c1, "a")
	bl := newLoader[string](t, c2, "b")
	v, err := a.Get(ctx, "k", func(ctx context.Context) (string, error) {
		return bl.Get(ctx, "k", func(ctx context.Context) (string, error) {
			paddock.Tag(ctx, "t")
			return "v", nil
		})
	})
	if err != nil || v != "v" {
		t.Fatal(v, err)
	}
	if err := c1.InvalidateTags(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if r, _ := a.Fetch(ctx, "k", nil2[string]); r.Status != paddock.StatusHit {
		t.Errorf("a after an invalidation on c1 of c2's tag: %v, want a hit", r.Status)
	}
}

// nil2 is a load that must not run.
func nil2[T any](context.Context) (T, error) {
	var zero T
	return zero, errors.New("load must not run")
}

// GetMany and Peek inside a load carry their keys too.
func TestNestedGetManyAndPeek(t *testing.T) {
	c := newCache(t, nil)
	rows := newLoader[string](t, c, "row")
	outer := newLoader[string](t, c, "outer")
	if _, err := rows.GetMany(ctx, []string{"1", "2", "3"}, func(ctx context.Context, keys []string) (map[string]string, error) {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "r" + k
		}
		return m, nil
	}); err != nil {
		t.Fatal(err)
	}
	build := func(ctx context.Context) (string, error) {
		m, err := rows.GetMany(ctx, []string{"1", "2"}, nil3)
		if err != nil {
			return "", err
		}
		p, _, _ := rows.Peek(ctx, "3")
		return m["1"] + m["2"] + p.Value, nil
	}
	for _, k := range []string{"1", "3"} {
		if v, err := outer.Get(ctx, "x", build); err != nil || v != "r1r2r3" {
			t.Fatal(v, err)
		}
		if err := rows.Invalidate(ctx, k); err != nil {
			t.Fatal(err)
		}
		if _, found, _ := outer.Peek(ctx, "x"); found {
			t.Errorf("outer survived the invalidation of row %s", k)
		}
		rows.Set(ctx, k, "r"+k)
	}
}

func nil3(context.Context, []string) (map[string]string, error) {
	return nil, errors.New("load must not run")
}
