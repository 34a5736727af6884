package httpcache_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// discard is a ResponseWriter that keeps nothing but its header, reset
// by each request.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkServe measures a request in process, without a network: a
// stored 4 KiB page, and a handler with no cache as the floor.
func BenchmarkServe(b *testing.B) {
	page := strings.Repeat("x", 4096)
	plain := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=600")
		w.Write([]byte(page))
	})
	hc := newCache(b, nil)
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"handler=plain", plain}, {"handler=cached", hc.Handler(plain)}} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "/articles/?page=2&sort=new", nil)
			w := &discard{h: http.Header{}}
			bc.h.ServeHTTP(w, r)
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				bc.h.ServeHTTP(w, r)
			}
		})
	}
}
