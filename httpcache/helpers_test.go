package httpcache_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/httpcache"
	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/store"
)

var ctx = context.Background()

// backend, if set, makes the store of newPaddock(t, nil), and
// backendOptions are then the paddock Cache's options: TestOnRedis runs the
// suite again with Redis.
var (
	backend        func(t testing.TB) store.Store
	backendOptions []paddock.Option
)

// newPaddock returns a paddock Cache on s (a new memstore if nil, or
// backend's store), closed when the test ends.
func newPaddock(t testing.TB, s store.Store) *paddock.Cache {
	t.Helper()
	if s == nil && backend != nil {
		s = backend(t)
		t.Cleanup(func() { s.Close() })
	}
	if s == nil {
		m, err := memstore.New()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		s = m
	}
	var opts []paddock.Option
	if backend != nil {
		opts = backendOptions
	}
	c, err := paddock.New(s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newCache(t testing.TB, c *paddock.Cache, opts ...httpcache.Option) *httpcache.Cache {
	t.Helper()
	if c == nil {
		c = newPaddock(t, nil)
	}
	hc, err := httpcache.New(c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

// counting is a handler that counts its calls and serves what serve
// writes.
type counting struct {
	n     atomic.Int64
	serve func(n int64, w http.ResponseWriter, r *http.Request)
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := c.n.Add(1)
	c.serve(n, w, r)
}

func body(n int64, w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "render "+itoa(n)+" of "+r.URL.RequestURI())
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// do serves one request with h, in process.
func do(h http.Handler, method, target string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// server serves h on a real listener, closed when the test ends, and
// returns its URL and a client.
func server(t testing.TB, h http.Handler) (string, *http.Client) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // panics are tested
	srv.Start()
	t.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 2000, MaxConnsPerHost: 0}
	t.Cleanup(tr.CloseIdleConnections)
	return srv.URL, &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// get fetches url with client and returns the response with its body read.
func get(t testing.TB, client *http.Client, method, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := client.Do(req)
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
