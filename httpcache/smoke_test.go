package httpcache_test

import (
	"net/http"
	"testing"
)

func TestSmoke(t *testing.T) {
	hc := newCache(t, nil)
	h := &counting{serve: body}
	v := hc.Handler(h)
	for i := range 3 {
		w := do(v, "GET", "/a?x=1")
		t.Logf("%d: %d %q %v", i, w.Code, w.Body.String(), w.Header())
	}
	w := do(v, "HEAD", "/a?x=1")
	t.Logf("HEAD: %d %q %v", w.Code, w.Body.String(), w.Header())
	w = do(v, "GET", "/a?x=1", "If-None-Match", w.Header().Get("ETag"))
	t.Logf("INM: %d %q %v", w.Code, w.Body.String(), w.Header())
	if h.n.Load() != 1 {
		t.Errorf("renders %d", h.n.Load())
	}
	_ = http.StatusOK
	hc.WriteStats(tWriter{t})
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
