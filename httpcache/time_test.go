package httpcache_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/paddockcache/paddock/httpcache"
)

// The response's Cache-Control sets the page's windows: max-age (or
// s-maxage, which wins) the TTL, stale-while-revalidate the stale window,
// in which the old page is served at once while one request re-renders.
func TestCacheControlWindows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hc := newCache(t, nil, httpcache.TTL(time.Hour))
		h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=600, s-maxage=30, stale-while-revalidate=60")
			body(k, w, r)
		}}
		v := hc.Handler(h)
		do(v, "GET", "/w")
		time.Sleep(10 * time.Second)
		w := do(v, "GET", "/w")
		if got := status(w.Header()); got != "paddock; hit; ttl=20" || w.Header().Get("Age") != "10" {
			t.Errorf("at 10s: %q, Age %q; want a hit with 20s left, Age 10", got, w.Header().Get("Age"))
		}
		time.Sleep(30 * time.Second)
		w = do(v, "GET", "/w")
		if got := status(w.Header()); got != "paddock; hit; ttl=-10; detail=stale" || w.Body.String() != "render 1 of /w" {
			t.Errorf("at 40s: %q %q; want the old page, stale", got, w.Body.String())
		}
		synctest.Wait() // the refresh
		if w = do(v, "GET", "/w"); w.Body.String() != "render 2 of /w" || !strings.HasPrefix(status(w.Header()), "paddock; hit; ttl=30") {
			t.Errorf("after the refresh: %q (%s)", w.Body.String(), status(w.Header()))
		}
		time.Sleep(100 * time.Second) // past both windows
		if w = do(v, "GET", "/w"); w.Body.String() != "render 3 of /w" {
			t.Errorf("past the windows: %q", w.Body.String())
		}
	})
}

// Expires sets the TTL when Cache-Control has no max-age; an invalid
// Expires means already expired.
func TestExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hc := newCache(t, nil, httpcache.TTL(time.Hour))
		h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/bad" {
				w.Header().Set("Expires", "0")
			} else {
				w.Header().Set("Expires", time.Now().Add(20*time.Second).UTC().Format(http.TimeFormat))
			}
			body(k, w, r)
		}}
		v := hc.Handler(h)
		do(v, "GET", "/e")
		if w := do(v, "GET", "/e"); status(w.Header()) != "paddock; hit; ttl=20" {
			t.Errorf("Expires in 20s: %s", status(w.Header()))
		}
		do(v, "GET", "/bad")
		do(v, "GET", "/bad")
		if n := h.n.Load(); n != 3 {
			t.Errorf("%d renders, want 3: an invalid Expires is not stored", n)
		}
	})
}

// A failed render (5xx) inside the stale-if-error window is replaced by
// the old page; outside it, the error page is served and not stored.
// must-revalidate turns stale serving off.
func TestStaleIfError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hc := newCache(t, nil, httpcache.TTL(10*time.Second), httpcache.StaleIfError(time.Minute))
		failing := false
		h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/strict" {
				w.Header().Set("Cache-Control", "max-age=10, must-revalidate")
			}
			if failing {
				http.Error(w, "database down", http.StatusServiceUnavailable)
				return
			}
			body(k, w, r)
		}}
		v := hc.Handler(h)
		do(v, "GET", "/p")
		do(v, "GET", "/strict")
		failing = true
		time.Sleep(20 * time.Second)
		w := do(v, "GET", "/p")
		if w.Code != 200 || w.Body.String() != "render 1 of /p" ||
			status(w.Header()) != "paddock; fwd=stale; fwd-status=503; ttl=-10; detail=stale-if-error" {
			t.Errorf("inside stale-if-error: %d %q (%s)", w.Code, w.Body.String(), status(w.Header()))
		}
		if w := do(v, "GET", "/strict"); w.Code != 503 {
			t.Errorf("must-revalidate: %d %q, want the 503", w.Code, w.Body.String())
		}
		time.Sleep(time.Minute)
		w = do(v, "GET", "/p")
		if w.Code != 503 || !strings.Contains(status(w.Header()), "fwd-status=503; detail=error") {
			t.Errorf("past stale-if-error: %d (%s), want the 503", w.Code, status(w.Header()))
		}
		failing = false
		do(v, "GET", "/p")
		if w := do(v, "GET", "/p"); w.Code != 200 || !strings.Contains(status(w.Header()), "hit") {
			t.Errorf("recovered: %d (%s), want the new page stored", w.Code, status(w.Header()))
		}
	})
}

// Age counts the page's seconds in the cache.
func TestAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hc := newCache(t, nil)
		v := hc.Handler(&counting{serve: body})
		if w := do(v, "GET", "/"); w.Header().Get("Age") != "" {
			t.Errorf("a render has Age %q", w.Header().Get("Age"))
		}
		for i := 1; i <= 3; i++ {
			time.Sleep(7 * time.Second)
			if w := do(v, "GET", "/"); w.Header().Get("Age") != fmt.Sprint(7*i) {
				t.Errorf("Age %q, want %d", w.Header().Get("Age"), 7*i)
			}
		}
	})
}
