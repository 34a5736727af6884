package httpcache_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/httpcache"
)

// servedBy reports whether a request of target is served from the cache.
func cachedAt(t *testing.T, v http.Handler, target string, header ...string) bool {
	t.Helper()
	return strings.Contains(status(do(v, "GET", target, header...).Header()), "hit")
}

// PurgeURL drops every host, scheme and Vary variant of a URL, and no
// other URL.
func TestPurgeURL(t *testing.T) {
	hc := newCache(t, nil)
	v := hc.Handler(&counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "Accept-Language")
		body(k, w, r)
	}})
	warm := func() {
		for _, target := range []string{"http://a.example/blog/?page=2", "http://b.example/blog/?page=2", "https://a.example/blog/?page=2", "/blog/?page=3", "/blog/"} {
			for _, lang := range []string{"en", "fr"} {
				do(v, "GET", target, "Accept-Language", lang)
				do(v, "GET", target, "Accept-Language", lang)
			}
		}
	}
	warm()
	if err := hc.PurgeURL(ctx, "/blog/?page=2"); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"http://a.example/blog/?page=2", "http://b.example/blog/?page=2", "https://a.example/blog/?page=2"} {
		for _, lang := range []string{"en", "fr"} {
			if cachedAt(t, v, target, "Accept-Language", lang) {
				t.Errorf("%s (%s) still cached after PurgeURL", target, lang)
			}
		}
	}
	for _, target := range []string{"/blog/?page=3", "/blog/"} {
		if !cachedAt(t, v, target, "Accept-Language", "en") {
			t.Errorf("%s was purged too", target)
		}
	}
	for _, bad := range []string{"", "blog", "http://a.example/x", "/x?%zz"} {
		if err := hc.PurgeURL(ctx, bad); !errors.Is(err, httpcache.ErrInvalidOption) {
			t.Errorf("PurgeURL(%q): %v, want ErrInvalidOption", bad, err)
		}
	}
}

// A purge reads the URL's query as each view keys it.
func TestPurgeURLFollowsTheQueryRules(t *testing.T) {
	hc := newCache(t, nil)
	mux := http.NewServeMux()
	mux.Handle("/blog/", hc.Handler(&counting{serve: body}, httpcache.OnlyQuery("page")))
	mux.Handle("/shop/", hc.Handler(&counting{serve: body}, httpcache.IgnoreQuery("utm_*")))
	do(mux, "GET", "/blog/?page=2&junk=1")
	do(mux, "GET", "/shop/?b=2&a=1")
	if err := hc.PurgeURL(ctx, "/blog/?utm=1&page=2"); err != nil {
		t.Fatal(err)
	}
	if err := hc.PurgeURL(ctx, "/shop/?a=1&utm_source=x&b=2"); err != nil {
		t.Fatal(err)
	}
	if cachedAt(t, mux, "/blog/?page=2") || cachedAt(t, mux, "/shop/?a=1&b=2") {
		t.Error("a purge did not read the query as the view does")
	}
}

// PurgePrefix matches whole path segments.
func TestPurgePrefix(t *testing.T) {
	urls := []string{"/", "/blog", "/blog/", "/blog/2026/post", "/blog?page=2", "/blogroll", "/about"}
	for _, tc := range []struct {
		prefix string
		purged []string
	}{
		{"/blog/", []string{"/blog/", "/blog/2026/post"}},
		{"/blog", []string{"/blog", "/blog/", "/blog/2026/post", "/blog?page=2"}},
		{"/blog/2026", []string{"/blog/2026/post"}},
		{"/", urls},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			hc := newCache(t, nil)
			v := hc.Handler(&counting{serve: body})
			for _, u := range urls {
				do(v, "GET", u)
			}
			if err := hc.PurgePrefix(ctx, tc.prefix); err != nil {
				t.Fatal(err)
			}
			for _, u := range urls {
				if cached, want := cachedAt(t, v, u), !slices.Contains(tc.purged, u); cached != want {
					t.Errorf("%s: cached %v, want %v", u, cached, want)
				}
			}
		})
	}
	hc := newCache(t, nil)
	for _, bad := range []string{"", "blog/", "/x?y", "/x#y"} {
		if err := hc.PurgePrefix(ctx, bad); !errors.Is(err, httpcache.ErrInvalidOption) {
			t.Errorf("PurgePrefix(%q): %v, want ErrInvalidOption", bad, err)
		}
	}
}

// A soft purge serves the old page as stale while one request re-renders.
func TestMarkStale(t *testing.T) {
	hc := newCache(t, nil)
	release := make(chan struct{})
	h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
		if k == 3 { // the re-render of /news/1
			<-release
		}
		body(k, w, r)
	}}
	v := hc.Handler(h)
	do(v, "GET", "/news/1")
	do(v, "GET", "/news/2")
	for _, purge := range []func() error{
		func() error { return hc.MarkStaleURL(ctx, "/news/1") },
		func() error { return hc.MarkStalePrefix(ctx, "/news/") },
	} {
		if err := purge(); err != nil {
			t.Fatal(err)
		}
	}
	w := do(v, "GET", "/news/1") // served stale; its refresh (render 2) blocks
	if got := status(w.Header()); !strings.Contains(got, "detail=stale") || w.Body.String() != "render 1 of /news/1" {
		t.Errorf("after MarkStaleURL: %q (%s), want the old page, stale", w.Body.String(), got)
	}
	for range 5 {
		if w := do(v, "GET", "/news/1"); w.Body.String() != "render 1 of /news/1" {
			t.Errorf("during the refresh: %q", w.Body.String())
		}
	}
	close(release)
	w = do(v, "GET", "/news/2")
	if !strings.Contains(status(w.Header()), "stale") {
		t.Errorf("MarkStalePrefix: /news/2 %s", status(w.Header()))
	}
}

// URLs lists the URLs with a stored page under a prefix; a purge or
// expiry takes them off.
func TestURLs(t *testing.T) {
	c := newPaddock(t, nil)
	hc := newCache(t, c)
	v := hc.Handler(&counting{serve: body})
	for _, u := range []string{"/a/1", "/a/2?x=1", "/b/1", "/a/3"} {
		do(v, "GET", u)
	}
	do(v, "POST", "/a/4") // not cached
	got, err := hc.URLs(ctx, "/a/")
	if want := []string{"/a/1", "/a/2?x=1", "/a/3"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("URLs(/a/) = %v, %v; want %v", got, err, want)
	}
	hc.PurgeURL(ctx, "/a/1")
	// Purged from elsewhere (the pages' tag): gone from the list at the
	// next call, since URLs looks each page up.
	if err := c.InvalidateTags(ctx, "page.url:/a/3"); err != nil {
		t.Fatal(err)
	}
	got, _ = hc.URLs(ctx, "")
	if want := []string{"/a/2?x=1", "/b/1"}; !slices.Equal(got, want) {
		t.Errorf("URLs() after purges = %v, want %v", got, want)
	}
}

// Many URLs: the index is a record per URL, never one value (the
// remembered-URL index that broke at 22,717 URLs); MaxURLs bounds it.
func TestURLsMany(t *testing.T) {
	hc := newCache(t, nil, httpcache.MaxURLs(30_000))
	v := hc.Handler(&counting{serve: func(_ int64, w http.ResponseWriter, r *http.Request) { w.Write([]byte("x")) }})
	for i := range 25_000 {
		do(v, "GET", fmt.Sprintf("/item/%d", i))
	}
	got, err := hc.URLs(ctx, "/item/")
	if err != nil || len(got) != 25_000 {
		t.Errorf("URLs: %d, %v; want 25000", len(got), err)
	}
	small := newCache(t, nil, httpcache.Namespace("small"), httpcache.MaxURLs(100))
	sv := small.Handler(&counting{serve: body})
	for i := range 1000 {
		do(sv, "GET", fmt.Sprintf("/item/%d", i))
	}
	if got, _ := small.URLs(ctx, ""); len(got) > 100 || len(got) < 50 {
		t.Errorf("MaxURLs(100): %d URLs remembered", len(got))
	}
}

// The stats count per route pattern, with a total, and the handler
// serves them as HTML, JSON and text.
func TestStats(t *testing.T) {
	hc := newCache(t, nil, httpcache.MaxStatsRows(3))
	mux := http.NewServeMux()
	mux.Handle("GET /article/{id}", hc.Handler(&counting{serve: body}))
	mux.Handle("/", hc.Handler(&counting{serve: body}))
	for range 3 {
		do(mux, "GET", "/article/1")
	}
	do(mux, "GET", "/article/2")
	do(mux, "GET", "/", "Cookie", "a=1")
	direct := hc.Handler(&counting{serve: body}) // no pattern: a row per path
	for i := range 5 {
		do(direct, "GET", fmt.Sprintf("/p%d", i))
	}
	rows := map[string]httpcache.RouteStats{}
	for _, s := range hc.Stats() {
		rows[s.Route] = s
	}
	a := rows["GET /article/{id}"]
	if a.Hits != 2 || a.Misses != 2 || a.Stored != 2 || a.HitRatio() != 0.5 {
		t.Errorf("article row %+v", a)
	}
	if len(rows) != 5 || rows["/p0"].Misses != 1 || rows["(other)"].Misses != 4 {
		t.Errorf("rows %v: want the patterns, /p0, (other) and (total)", rows)
	}
	if total := rows["(total)"]; total.Requests() != 10 || total.Reasons["cookie"] != 1 {
		t.Errorf("total %+v", total)
	}
	sh := hc.StatsHandler()
	w := do(sh, "GET", "/stats", "Accept", "application/json")
	var got []httpcache.RouteStats
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || len(got) != 5 || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("JSON: %v, %d rows, %s", err, len(got), w.Body.String())
	}
	w = do(sh, "GET", "/stats?format=text")
	if !strings.Contains(w.Body.String(), "GET /article/{id}") || !strings.Contains(w.Body.String(), "HIT RATIO") {
		t.Errorf("text:\n%s", w.Body.String())
	}
	w = do(sh, "GET", "/stats", "Accept", "text/html")
	if !strings.Contains(w.Body.String(), "<td>GET /article/{id}</td>") || !strings.Contains(w.Body.String(), "50.0%") {
		t.Errorf("HTML:\n%s", w.Body.String())
	}
}

// Bad options are errors from New, and panics from Handler (like
// ServeMux's bad patterns); New-only options are refused by views.
func TestOptions(t *testing.T) {
	c := newPaddock(t, nil)
	for _, opt := range []httpcache.Option{
		nil, httpcache.TTL(-1), httpcache.MaxBodySize(0), httpcache.KeyFunc(nil),
		httpcache.IgnoreQuery("[x"), httpcache.VaryHeaders("bad header"), httpcache.Statuses(500),
		httpcache.Statuses(206), httpcache.Namespace("a:b"), httpcache.MaxURLs(0), httpcache.LoadTimeout(0),
		httpcache.OnlyQuery(""), httpcache.PostProcess(nil), httpcache.PostProcessAlways(nil),
	} {
		if _, err := httpcache.New(c, opt); !errors.Is(err, httpcache.ErrInvalidOption) {
			t.Errorf("New with a bad option: %v", err)
		}
	}
	if _, err := httpcache.New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	hc := newCache(t, c)
	if _, err := httpcache.New(c); err == nil {
		t.Error("a second httpcache on one namespace succeeded")
	}
	for _, opt := range []httpcache.Option{httpcache.TTL(-1), httpcache.Namespace("x")} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "httpcache: ") &&
					!strings.Contains(fmt.Sprint(r), "httpcache: ") {
					t.Errorf("Handler with a bad option: panic %v", r)
				}
			}()
			hc.Handler(http.NotFoundHandler(), opt)
		}()
	}
}

// Statuses sets what is stored; a 404 is stored by default.
func TestStatuses(t *testing.T) {
	hc := newCache(t, nil)
	h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }}
	v := hc.Handler(h)
	do(v, "GET", "/missing")
	if w := do(v, "GET", "/missing"); w.Code != 404 || !strings.Contains(status(w.Header()), "hit") {
		t.Errorf("404: %d %s", w.Code, status(w.Header()))
	}
	only200 := hc.Handler(h, httpcache.Statuses(200))
	do(only200, "GET", "/gone")
	if w := do(only200, "GET", "/gone"); strings.Contains(status(w.Header()), "hit") {
		t.Errorf("Statuses(200) stored a 404")
	}
}

// The handler's tags and the cached Gets it makes with r.Context() tag and
// bound the page.
func TestTagsAndDependencies(t *testing.T) {
	c := newPaddock(t, nil)
	hc := newCache(t, c)
	articles := paddock.Must(paddock.NewLoader[string](c, "article"))
	var version int
	h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
		paddock.Tag(r.Context(), "homepage")
		a, err := articles.Get(r.Context(), "42", func(context.Context) (string, error) { return fmt.Sprint("article v", version), nil })
		if err != nil {
			t.Error(err)
		}
		fmt.Fprintf(w, "%s #%d", a, k)
	}}
	v := hc.Handler(h)
	do(v, "GET", "/")
	version = 1
	if err := articles.Invalidate(ctx, "42"); err != nil {
		t.Fatal(err)
	}
	if w := do(v, "GET", "/"); w.Body.String() != "article v1 #2" {
		t.Errorf("after the article's invalidation: %q", w.Body.String())
	}
	if err := c.InvalidateTags(ctx, "homepage"); err != nil {
		t.Fatal(err)
	}
	if w := do(v, "GET", "/"); w.Body.String() != "article v1 #3" {
		t.Errorf("after the homepage tag: %q", w.Body.String())
	}
	if w := do(v, "GET", "/"); w.Body.String() != "article v1 #3" {
		t.Errorf("then: %q, want a hit", w.Body.String())
	}
}

// Middleware wraps a mux: the stats rows are paths, since the mux routes
// after the cache.
func TestMiddleware(t *testing.T) {
	hc := newCache(t, nil)
	mux := http.NewServeMux()
	h := &counting{serve: body}
	mux.Handle("GET /x/{id}", h)
	v := hc.Middleware(httpcache.TTL(0), httpcache.Stale(0), httpcache.StaleIfError(0))(mux)
	do(v, "GET", "/x/1")
	do(v, "GET", "/x/1")
	if h.n.Load() != 2 {
		t.Errorf("TTL(0) on the middleware: %d renders, want 2", h.n.Load())
	}
	v = hc.Middleware()(mux)
	do(v, "GET", "/x/2")
	do(v, "GET", "/x/2")
	if h.n.Load() != 3 {
		t.Errorf("%d renders, want 3", h.n.Load())
	}
	rec := httptest.NewRecorder()
	v.ServeHTTP(rec, httptest.NewRequest("GET", "/x/2", nil))
	if _, ok := rowsOf(hc)["/x/2"]; !ok {
		t.Errorf("rows %v, want /x/2", rowsOf(hc))
	}
}

func rowsOf(hc *httpcache.Cache) map[string]httpcache.RouteStats {
	m := map[string]httpcache.RouteStats{}
	for _, s := range hc.Stats() {
		m[s.Route] = s
	}
	return m
}

// A closed paddock Cache serves every request uncached, and says so.
func TestClosedCache(t *testing.T) {
	c := newPaddock(t, nil)
	hc := newCache(t, c)
	h := &counting{serve: body}
	v := hc.Handler(h)
	do(v, "GET", "/")
	c.Close()
	for i := range 2 {
		w := do(v, "GET", "/")
		if w.Code != 200 || status(w.Header()) != "paddock; fwd=bypass; detail=unavailable" {
			t.Errorf("request %d after Close: %d (%s)", i, w.Code, status(w.Header()))
		}
	}
	if h.n.Load() != 3 {
		t.Errorf("%d renders, want 3", h.n.Load())
	}
}

// PurgeTags names the tags a purge invalidates: invalidating them through
// the paddock.Cache purges what PurgeURL would.
func TestPurgeTags(t *testing.T) {
	hc := newCache(t, nil)
	v := hc.Handler(&counting{serve: body}, httpcache.IgnoreQuery("utm_*"))
	do(v, "GET", "/blog/?page=2")
	do(v, "GET", "/blog/?page=3")
	tags, err := hc.PurgeTags("/blog/?page=2&utm_source=x", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := hc.Loader().Cache().InvalidateTags(ctx, tags...); err != nil {
		t.Fatal(err)
	}
	if cachedAt(t, v, "/blog/?page=2") || !cachedAt(t, v, "/blog/?page=3") {
		t.Fatalf("after invalidating %v: page=2 cached %v, page=3 cached %v", tags, cachedAt(t, v, "/blog/?page=2"), cachedAt(t, v, "/blog/?page=3"))
	}
	dirs, err := hc.PurgeTags("/blog/", true)
	if err != nil || len(dirs) != 1 {
		t.Fatalf("prefix tags %v, %v", dirs, err)
	}
	if _, err := hc.PurgeTags("blog", false); !errors.Is(err, httpcache.ErrInvalidOption) {
		t.Fatalf("a bad URL: %v", err)
	}
}
