package fragment_test

import (
	"context"
	"html/template"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/fragment"
	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/store"
)

var ctx = context.Background()

// newMem returns a memstore closed when the test ends.
func newMem(t testing.TB) *memstore.Store {
	t.Helper()
	s, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newCache returns a paddock Cache over s (a new memstore if nil), closed
// when the test ends.
func newCache(t testing.TB, s store.Store) *paddock.Cache {
	t.Helper()
	if s == nil {
		s = newMem(t)
	}
	c, err := paddock.New(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newFrags(t testing.TB, c *paddock.Cache, opts ...fragment.Option) *fragment.Cache {
	t.Helper()
	f, err := fragment.New(c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// parse parses src as a set with frags' functions and binds it.
func parse(t testing.TB, frags *fragment.Cache, src string) *template.Template {
	t.Helper()
	tm := template.Must(template.New("page").Funcs(frags.Funcs()).Parse(src))
	if err := frags.Bind(tm); err != nil {
		t.Fatal(err)
	}
	return tm
}

// exec executes the template name of tm with data.
func exec(t testing.TB, tm *template.Template, name string, data any) string {
	t.Helper()
	var b strings.Builder
	if err := tm.ExecuteTemplate(&b, name, data); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// site is the data of the test templates: rows behind a Loader, and
// counters of what ran.
type site struct {
	rows *paddock.Loader[string]

	mu      sync.Mutex
	db      map[int]string // the source of truth: id -> title
	renders map[string]int // fragment -> renders, counted by Render
	reads   int            // row loads
	pause   func()         // called by Pause, if set
}

func newSite(t testing.TB, c *paddock.Cache) *site {
	t.Helper()
	rows, err := paddock.NewLoader[string](c, "row")
	if err != nil {
		t.Fatal(err)
	}
	return &site{rows: rows, db: map[int]string{1: "one", 2: "two"}, renders: map[string]int{}}
}

// Rendered counts a render of the fragment name; templates call it.
func (s *site) Rendered(name string) string {
	s.mu.Lock()
	s.renders[name]++
	s.mu.Unlock()
	return ""
}

// Renders returns the renders of the fragment name so far.
func (s *site) Renders(name string) int { return s.count(name) }

func (s *site) count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renders[name]
}

func (s *site) rowReads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// Title reads a row through the cache, tagged by its model tag.
func (s *site) Title(ctx context.Context, id int) (string, error) {
	return s.rows.Get(ctx, strconv.Itoa(id), func(ctx context.Context) (string, error) {
		paddock.Tag(ctx, paddock.ModelTag("article", id))
		s.mu.Lock()
		defer s.mu.Unlock()
		s.reads++
		return s.db[id], nil
	})
}

func (s *site) write(id int, title string) {
	s.mu.Lock()
	s.db[id] = title
	s.mu.Unlock()
}

// Pause calls the pause hook; templates call it where a test wants to
// stop a render.
func (s *site) Pause() string {
	s.mu.Lock()
	p := s.pause
	s.mu.Unlock()
	if p != nil {
		p()
	}
	return ""
}

// IDs are the articles of the list.
func (s *site) IDs() []int { return []int{1, 2} }

// Item is the data of one article's fragment.
func (s *site) Item(id int) item { return item{Site: s, ID: id} }

type item struct {
	Site *site
	ID   int
}

// page is the data of a page template.
type page struct {
	Ctx  context.Context
	Site *site
	User string
}
