package httpcache_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/httpcache"
	"github.com/paddockcache/paddock/memstore"
)

// newStreamCache returns a page cache on a new memstore.
func newStreamCache(t *testing.T) *httpcache.Cache {
	t.Helper()
	m, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	pc, err := paddock.New(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	hc, err := httpcache.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

func routeStats(hc *httpcache.Cache, route string) httpcache.RouteStats {
	for _, st := range hc.Stats() {
		if st.Route == route {
			return st
		}
	}
	return httpcache.RouteStats{}
}

// TestStreamedRenderFenced: a render streamed to the client whose request
// ran it, and whose fill a purge refused, counts as a miss not stored,
// for the reason "fenced".
func TestStreamedRenderFenced(t *testing.T) {
	hc := newStreamCache(t)
	reading, goOn := make(chan struct{}), make(chan struct{})
	v := hc.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(reading)
		<-goOn
		io.WriteString(w, "old")
	}))
	done := make(chan *httptest.ResponseRecorder)
	go func() {
		w := httptest.NewRecorder()
		v.ServeHTTP(w, httptest.NewRequest("GET", "/a", nil))
		done <- w
	}()
	<-reading
	if err := hc.PurgeURL(t.Context(), "/a"); err != nil {
		t.Fatal(err)
	}
	close(goOn)
	if w := <-done; w.Body.String() != "old" {
		t.Fatalf("the rendering request got %q", w.Body)
	}
	st := routeStats(hc, "/a")
	if st.Misses != 1 || st.Stored != 0 || st.Reasons["fenced"] != 1 {
		t.Errorf("stats: %+v; want 1 miss, not stored, fenced", st)
	}
}

// TestStreamedRenderListed: a page streamed to the client whose request
// rendered it, and stored, is listed by URLs.
func TestStreamedRenderListed(t *testing.T) {
	hc := newStreamCache(t)
	v := hc.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "page")
	}))
	w := httptest.NewRecorder()
	v.ServeHTTP(w, httptest.NewRequest("GET", "/a?x=1", nil))
	if got := w.Header().Values("Cache-Status"); !slices.Equal(got, []string{"paddock; fwd=miss; fwd-status=200"}) {
		t.Fatalf("Cache-Status %q: the render was not streamed", got)
	}
	urls, err := hc.URLs(t.Context(), "/")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(urls, []string{"/a?x=1"}) {
		t.Errorf("URLs = %q, want [/a?x=1]", urls)
	}
	if st := routeStats(hc, "/a"); st.Misses != 1 || st.Stored != 1 {
		t.Errorf("stats: %+v; want 1 miss, stored", st)
	}
}
