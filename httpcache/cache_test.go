package httpcache_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/httpcache"
	"github.com/paddockcache/paddock/memstore"
)

// 1000 concurrent requests for one cold URL run the handler once; every
// client gets the page.
func TestColdURLRendersOnce(t *testing.T) {
	hc := newCache(t, nil)
	const n = 1000
	var entered atomic.Int64
	all := make(chan struct{})
	h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
		<-all // until every request has reached the cache
		body(k, w, r)
	}}
	cached := hc.Handler(h)
	url, client := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if entered.Add(1) == n {
			close(all)
		}
		cached.ServeHTTP(w, r)
	}))
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for range n {
		wg.Go(func() {
			resp, err := client.Get(url + "/home")
			if err != nil {
				errs <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "render 1 of /home" {
				errs <- fmt.Sprintf("got %q", b)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := h.n.Load(); got != 1 {
		t.Errorf("%d renders for %d concurrent requests, want 1", got, n)
	}
	s := hc.Stats()
	total := s[len(s)-1]
	if total.Misses != 1 || total.Coalesced+total.Hits != n-1 {
		t.Errorf("stats %+v: want 1 miss and %d coalesced or hits", total, n-1)
	}
}

// db is a "database" a handler renders from: a version that a write bumps.
type db struct {
	mu      sync.Mutex
	version int
}

func (d *db) read() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.version
}

func (d *db) write() {
	d.mu.Lock()
	d.version++
	d.mu.Unlock()
}

// A render of the old rows while the rows are written and the page purged
// never stores its page: by URL, by prefix, by a tag the handler named,
// and by a dependency on the cached row it read.
func TestRenderRacingPurgeIsNotStored(t *testing.T) {
	purges := map[string]func(hc *httpcache.Cache, rows *paddock.Loader[int]) error{
		"url":    func(hc *httpcache.Cache, _ *paddock.Loader[int]) error { return hc.PurgeURL(ctx, "/news/?page=1") },
		"prefix": func(hc *httpcache.Cache, _ *paddock.Loader[int]) error { return hc.PurgePrefix(ctx, "/news/") },
		"root":   func(hc *httpcache.Cache, _ *paddock.Loader[int]) error { return hc.PurgePrefix(ctx, "/") },
		"path":   func(hc *httpcache.Cache, _ *paddock.Loader[int]) error { return hc.PurgePrefix(ctx, "/news") },
		"tag": func(hc *httpcache.Cache, rows *paddock.Loader[int]) error {
			return rows.Cache().InvalidateTags(ctx, paddock.ModelTag("article", 42))
		},
		"dependency": func(_ *httpcache.Cache, rows *paddock.Loader[int]) error { return rows.Invalidate(ctx, "42") },
	}
	for name, purge := range purges {
		t.Run(name, func(t *testing.T) {
			c := newPaddock(t, nil)
			hc := newCache(t, c)
			rows := paddock.Must(paddock.NewLoader[int](c, "row"))
			var d db
			started, release := make(chan struct{}, 10), make(chan struct{})
			var block atomic.Bool
			block.Store(true)
			h := hc.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				paddock.Tag(r.Context(), paddock.ModelTag("article", 42))
				v := d.read()
				if name == "dependency" { // read through the cached row
					var err error
					v, err = rows.Get(r.Context(), "42", func(context.Context) (int, error) { return d.read(), nil })
					if err != nil {
						t.Error(err)
					}
				}
				if block.Load() {
					started <- struct{}{}
					<-release
				}
				fmt.Fprintf(w, "version %d", v)
			}))
			url, client := server(t, h)
			done := make(chan string)
			go func() {
				_, b := get(t, client, "GET", url+"/news/?page=1")
				done <- b
			}()
			<-started // the render has read version 0
			d.write()
			if err := purge(hc, rows); err != nil {
				t.Fatal(err)
			}
			block.Store(false)
			close(release)
			if b := <-done; b != "version 0" {
				t.Errorf("the racing render served %q", b)
			}
			resp, b := get(t, client, "GET", url+"/news/?page=1")
			if b != "version 1" {
				t.Errorf("after the purge: %q (%s), want version 1: the old page was stored", b, resp.Header.Get("Cache-Status"))
			}
		})
	}
}

// status returns the Cache-Status of a response.
func status(h http.Header) string { return strings.Join(h.Values("Cache-Status"), ", ") }

// Requests refused by default go to the handler every time; responses that
// must not be stored are served and not stored.
func TestRefusals(t *testing.T) {
	type tc struct {
		name   string
		method string
		header []string
		serve  func(w http.ResponseWriter, r *http.Request)
		detail string // in Cache-Status
		reason string // in the stats, if Cache-Status cannot say it
	}
	plain := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") }
	cases := []tc{
		{name: "POST", method: "POST", serve: plain, detail: "fwd=bypass; detail=method"},
		{name: "Authorization", header: []string{"Authorization", "Bearer x"}, serve: plain, detail: "fwd=bypass; detail=authorization"},
		{name: "Cookie", header: []string{"Cookie", "session=1"}, serve: plain, detail: "fwd=bypass; detail=cookie"},
		{name: "Range", header: []string{"Range", "bytes=0-1"}, serve: plain, detail: "fwd=bypass; detail=range"},
		{name: "Set-Cookie", serve: func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "s", Value: "1"})
			plain(w, r)
		}, detail: "detail=set-cookie"},
		{name: "no-store", serve: cc("no-store"), detail: "detail=no-store"},
		{name: "private", serve: cc("private, max-age=60"), detail: "detail=private"},
		{name: "no-cache", serve: cc("no-cache"), detail: "detail=no-cache"},
		{name: "Vary-star", serve: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Vary", "*")
			plain(w, r)
		}, detail: "detail=vary-star"},
		{name: "302", serve: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, detail: "detail=status"},
		{name: "206", serve: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusPartialContent)
			plain(w, r)
		}, detail: "detail=partial"},
		{name: "500", serve: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "down", http.StatusInternalServerError)
		}, detail: "fwd-status=500; detail=error"},
		{name: "too-large", serve: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, strings.Repeat("x", 2000))
		}, detail: "fwd=miss", reason: "too-large"}, // known once the header is sent
		{name: "too-large by Content-Length", serve: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "2000")
			io.WriteString(w, strings.Repeat("x", 2000))
		}, detail: "detail=too-large"},
		{name: "too-large HEAD", method: "HEAD", serve: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, strings.Repeat("x", 2000))
		}, detail: "detail=too-large"},
		{name: "flush", serve: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: 1\n\n")
			w.(http.Flusher).Flush()
		}, detail: "fwd=miss", reason: "flushed"},
		{name: "trailer", serve: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Sum")
			plain(w, r)
			w.Header().Set("X-Sum", "1")
		}, detail: "detail=trailer"},
		{name: "max-age=0 without stale", serve: cc("max-age=0"), detail: "detail=expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hc := newCache(t, nil, httpcache.MaxBodySize(1000), httpcache.Stale(0))
			h := &counting{serve: func(_ int64, w http.ResponseWriter, r *http.Request) { tc.serve(w, r) }}
			url, client := server(t, hc.Handler(h))
			method := tc.method
			if method == "" {
				method = "GET"
			}
			for i := range 2 {
				resp, _ := get(t, client, method, url+"/p", tc.header...)
				if got := status(resp.Header); !strings.Contains(got, tc.detail) {
					t.Errorf("request %d: Cache-Status %q, want %q", i, got, tc.detail)
				}
			}
			if n := h.n.Load(); n != 2 {
				t.Errorf("%d renders for 2 requests, want 2: the response was stored", n)
			}
			reason := tc.reason
			if reason == "" {
				_, reason, _ = strings.Cut(tc.detail, "detail=")
			}
			if s := hc.Stats(); s[len(s)-1].Reasons[reason] != 2 {
				t.Errorf("stats reasons %v, want %s=2", s[len(s)-1].Reasons, reason)
			}
		})
	}
}

func cc(v string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", v)
		io.WriteString(w, "page")
	}
}

// A response that sets a cookie is never handed to the requests coalesced
// with it: each gets its own render, its own cookie.
func TestSetCookieNeverShared(t *testing.T) {
	hc := newCache(t, nil)
	const n = 50
	var entered atomic.Int64
	all := make(chan struct{})
	h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
		if k == 1 {
			<-all // the others coalesce on this render
		}
		http.SetCookie(w, &http.Cookie{Name: "user", Value: r.Header.Get("X-User")})
		io.WriteString(w, "hello "+r.Header.Get("X-User"))
	}}
	cached := hc.Handler(h)
	url, client := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if entered.Add(1) == n {
			close(all)
		}
		cached.ServeHTTP(w, r)
	}))
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			user := fmt.Sprint("u", i)
			resp, b := get(t, client, "GET", url+"/", "X-User", user)
			cookie := ""
			if cs := resp.Cookies(); len(cs) == 1 {
				cookie = cs[0].Value
			}
			if b != "hello "+user || cookie != user {
				t.Errorf("%s got %q with cookie %q", user, b, cookie)
			}
		})
	}
	wg.Wait()
	if got := h.n.Load(); got != n {
		t.Errorf("%d renders, want %d (one per request)", got, n)
	}
}

// A response's Vary is honoured exactly: several Vary lines, any case;
// two requests that differ in a varied header never share a page.
func TestVary(t *testing.T) {
	hc := newCache(t, nil)
	h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "accept-language")
		w.Header().Add("Vary", "X-Theme, Accept-Encoding")
		fmt.Fprintf(w, "%s/%s #%d", r.Header.Get("Accept-Language"), r.Header.Get("X-Theme"), k)
	}}
	url, client := server(t, hc.Handler(h))
	req := func(lang, theme string) string {
		_, b := get(t, client, "GET", url+"/v", "Accept-Language", lang, "X-Theme", theme, "Accept-Encoding", "identity")
		return b
	}
	seen := map[string]string{}
	for round := range 3 {
		for _, lang := range []string{"en", "fr"} {
			for _, theme := range []string{"dark", "light"} {
				b := req(lang, theme)
				if !strings.HasPrefix(b, lang+"/"+theme+" ") {
					t.Fatalf("%s/%s got %q", lang, theme, b)
				}
				// The first request of the URL cannot know its Vary: the
				// variant it rendered is rendered once more under its own
				// key once the Vary is learned. From then on, hits.
				if old, ok := seen[lang+theme]; ok && old != b && round == 2 {
					t.Errorf("%s/%s: %q then %q: not served from the cache", lang, theme, old, b)
				}
				seen[lang+theme] = b
			}
		}
	}
	// Four variants; the first request of a URL cannot know its Vary, so
	// one more render may happen while it is learned.
	if n := h.n.Load(); n < 4 || n > 5 {
		t.Errorf("%d renders for 4 variants", n)
	}
}

// VaryHeaders varies the key from the first request, and adds the header
// to the response's Vary.
func TestVaryHeaders(t *testing.T) {
	hc := newCache(t, nil, httpcache.VaryHeaders("x-theme"))
	h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s #%d", r.Header.Get("X-Theme"), k)
	}}
	url, client := server(t, hc.Handler(h))
	for range 2 {
		for _, theme := range []string{"dark", "light"} {
			resp, b := get(t, client, "GET", url+"/", "X-Theme", theme)
			if !strings.HasPrefix(b, theme+" ") {
				t.Errorf("%s got %q", theme, b)
			}
			if v := resp.Header.Get("Vary"); v != "X-Theme" {
				t.Errorf("Vary %q, want X-Theme", v)
			}
		}
	}
	if n := h.n.Load(); n != 2 {
		t.Errorf("%d renders for 2 variants, want 2", n)
	}
}

// HEAD is answered from the GET page, and a HEAD on a cold URL stores the
// whole page, never an empty body.
func TestHEAD(t *testing.T) {
	hc := newCache(t, nil)
	h := &counting{serve: body}
	url, client := server(t, hc.Handler(h))
	resp, b := get(t, client, "HEAD", url+"/h")
	if b != "" || resp.StatusCode != 200 {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, b)
	}
	resp, b = get(t, client, "GET", url+"/h")
	if b != "render 1 of /h" || !strings.Contains(status(resp.Header), "hit") {
		t.Errorf("GET after HEAD: %q (%s), want the page the HEAD stored", b, status(resp.Header))
	}
	resp, b = get(t, client, "HEAD", url+"/h")
	if b != "" || resp.Header.Get("Content-Length") != fmt.Sprint(len("render 1 of /h")) {
		t.Errorf("HEAD hit: %q, Content-Length %q", b, resp.Header.Get("Content-Length"))
	}
	if n := h.n.Load(); n != 1 {
		t.Errorf("%d renders", n)
	}
}

// Stored pages get an ETag derived from the body, unless the handler set
// one; If-None-Match and If-Modified-Since get a 304 from the cache.
func TestConditional(t *testing.T) {
	hc := newCache(t, nil)
	h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/own" {
			w.Header().Set("ETag", `W/"v1"`)
			w.Header().Set("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT")
		}
		body(k, w, r)
	}}
	url, client := server(t, hc.Handler(h))
	get(t, client, "GET", url+"/derived")
	resp, _ := get(t, client, "GET", url+"/derived")
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag derived")
	}
	resp, b := get(t, client, "GET", url+"/derived", "If-None-Match", `"other", `+etag)
	if resp.StatusCode != 304 || b != "" {
		t.Errorf("If-None-Match: %d %q", resp.StatusCode, b)
	}
	resp, _ = get(t, client, "GET", url+"/derived", "If-None-Match", `"other"`)
	if resp.StatusCode != 200 {
		t.Errorf("a non-matching If-None-Match: %d", resp.StatusCode)
	}
	get(t, client, "GET", url+"/own")
	for _, hdr := range [][]string{
		{"If-None-Match", `"v1"`}, // weak comparison
		{"If-None-Match", "*"},
		{"If-Modified-Since", "Tue, 01 Dec 2026 10:00:00 GMT"},
		{"If-Modified-Since", "Wed, 02 Dec 2026 10:00:00 GMT"},
	} {
		resp, _ := get(t, client, "GET", url+"/own", hdr...)
		if resp.StatusCode != 304 || resp.Header.Get("ETag") != `W/"v1"` {
			t.Errorf("%v: %d, ETag %q", hdr, resp.StatusCode, resp.Header.Get("ETag"))
		}
	}
	resp, _ = get(t, client, "GET", url+"/own", "If-Modified-Since", "Mon, 30 Nov 2026 10:00:00 GMT")
	if resp.StatusCode != 200 {
		t.Errorf("modified since: %d", resp.StatusCode)
	}
	if n := h.n.Load(); n != 2 {
		t.Errorf("%d renders, want 2", n)
	}
	total := hc.Stats()[len(hc.Stats())-1]
	if total.NotModified != 5 {
		t.Errorf("stats count %d 304s, want 5", total.NotModified)
	}
}

// OnlyQuery keeps only the named parameters in the key; IgnoreQuery drops
// some; parameters are sorted.
func TestQueryRules(t *testing.T) {
	hc := newCache(t, nil)
	h := &counting{serve: body}
	mux := http.NewServeMux()
	mux.Handle("/blog/", hc.Handler(h, httpcache.OnlyQuery("page")))
	mux.Handle("/shop/", hc.Handler(h, httpcache.IgnoreQuery("utm_*")))
	url, client := server(t, mux)
	same := func(a, b string) {
		t.Helper()
		_, x := get(t, client, "GET", url+a)
		_, y := get(t, client, "GET", url+b)
		if x != y {
			t.Errorf("%s and %s: %q and %q, want one page", a, b, x, y)
		}
	}
	differ := func(a, b string) {
		t.Helper()
		_, x := get(t, client, "GET", url+a)
		_, y := get(t, client, "GET", url+b)
		if x == y {
			t.Errorf("%s and %s share %q", a, b, x)
		}
	}
	same("/blog/?page=2&other=junk", "/blog/?page=2&utm=x")
	differ("/blog/?page=2", "/blog/?page=3")
	same("/shop/?a=1&b=2", "/shop/?b=2&a=1&utm_source=x")
	differ("/shop/?a=1", "/shop/?a=1&ref=y")
	same("/shop/?a=1&a=2", "/shop/?utm_x=1&a=1&a=2")
	differ("/shop/?a=1&a=2", "/shop/?a=2&a=1")
	// A bad query bypasses the cache.
	resp, _ := get(t, client, "GET", url+"/shop/?a=%zz")
	if got := status(resp.Header); !strings.Contains(got, "bad-query") {
		t.Errorf("bad query: %q", got)
	}
}

// KeyFunc's string is part of the key; false bypasses; true opts a
// request with a cookie in.
func TestKeyFunc(t *testing.T) {
	hc := newCache(t, nil, httpcache.KeyFunc(func(r *http.Request) (string, bool) {
		c, err := r.Cookie("user")
		if err != nil {
			return "anonymous", true
		}
		if c.Value == "admin" {
			return "", false
		}
		return "user=" + c.Value, true
	}))
	h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
		c, _ := r.Cookie("user")
		name := "anonymous"
		if c != nil {
			name = c.Value
		}
		fmt.Fprintf(w, "%s #%d", name, k)
	}}
	url, client := server(t, hc.Handler(h))
	for range 2 {
		for _, user := range []string{"", "ann", "bob"} {
			hdr := []string{}
			want := "anonymous"
			if user != "" {
				hdr, want = []string{"Cookie", "user=" + user}, user
			}
			resp, b := get(t, client, "GET", url+"/", hdr...)
			if !strings.HasPrefix(b, want+" ") {
				t.Errorf("%q got %q (%s)", user, b, status(resp.Header))
			}
		}
	}
	if n := h.n.Load(); n != 3 {
		t.Errorf("%d renders for 3 users, want 3", n)
	}
	resp, _ := get(t, client, "GET", url+"/", "Cookie", "user=admin")
	if !strings.Contains(status(resp.Header), "key-func") {
		t.Errorf("admin: %s, want a bypass", status(resp.Header))
	}
	get(t, client, "GET", url+"/", "Cookie", "user=admin")
	if n := h.n.Load(); n != 5 {
		t.Errorf("%d renders, want 5: the admin bypasses", n)
	}
}

// PostProcess runs once per render, and its page is the one stored;
// PostProcessAlways runs on every response and never changes the stored
// copy.
func TestPostProcess(t *testing.T) {
	var once, always atomic.Int64
	hc := newCache(t, nil)
	h := &counting{serve: body}
	v := hc.Handler(h,
		httpcache.PostProcess(func(r *http.Request, p *httpcache.Page) {
			once.Add(1)
			p.Body = append(p.Body, " [processed]"...)
			p.Header.Set("X-Processed", "1")
		}),
		httpcache.PostProcessAlways(func(w http.ResponseWriter, r *http.Request, p *httpcache.Page) {
			always.Add(1)
			p.Body = []byte(strings.Replace(string(p.Body), "render", "hello "+r.Header.Get("X-User")+",", 1))
			w.Header().Set("X-Always", "1")
		}))
	url, client := server(t, v)
	for _, user := range []string{"ann", "bob", "cy"} {
		resp, b := get(t, client, "GET", url+"/", "X-User", user)
		want := "hello " + user + ", 1 of / [processed]"
		if b != want || resp.Header.Get("X-Processed") != "1" || resp.Header.Get("X-Always") != "1" {
			t.Errorf("%s: %q %v, want %q", user, b, resp.Header, want)
		}
	}
	if once.Load() != 1 || always.Load() != 3 || h.n.Load() != 1 {
		t.Errorf("PostProcess ran %d times, PostProcessAlways %d, renders %d: want 1, 3, 1", once.Load(), always.Load(), h.n.Load())
	}
	p, found, err := hc.Loader().Peek(ctx, firstKey(t, hc))
	if err != nil || !found || string(p.Value.Body) != "render 1 of / [processed]" {
		t.Errorf("stored page %q, %v, %v", p.Value.Body, found, err)
	}
}

// firstKey returns the key of the one page the cache holds.
func firstKey(t *testing.T, hc *httpcache.Cache) string {
	t.Helper()
	// The key of a plain GET of / on the test server is its base key.
	us, err := hc.URLs(ctx, "")
	if err != nil || len(us) != 1 {
		t.Fatalf("URLs: %v, %v", us, err)
	}
	keys := hc.Keys(us[0])
	if len(keys) != 1 {
		t.Fatalf("keys of %s: %v", us[0], keys)
	}
	return keys[0]
}

// A URL whose variants keep varying on new headers: a process that has not
// learned them (another process on the same store rendered the pages) looks
// at most three variants, then renders the request uncached rather than
// chase them further.
func TestVaryChurnRendersUncached(t *testing.T) {
	s, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// Render n varies on the first n of A, B, C.
	h := &counting{serve: func(n int64, w http.ResponseWriter, r *http.Request) {
		for _, name := range []string{"X-A", "X-B", "X-C"}[:min(n, 3)] {
			w.Header().Add("Vary", name)
		}
		fmt.Fprintf(w, "render %d", n)
	}}
	rendering := newCache(t, newPaddock(t, s)).Handler(h)
	for _, hdr := range [][]string{
		{"X-A", "1"},
		{"X-A", "2", "X-B", "1"},
		{"X-A", "2", "X-B", "2", "X-C", "1"},
	} {
		if w := do(rendering, "GET", "/churn", hdr...); w.Code != http.StatusOK {
			t.Fatalf("priming %v: %d", hdr, w.Code)
		}
	}
	if n := h.n.Load(); n != 3 {
		t.Fatalf("%d renders priming three variants", n)
	}

	other := newCache(t, newPaddock(t, s)).Handler(h)
	w := do(other, "GET", "/churn", "X-A", "2", "X-B", "2", "X-C", "9")
	if cs := w.Header().Get("Cache-Status"); !strings.Contains(cs, "fwd=vary-miss; detail=uncached") {
		t.Errorf("Cache-Status = %q, want an uncached vary miss", cs)
	}
	if got, want := w.Body.String(), "render 4"; got != want {
		t.Errorf("body %q, want %q (a render of its own)", got, want)
	}
	// Uncached: the next identical request renders again.
	do(other, "GET", "/churn", "X-A", "2", "X-B", "2", "X-C", "9")
	if n := h.n.Load(); n != 5 {
		t.Errorf("%d renders, want 5: the uncached variant was stored", n)
	}
}

// LoadTimeout ends a render's request context after its bound; a render
// that honours it fails, and the failure is not cached.
func TestLoadTimeoutEndsRender(t *testing.T) {
	hc := newCache(t, nil, httpcache.LoadTimeout(50*time.Millisecond))
	var deadline atomic.Int64
	h := &counting{serve: func(n int64, w http.ResponseWriter, r *http.Request) {
		d, ok := r.Context().Deadline()
		if !ok {
			t.Error("the render's context has no deadline")
		}
		deadline.Store(int64(time.Until(d)))
		if n == 1 {
			<-r.Context().Done() // a render that waits on its context
			http.Error(w, r.Context().Err().Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}}
	handler := hc.Handler(h)
	t0 := time.Now()
	w := do(handler, "GET", "/slow")
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("the render that ran out of its LoadTimeout answered %d", w.Code)
	}
	if took := time.Since(t0); took < 50*time.Millisecond {
		t.Errorf("the render ended after %v, before its LoadTimeout", took)
	}
	if d := time.Duration(deadline.Load()); d > 50*time.Millisecond {
		t.Errorf("the render's deadline was %v away, more than LoadTimeout", d)
	}
	if w := do(handler, "GET", "/slow"); w.Code != http.StatusOK || w.Body.String() != "ok" {
		t.Errorf("the next request: %d %q; the failed render was cached", w.Code, w.Body.String())
	}
	if _, err := httpcache.New(newPaddock(t, nil), httpcache.LoadTimeout(0)); err == nil {
		t.Error("LoadTimeout(0) accepted")
	}
}
