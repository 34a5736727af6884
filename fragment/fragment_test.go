package fragment_test

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/fragment"
)

const sidebarSrc = `
{{- define "page"}}<main>{{cache .Ctx "sidebar" . (vary .User)}}</main>{{end}}
{{- define "sidebar"}}{{.Data.Site.Rendered "sidebar"}}<aside>{{.Data.User}}</aside>{{end}}`

// However many executions of the shared template ask for one cold
// fragment at once, it renders once, and all of them get its markup.
func TestRenderOncePerKeyConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		frags := newFrags(t, c)
		s := newSite(t, c)
		release := make(chan struct{})
		s.pause = func() { <-release }
		tm := parse(t, frags, strings.ReplaceAll(sidebarSrc, `<aside>`, `{{.Data.Site.Pause}}<aside>`))

		const n = 50
		out := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				var b strings.Builder
				if err := tm.ExecuteTemplate(&b, "page", page{Ctx: ctx, Site: s, User: "ann"}); err != nil {
					t.Error(err)
				}
				out[i] = b.String()
			})
		}
		synctest.Wait() // every execution is in the render or waiting for it
		close(release)
		wg.Wait()
		if got := s.count("sidebar"); got != 1 {
			t.Errorf("renders = %d, want 1", got)
		}
		for i, o := range out {
			if o != "<main><aside>ann</aside></main>" {
				t.Fatalf("execution %d got %q", i, o)
			}
		}
		// The others joined the render in process, or, if they looked up
		// between its lease and its flight, waited for its fill: hits.
		if st := c.Stats()[fragment.DefaultNamespace]; st.Loads != 1 || st.Coalesced+st.Hits != n-1 {
			t.Errorf("stats = %+v, want 1 load and %d coalesced or hits", st, n-1)
		}
	})
}

// A template changed by a deploy (the fragment's own, one it calls, or a
// fragment nested in it) makes a new key; an unchanged one shares the old
// entry.
func TestDigestChange(t *testing.T) {
	base := map[string]string{
		"outer": `{{.Data.Rendered "outer"}}<div>{{template "item" .}}{{cache .Ctx "inner" .Data}}</div>`,
		"item":  `<p>item</p>`,
		"inner": `{{.Data.Rendered "inner"}}<p>inner</p>`,
		"other": `<p>not called</p>`,
	}
	src := func(change map[string]string) string {
		var b strings.Builder
		for _, name := range []string{"outer", "item", "inner", "other"} {
			body := base[name]
			if c, ok := change[name]; ok {
				body = c
			}
			fmt.Fprintf(&b, `{{define %q}}%s{{end}}`, name, body)
		}
		return b.String()
	}
	for _, tc := range []struct {
		name        string
		change      map[string]string
		outer, want string // renders of outer after the deploy; its markup
	}{
		{"unchanged", nil, "0", "<div><p>item</p><p>inner</p></div>"},
		{"own source", map[string]string{"outer": strings.Replace(base["outer"], "<div>", `<div class="v2">`, 1)}, "1", `<div class="v2"><p>item</p><p>inner</p></div>`},
		{"called template", map[string]string{"item": `<p>item v2</p>`}, "1", "<div><p>item v2</p><p>inner</p></div>"},
		{"nested fragment", map[string]string{"inner": `{{.Data.Rendered "inner"}}<p>inner v2</p>`}, "1", "<div><p>item</p><p>inner v2</p></div>"},
		{"template not called", map[string]string{"other": `<p>v2</p>`}, "0", "<div><p>item</p><p>inner</p></div>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t, nil)
			s := newSite(t, c)
			frags := newFrags(t, c)
			v1 := parse(t, frags, src(nil))
			if _, err := frags.Render(ctx, v1, "outer", s); err != nil {
				t.Fatal(err)
			}
			v2 := parse(t, frags, src(tc.change))
			before := s.count("outer")
			h, err := frags.Render(ctx, v2, "outer", s)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(s.count("outer") - before); got != tc.outer || string(h) != tc.want {
				t.Errorf("after the deploy: %s renders, %q; want %s, %q", got, h, tc.outer, tc.want)
			}
		})
	}
}

// A cache call whose name is not a constant may reach any template: a
// change to any template of the set changes its key.
func TestDigestDynamicName(t *testing.T) {
	c := newCache(t, nil)
	s := newSite(t, c)
	frags := newFrags(t, c)
	src := `{{define "outer"}}{{.Data.Rendered "outer"}}{{cache .Ctx (print "in" "ner") .Data}}{{end}}{{define "inner"}}%s{{end}}{{define "unrelated"}}%s{{end}}`
	for i, v := range []string{"a", "b"} {
		tm := parse(t, frags, fmt.Sprintf(src, "x", v))
		if _, err := frags.Render(ctx, tm, "outer", s); err != nil {
			t.Fatal(err)
		}
		if got := s.count("outer"); got != i+1 {
			t.Fatalf("renders after set %d = %d, want %d", i, got, i+1)
		}
	}
}

// Renders with equal vary values share an entry; any difference (a
// value, its kind, the order, a Cache-wide Vary) makes another.
func TestVary(t *testing.T) {
	c := newCache(t, nil)
	s := newSite(t, c)
	frags := newFrags(t, c)
	tm := parse(t, frags, `{{define "f"}}{{.Data.Rendered "f"}}{{end}}`)
	type id int
	for i, tc := range []struct {
		vary    []any
		renders int
	}{
		{[]any{"ann", 1}, 1},
		{[]any{"ann", 1}, 1},
		{[]any{"ann", id(1)}, 1}, // a named integer keys like its value
		{[]any{"ann", 1.0}, 1},   // so does a whole float
		{[]any{"ann", "1"}, 2},
		{[]any{1, "ann"}, 3},
		{[]any{"ann"}, 4},
		{[]any{"an", "n1"}, 5},
		{[]any{"a", "sb"}, 6},
		{[]any{"as", "b"}, 7}, // the same bytes but for the lengths
		{[]any{"ann", 2}, 8},
		{[]any{"ann", nil}, 9},
		{[]any{"ann", true}, 10},
		{[]any{"ann", time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}, 11},
		{[]any{"ann", time.Date(2025, 1, 2, 4, 4, 5, 0, time.FixedZone("CET", 3600))}, 11}, // the same instant
		{nil, 12},
	} {
		if _, err := frags.Render(ctx, tm, "f", s, fragment.Vary(tc.vary...)); err != nil {
			t.Fatal(err)
		}
		if got := s.count("f"); got != tc.renders {
			t.Fatalf("step %d, vary %v: %d renders, want %d", i, tc.vary, got, tc.renders)
		}
	}
	if _, err := frags.Render(ctx, tm, "f", s, fragment.Vary(struct{ A int }{1})); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("Vary of a struct: %v, want ErrInvalidOption", err)
	}
}

// A Cache-wide Vary (a release identifier) keeps deploys that share a
// store apart, and shares entries within one release.
func TestVaryOfCache(t *testing.T) {
	mem := newMem(t)
	renders := 0
	for i, tc := range []struct {
		release string
		renders int
	}{{"v1", 1}, {"v1", 1}, {"v2", 2}} {
		c := newCache(t, mem) // a process of this release
		s := newSite(t, c)
		frags := newFrags(t, c, fragment.Vary(tc.release))
		tm := parse(t, frags, `{{define "f"}}{{.Data.Rendered "f"}}{{end}}`)
		if _, err := frags.Render(ctx, tm, "f", s); err != nil {
			t.Fatal(err)
		}
		renders += s.count("f")
		if renders != tc.renders {
			t.Fatalf("process %d of release %s: %d renders in all, want %d", i, tc.release, renders, tc.renders)
		}
	}
}

// A fragment is fresh for its TTL: from the template's ttl (seconds or a
// duration string), a call's TTL, or the Cache's default.
func TestTTLExpiry(t *testing.T) {
	for _, tc := range []struct {
		name string
		call string // the cache action's options
		opts []fragment.CallOption
		def  []fragment.Option
		ttl  time.Duration
	}{
		{"template seconds", `(ttl 60)`, nil, nil, time.Minute},
		{"template duration", `(ttl "90s")`, nil, nil, 90 * time.Second},
		{"Cache default", ``, nil, []fragment.Option{fragment.TTL(2 * time.Minute)}, 2 * time.Minute},
		{"package default", ``, nil, nil, fragment.DefaultTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCache(t, nil)
				s := newSite(t, c)
				frags := newFrags(t, c, append(tc.def, fragment.Stale(0))...)
				tm := parse(t, frags, `{{define "page"}}{{cache .Ctx "f" .Site `+tc.call+`}}{{end}}{{define "f"}}{{.Data.Rendered "f"}}{{end}}`)
				p := page{Ctx: ctx, Site: s}
				exec(t, tm, "page", p)
				time.Sleep(tc.ttl - time.Second)
				exec(t, tm, "page", p)
				if n := s.count("f"); n != 1 {
					t.Fatalf("renders within the TTL = %d, want 1", n)
				}
				time.Sleep(2 * time.Second)
				exec(t, tm, "page", p)
				if n := s.count("f"); n != 2 {
					t.Fatalf("renders after the TTL = %d, want 2", n)
				}
			})
		})
	}
}

// A Go call's TTL and Stale: the expired fragment is served stale while
// one render runs in the background.
func TestRenderTTLAndStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		s := newSite(t, c)
		frags := newFrags(t, c)
		tm := parse(t, frags, `{{define "f"}}{{.Data.Rendered "f"}}render {{.Data.Renders "f"}}{{end}}`)
		render := func() string {
			t.Helper()
			h, err := frags.Render(ctx, tm, "f", s, fragment.TTL(time.Minute), fragment.Stale(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			return string(h)
		}
		render()
		time.Sleep(2 * time.Minute)
		if got := render(); got != "render 1" {
			t.Fatalf("after the TTL: %q, want the old markup at once", got)
		}
		synctest.Wait()
		if got := render(); got != "render 2" {
			t.Fatalf("after the background render: %q", got)
		}
		time.Sleep(time.Minute + time.Hour + time.Second)
		if got := render(); got != "render 3" {
			t.Fatalf("after the stale window: %q, want a render in the foreground", got)
		}
	})
}

// mustKey returns the short key (without the namespace) of fragment name.
func mustKey(t testing.TB, frags *fragment.Cache, tm *template.Template, name string, vary ...any) string {
	t.Helper()
	k, err := frags.Key(tm, name, vary...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(k, frags.Loader().Namespace()+":")
}

// Tags come from the call (in the template or from Go), from the Cache's
// defaults, and from paddock.Tag inside the render; InvalidateTags of any
// drops the fragment.
func TestTags(t *testing.T) {
	for _, tc := range []struct {
		name, call string
		opts       []fragment.CallOption
		tag        string
	}{
		{"template", `(tags "sidebar" "nav")`, nil, "nav"},
		{"Go call", ``, []fragment.CallOption{fragment.Tags("sidebar")}, "sidebar"},
		{"Cache default", ``, nil, "all"},
		{"inside the render", ``, nil, "user:ann"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t, nil)
			s := newSite(t, c)
			frags := newFrags(t, c, fragment.Tags("all"))
			tm := parse(t, frags, `{{define "page"}}{{cache .Ctx "f" . `+tc.call+`}}{{end}}`+
				`{{define "f"}}{{.Data.Site.Rendered "f"}}{{.Data.Tag .Ctx}}{{.Data.User}}{{end}}`)
			d := &tagged{page: page{Ctx: ctx, Site: s, User: "ann"}}
			render := func() {
				t.Helper()
				if tc.opts != nil {
					if _, err := frags.Render(ctx, tm, "f", d, tc.opts...); err != nil {
						t.Fatal(err)
					}
					return
				}
				exec(t, tm, "page", d)
			}
			render()
			render()
			if err := c.InvalidateTags(ctx, "unrelated"); err != nil {
				t.Fatal(err)
			}
			render()
			if n := s.count("f"); n != 1 {
				t.Fatalf("renders = %d, want 1", n)
			}
			if err := c.InvalidateTags(ctx, tc.tag); err != nil {
				t.Fatal(err)
			}
			render()
			if n := s.count("f"); n != 2 {
				t.Errorf("renders after InvalidateTags(%q) = %d, want 2", tc.tag, n)
			}
		})
	}
}

// tagged is page data whose Tag method tags the render it is called in.
type tagged struct{ page }

func (d *tagged) Tag(ctx context.Context) string {
	paddock.Tag(ctx, "user:"+d.User)
	return ""
}

const listSrc = `
{{- define "list"}}{{.Data.Rendered "list"}}<ol>{{range .Data.IDs}}{{cache $.Ctx "article" ($.Data.Item .) (vary .)}}{{end}}</ol>{{.Data.Pause}}{{end}}
{{- define "article"}}{{.Data.Site.Rendered "article"}}<li>{{.Data.Site.Title .Ctx .Data.ID}}</li>{{end}}`

// Russian-doll: the list fragment is built from article fragments built
// from cached rows. Invalidating a row re-renders its article and the
// list, and nothing else.
func TestRussianDoll(t *testing.T) {
	for _, tc := range []struct {
		name       string
		invalidate func(c *paddock.Cache, s *site, frags *fragment.Cache, tm *template.Template) error
		article    int // article renders it causes
		reads      int // row reads it causes
		want       string
	}{
		{"row tag", func(c *paddock.Cache, _ *site, _ *fragment.Cache, _ *template.Template) error {
			return c.InvalidateTags(ctx, "article:1")
		}, 1, 1, "<ol><li>ONE</li><li>two</li></ol>"},
		{"row key", func(_ *paddock.Cache, s *site, _ *fragment.Cache, _ *template.Template) error {
			return s.rows.Invalidate(ctx, "1")
		}, 1, 1, "<ol><li>ONE</li><li>two</li></ol>"},
		{"row Set", func(_ *paddock.Cache, s *site, _ *fragment.Cache, _ *template.Template) error {
			return s.rows.Set(ctx, "1", "ONE")
		}, 1, 0, "<ol><li>ONE</li><li>two</li></ol>"},
		// The inner fragment itself: the list is rebuilt from the rows
		// still cached, around the re-rendered article.
		{"inner fragment", func(_ *paddock.Cache, _ *site, frags *fragment.Cache, tm *template.Template) error {
			return frags.Invalidate(ctx, tm, "article", 1)
		}, 1, 0, "<ol><li>one</li><li>two</li></ol>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t, nil)
			s := newSite(t, c)
			frags := newFrags(t, c)
			tm := parse(t, frags, listSrc)
			list := func() string {
				t.Helper()
				h, err := frags.Render(ctx, tm, "list", s)
				if err != nil {
					t.Fatal(err)
				}
				return string(h)
			}
			if got := list(); got != "<ol><li>one</li><li>two</li></ol>" {
				t.Fatalf("list = %q", got)
			}
			list()
			if s.count("list") != 1 || s.count("article") != 2 || s.rowReads() != 2 {
				t.Fatalf("renders: list %d, article %d, row reads %d; want 1, 2, 2", s.count("list"), s.count("article"), s.rowReads())
			}
			s.write(1, "ONE")
			if err := tc.invalidate(c, s, frags, tm); err != nil {
				t.Fatal(err)
			}
			if got := list(); got != tc.want {
				t.Errorf("list after the invalidation = %q, want %q", got, tc.want)
			}
			if s.count("list") != 2 || s.count("article") != 2+tc.article || s.rowReads() != 2+tc.reads {
				t.Errorf("after: list %d, article %d, row reads %d; want 2, %d, %d", s.count("list"), s.count("article"), s.rowReads(), 2+tc.article, 2+tc.reads)
			}
		})
	}
}

// An invalidation of a row that lands while the outer fragment renders
// (after its inner fragments read the row) refuses the outer fill: the
// racing render's old markup is never stored.
func TestRussianDollInvalidationFencesOuterFill(t *testing.T) {
	c := newCache(t, nil)
	s := newSite(t, c)
	frags := newFrags(t, c)
	tm := parse(t, frags, listSrc)
	read, goOn := make(chan struct{}), make(chan struct{})
	s.pause = func() {
		s.mu.Lock()
		s.pause = nil // only the first render stops
		s.mu.Unlock()
		close(read)
		<-goOn
	}
	done := make(chan string)
	go func() {
		h, err := frags.Render(ctx, tm, "list", s)
		if err != nil {
			t.Error(err)
		}
		done <- string(h)
	}()
	<-read // the articles are rendered from the old rows
	s.write(1, "ONE")
	if err := c.InvalidateTags(ctx, "article:1"); err != nil {
		t.Fatal(err)
	}
	close(goOn)
	if got := <-done; got != "<ol><li>one</li><li>two</li></ol>" {
		t.Fatalf("the racing render = %q", got) // it began before: the old markup is allowed
	}
	if st := c.Stats()[fragment.DefaultNamespace]; st.FillsRefused != 1 {
		t.Errorf("fragment fills refused = %d, want 1", st.FillsRefused)
	}
	h, err := frags.Render(ctx, tm, "list", s)
	if err != nil || string(h) != "<ol><li>ONE</li><li>two</li></ol>" {
		t.Fatalf("list after the race = %q, %v; want the new title", h, err)
	}
	if n := s.count("list"); n != 2 {
		t.Errorf("list renders = %d, want 2", n)
	}
}

// A fragment rendered inside a paddock load (a page cached as a whole, as
// httpcache does: the handler runs on the page load's context) makes the
// page depend on the fragment and on what the fragment read.
func TestFragmentInsidePageLoad(t *testing.T) {
	for _, tc := range []struct {
		name       string
		invalidate func(c *paddock.Cache, frags *fragment.Cache, tm *template.Template) error
	}{
		{"fragment's tag", func(c *paddock.Cache, _ *fragment.Cache, _ *template.Template) error {
			return c.InvalidateTags(ctx, "sidebar")
		}},
		{"fragment's key", func(_ *paddock.Cache, frags *fragment.Cache, tm *template.Template) error {
			return frags.Invalidate(ctx, tm, "sidebar", "ann")
		}},
		{"row read by the fragment", func(c *paddock.Cache, _ *fragment.Cache, _ *template.Template) error {
			return c.InvalidateTags(ctx, "article:2")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t, nil)
			s := newSite(t, c)
			frags := newFrags(t, c)
			pages := paddock.Must(paddock.NewLoader[string](c, "page"))
			tm := parse(t, frags, `
{{- define "page"}}<main>{{cache .Ctx "sidebar" . (vary .User) (tags "sidebar")}}</main>{{end}}
{{- define "sidebar"}}{{.Data.Site.Rendered "sidebar"}}<aside>{{.Data.Site.Title .Ctx 2}}</aside>{{end}}`)
			pageLoads := 0
			load := func(ctx context.Context) (string, error) {
				pageLoads++
				var b strings.Builder
				err := tm.ExecuteTemplate(&b, "page", page{Ctx: ctx, Site: s, User: "ann"})
				return b.String(), err
			}
			if v, err := pages.Get(ctx, "/", load); err != nil || v != "<main><aside>two</aside></main>" {
				t.Fatalf("page = %q, %v", v, err)
			}
			if err := tc.invalidate(c, frags, tm); err != nil {
				t.Fatal(err)
			}
			if _, found, _ := pages.Peek(ctx, "/"); found {
				t.Fatal("the page outlived the invalidation of its fragment")
			}
			if _, err := pages.Get(ctx, "/", load); err != nil || pageLoads != 2 || s.count("sidebar") != 2 {
				t.Errorf("page loads %d, sidebar renders %d, %v; want 2, 2", pageLoads, s.count("sidebar"), err)
			}
		})
	}
}

// Render from Go and the template function share an entry; Key names it.
func TestRenderSharesTemplateEntry(t *testing.T) {
	c := newCache(t, nil)
	s := newSite(t, c)
	frags := newFrags(t, c)
	tm := parse(t, frags, sidebarSrc)
	p := page{Ctx: ctx, Site: s, User: "ann"}
	if got := exec(t, tm, "page", p); got != "<main><aside>ann</aside></main>" {
		t.Fatalf("page = %q", got)
	}
	h, err := frags.Render(ctx, tm.Lookup("sidebar"), "sidebar", p, fragment.Vary("ann"))
	if err != nil || h != "<aside>ann</aside>" || s.count("sidebar") != 1 {
		t.Fatalf("Render = %q, %v after %d renders; want the cached markup", h, err, s.count("sidebar"))
	}
	k, err := frags.Key(tm, "sidebar", "ann")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Invalidate(ctx, k); err != nil {
		t.Fatal(err)
	}
	exec(t, tm, "page", p)
	if n := s.count("sidebar"); n != 2 {
		t.Errorf("renders after Invalidate(Key) = %d, want 2", n)
	}
}

// A caller that gives up returns at once; the render goes on, on its own
// context (Dot.Ctx), so the cached Gets it makes after that still work,
// and its markup is cached for the next caller.
func TestRenderOutlastsCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, nil)
		s := newSite(t, c)
		frags := newFrags(t, c)
		tm := parse(t, frags, `{{define "f"}}{{.Data.Rendered "f"}}{{.Data.Pause}}<p>{{.Data.Title .Ctx 1}}</p>{{end}}`)
		goOn := make(chan struct{})
		s.pause = func() { <-goOn }
		callerCtx, cancel := context.WithCancel(ctx)
		errc := make(chan error)
		go func() {
			_, err := frags.Render(callerCtx, tm, "f", s)
			errc <- err
		}()
		synctest.Wait() // the render is paused
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("the caller that gave up: %v, want context.Canceled", err)
		}
		close(goOn)
		synctest.Wait() // the render ended and filled
		r, found, err := frags.Loader().Peek(ctx, mustKey(t, frags, tm, "f"))
		if err != nil || !found || r.Value != "<p>one</p>" {
			t.Fatalf("cached: %q, %v, %v; want the render's markup", r.Value, found, err)
		}
		if h, err := frags.Render(ctx, tm, "f", s); err != nil || h != "<p>one</p>" || s.count("f") != 1 {
			t.Errorf("next caller: %q, %v after %d renders; want the cached markup", h, err, s.count("f"))
		}
	})
}
