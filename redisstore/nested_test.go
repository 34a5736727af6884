package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
)

// site is one process of a fleet serving a page built from a cached list
// built from cached rows, over a shared Redis.
type site struct {
	c                  *paddock.Cache
	rows, lists, pages *paddock.Loader[string]
}

// siteDB is the source of truth the fleet shares, with its read counts.
type siteDB struct {
	mu     sync.Mutex
	titles map[int]string
	pages  atomic.Int64 // page renders
}

func newSite(t *testing.T, client redis.UniversalClient, prefix string) *site {
	s := newStore(t, client, redisstore.Prefix(prefix))
	c := newCache(t, s)
	return &site{
		c:     c,
		rows:  newLoader(t, c, "row", paddock.Beta(0)),
		lists: newLoader(t, c, "list", paddock.Beta(0)),
		pages: newLoader(t, c, "page", paddock.Beta(0)),
	}
}

func (s *site) row(ctx context.Context, db *siteDB, id int) (string, error) {
	return s.rows.Get(ctx, fmt.Sprint(id), func(ctx context.Context) (string, error) {
		paddock.Tag(ctx, paddock.ModelTag("article", id))
		db.mu.Lock()
		defer db.mu.Unlock()
		return db.titles[id], nil
	})
}

// page renders the home page; hold, if not nil, is waited for after the
// list is read and before the page is returned.
func (s *site) page(ctx context.Context, db *siteDB, hold func()) (string, error) {
	return s.pages.Get(ctx, "home", func(ctx context.Context) (string, error) {
		db.pages.Add(1)
		list, err := s.lists.Get(ctx, "latest", func(ctx context.Context) (string, error) {
			var titles []string
			for _, id := range []int{1, 2} {
				t, err := s.row(ctx, db, id)
				if err != nil {
					return "", err
				}
				titles = append(titles, t)
			}
			return strings.Join(titles, ","), nil
		})
		if hold != nil {
			hold()
		}
		return "<" + list + ">", err
	})
}

// testNestedFleet: a page built on node a from nested Gets goes when node
// b invalidates a row's tag or key, and an invalidation on b while a's
// page load runs refuses a's fill.
func testNestedFleet(t *testing.T, client redis.UniversalClient, prefix string) {
	ctx := t.Context()
	db := &siteDB{titles: map[int]string{1: "one", 2: "two"}}
	a, b := newSite(t, client, prefix), newSite(t, client, prefix)
	want := func(s *site, v string) {
		t.Helper()
		if got, err := s.page(ctx, db, nil); err != nil || got != v {
			t.Fatalf("page = %q, %v; want %q", got, err, v)
		}
	}
	write := func(id int, title string) {
		db.mu.Lock()
		db.titles[id] = title
		db.mu.Unlock()
	}
	want(a, "<one,two>")
	want(b, "<one,two>") // the fleet shares it
	if n := db.pages.Load(); n != 1 {
		t.Fatalf("renders = %d, want 1", n)
	}

	write(1, "ONE")
	if err := b.c.InvalidateTags(ctx, paddock.ModelTag("article", 1)); err != nil {
		t.Fatal(err)
	}
	want(a, "<ONE,two>")

	write(2, "TWO")
	if err := b.rows.Invalidate(ctx, "2"); err != nil {
		t.Fatal(err)
	}
	want(a, "<ONE,TWO>")

	// An invalidation on b while a renders: a's fill is refused.
	read, goOn := make(chan struct{}), make(chan struct{})
	if err := a.pages.Invalidate(ctx, "home"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := a.page(ctx, db, func() { close(read); <-goOn })
		done <- err
	}()
	wait(t, read, "the render to read the list")
	write(1, "uno")
	if err := b.c.InvalidateTags(ctx, paddock.ModelTag("article", 1)); err != nil {
		t.Fatal(err)
	}
	close(goOn)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := a.c.Stats()["page"]; st.FillsRefused != 1 {
		t.Errorf("page fills refused on a = %d, want 1", st.FillsRefused)
	}
	want(b, "<uno,TWO>")
}

func TestNestedFleet(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	t.Run("layout=standalone", func(t *testing.T) { testNestedFleet(t, client, "nest:") })
}
