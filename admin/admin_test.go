package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/paddockcache/paddock/internal/browsertest"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/admin"
	"github.com/paddockcache/paddock/httpcache"
	"github.com/paddockcache/paddock/memstore"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// site is a program with a Cache, a Loader, a page cache and the admin
// page, served by a real HTTP server.
type site struct {
	c     *paddock.Cache
	art   *paddock.Loader[string]
	pages *httpcache.Cache
	h     *admin.Handler
	srv   *httptest.Server
}

func newSite(t *testing.T, opts ...paddock.Option) *site {
	t.Helper()
	st, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c, err := paddock.New(st, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	art, err := paddock.NewLoader[string](c, "article")
	if err != nil {
		t.Fatal(err)
	}
	pages, err := httpcache.New(c)
	if err != nil {
		t.Fatal(err)
	}
	h, err := admin.New(c, admin.Pages("pages", pages), admin.Interval(0), admin.History(10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	mux := http.NewServeMux()
	mux.Handle("GET /articles/{id}", pages.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := art.Get(r.Context(), r.PathValue("id"), func(context.Context) (string, error) {
			return "article " + r.PathValue("id"), nil
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, v)
	})))
	mux.Handle("GET /debug/paddock", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &site{c: c, art: art, pages: pages, h: h, srv: srv}
}

func (s *site) get(t *testing.T, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", s.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// traffic makes requests of every kind the page counts: page misses and
// hits, article misses and hits, a fill fenced by an invalidation, with a
// sample of the hit ratio between bursts.
func (s *site) traffic(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, p := range []string{"/articles/1", "/articles/2", "/articles/1", "/articles/1"} {
		if resp, _ := s.get(t, p); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", p, resp.Status)
		}
	}
	s.h.Sample()
	// A fill fenced: the load sees an invalidation of its key.
	if _, err := s.art.Get(ctx, "9", func(ctx context.Context) (string, error) {
		if err := s.art.Invalidate(ctx, "9"); err != nil {
			t.Error(err)
		}
		return "old", nil
	}); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		if _, err := s.art.Get(ctx, "1", func(context.Context) (string, error) { return "article 1", nil }); err != nil {
			t.Fatal(err)
		}
	}
	s.h.Sample()
}

func TestJSON(t *testing.T) {
	s := newSite(t)
	s.traffic(t)
	stats := s.c.Stats()

	for _, how := range []struct{ name, path, accept string }{
		{"accept", "/debug/paddock", "application/json"},
		{"query", "/debug/paddock?format=json", "text/html"},
	} {
		t.Run(how.name, func(t *testing.T) {
			resp, body := s.get(t, how.path, "Accept", how.accept)
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q, want application/json", ct)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			var snap admin.Snapshot
			if err := json.Unmarshal([]byte(body), &snap); err != nil {
				t.Fatalf("%v\n%s", err, body)
			}
			if snap.Breaker != "closed" || snap.PendingInvalidations != 0 || snap.Audit {
				t.Errorf("breaker %q, pending %d, audit %v: want closed, 0, false", snap.Breaker, snap.PendingInvalidations, snap.Audit)
			}
			rows := map[string]admin.Namespace{}
			for _, ns := range snap.Namespaces {
				rows[ns.Name] = ns
			}
			a, ok := rows["article"]
			if !ok {
				t.Fatalf("no row for namespace article: %+v", snap.Namespaces)
			}
			want := stats["article"]
			if a.Hits != want.Hits || a.Misses != want.Misses || a.Loads != want.Loads || a.Invalidations != want.Invalidations {
				t.Errorf("article row %+v, Stats %+v", a, want)
			}
			// Article misses: 1, 2 (from pages), 9; its hits: 6 Gets of 1.
			if a.Hits != 6 || a.Misses != 3 || a.HitRatio != 6.0/9 {
				t.Errorf("article: %d hits, %d misses, ratio %v: want 6, 3, 2/3", a.Hits, a.Misses, a.HitRatio)
			}
			if a.RefusedFills["fenced"] != 1 || len(a.RefusedFills) != 1 {
				t.Errorf("article refused fills %v, want fenced=1", a.RefusedFills)
			}
			if _, ok := rows[httpcache.DefaultNamespace]; !ok {
				t.Errorf("no row for the pages' namespace %q", httpcache.DefaultNamespace)
			}
			if len(snap.Pages) != 1 || snap.Pages[0].Name != "pages" {
				t.Fatalf("pages %+v, want one table named pages", snap.Pages)
			}
			var route *httpcache.RouteStats
			for i, r := range snap.Pages[0].Routes {
				if r.Route == "GET /articles/{id}" {
					route = &snap.Pages[0].Routes[i]
				}
			}
			if route == nil || route.Hits != 2 || route.Misses != 2 {
				t.Errorf("route row %+v, want 2 hits, 2 misses", route)
			}
			// Three samples: at New, after the page burst, after the
			// article burst. The first has no interval before it.
			if len(snap.History) != 3 {
				t.Fatalf("%d samples, want 3", len(snap.History))
			}
			if len(snap.History[0].HitRatio) != 0 {
				t.Errorf("the first sample has ratios %v", snap.History[0].HitRatio)
			}
			// Second sample: pages 2 of 4, articles 0 of 2 (the pages'
			// two misses each missed the article).
			if r := snap.History[1].HitRatio; r[httpcache.DefaultNamespace] != 0.5 || r["article"] != 0 || r[admin.All] != 2.0/6 {
				t.Errorf("second sample %v", r)
			}
			// Third: articles 6 hits of 7.
			if r := snap.History[2].HitRatio; r["article"] != 6.0/7 {
				t.Errorf("third sample %v, want article 6/7", r)
			}
			if _, ok := snap.History[2].HitRatio[httpcache.DefaultNamespace]; ok {
				t.Errorf("third sample has the pages, which had no request: %v", snap.History[2].HitRatio)
			}
		})
	}
}

func TestHTML(t *testing.T) {
	s := newSite(t)
	s.traffic(t)
	resp, body := s.get(t, "/debug/paddock", "Accept", "text/html,application/json;q=0.9")
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	rows := browsertest.TableRows(body)
	for _, want := range [][]string{
		{"article", "6", "0", "3", "66.7%", "3", "0", "0", "1", "fenced=1"},
		{"GET /articles/{id}", "2", "0", "2", "2", "0", "0", "0", "50.0%", ""},
	} {
		if !hasRow(rows, want) {
			t.Errorf("no row %q in\n%s", want, body)
		}
	}
	if n := strings.Count(body, "<polyline"); n != 3 { // (all), article, pages
		t.Errorf("%d lines in the chart, want 3\n%s", n, body)
	}
	if strings.Contains(body, "ZgotmplZ") {
		t.Errorf("the template refused a value:\n%s", body)
	}
	if !strings.Contains(body, `id="breaker">closed<`) {
		t.Errorf("no breaker state")
	}
}

func TestMethodNotAllowed(t *testing.T) {
	s := newSite(t)
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, httptest.NewRequest("POST", "/debug/paddock", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", rec.Code)
	}
}

func TestRing(t *testing.T) {
	s := newSite(t) // History(10)
	for range 25 {
		s.h.Sample()
	}
	if n := len(s.h.Snapshot().History); n != 10 {
		t.Errorf("%d samples kept, want 10", n)
	}
	snap := s.h.Snapshot().History
	for i := 1; i < len(snap); i++ {
		if snap[i].Time.Before(snap[i-1].Time) {
			t.Errorf("samples out of order at %d", i)
		}
	}
}

func TestOptions(t *testing.T) {
	st, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := paddock.Must(paddock.New(st))
	defer c.Close()
	for name, opts := range map[string][]admin.Option{
		"negative interval": {admin.Interval(-1)},
		"history 1":         {admin.History(1)},
		"nil pages":         {admin.Pages("x", nil)},
		"nil option":        {nil},
	} {
		if _, err := admin.New(c, opts...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := admin.New(nil); err == nil {
		t.Error("nil Cache: no error")
	}
	// The sampler goroutine stops on Close (TestMain checks for leaks).
	h, err := admin.New(c, admin.Interval(1))
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	h.Close()
}
