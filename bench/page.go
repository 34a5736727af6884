package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Page caching: whole responses cached by HTTP middleware, on real
// httptest servers driven by real http.Clients. Each page cache is driven
// through PageCache; one adapter file per library (adapter_page_*.go).

// PageCache is a page-caching middleware set up the way its README shows.
type PageCache interface {
	// Wrap returns h with its GET responses cached.
	Wrap(h http.Handler) http.Handler
	// Purge drops the cached page of path (a path with its query, as a
	// client asks for it), the way the library's user would: its purge
	// API, or what a user can do without one. n is a node serving this
	// cache, for libraries that purge through a request.
	Purge(ctx context.Context, n *node, path string) error
	// Close releases the library's resources (not the Redis server).
	Close() error
}

// PageConfig is what a scenario asks of a page-cache adapter.
type PageConfig struct {
	// TTL is how long a stored page is fresh.
	TTL time.Duration
	// Redis is the address of the Redis server, for the Redis adapters.
	Redis string
}

// A PageLib is one row of the page tables: a page cache in one
// configuration.
type PageLib struct {
	// Name is the row's name, also the lib= value of BenchmarkPageHit.
	Name string
	// Redis reports that the pages are kept in Redis (shared by a fleet).
	Redis bool
	// Peer is false for paddock's own rows.
	Peer bool
	// TCPOnly reports that the library's Redis client takes only
	// host:port, not a unix socket path.
	TCPOnly bool
	// Coalesces reports that concurrent misses of one URL in one process
	// share one render.
	Coalesces bool
	// Module is the Go module measured, with its version.
	Module string
	// Notes says how the library is configured.
	Notes string
	// PurgeHow says how a URL is purged.
	PurgeHow string
	// New builds the adapter.
	New func(cfg PageConfig) (PageCache, error)
}

// pageLibs lists every page adapter, in table order.
var pageLibs []PageLib

func registerPage(l PageLib) { pageLibs = append(pageLibs, l) }

var pageTableOrder = []string{
	"httpcache-mem", "victorspringer-mem", "stampede-mem",
	"httpcache-redis", "victorspringer-redis", "stampede-redis",
}

// orderedPages returns pageLibs in table order.
func orderedPages() []PageLib {
	out := slices.Clone(pageLibs)
	slices.SortStableFunc(out, func(a, b PageLib) int {
		ia, ib := slices.Index(pageTableOrder, a.Name), slices.Index(pageTableOrder, b.Name)
		if ia < 0 {
			ia = len(pageTableOrder)
		}
		if ib < 0 {
			ib = len(pageTableOrder)
		}
		return ia - ib
	})
	return out
}

// lookupPageLib returns the PageLib named name.
func lookupPageLib(name string) (PageLib, error) {
	for _, l := range pageLibs {
		if l.Name == name {
			return l, nil
		}
	}
	return PageLib{}, fmt.Errorf("unknown page lib %q", name)
}

func wherePage(l PageLib) string {
	if l.Redis {
		return "Redis"
	}
	return "in-process"
}

// pageSize is the size of a rendered page.
const pageSize = 4096

// siteHost is the Host every request names, whichever node serves it
// (httpcache's key has the host in it; the peers' keys do not).
const siteHost = "www.example.test"

// pagePrefix is where the cached handler is mounted on a node.
const pagePrefix = "/p/"

// site is the application behind the page caches: a handler that renders
// a page from a "database" version and counts its renders.
type site struct {
	// db is the database row a page shows, shared by the nodes of a
	// fleet in one process.
	db *atomic.Int64
	// renders counts the handler's calls.
	renders atomic.Int64
	// delay is how long a render takes (time.Sleep: a query and a
	// template).
	delay time.Duration
	// hook, if set, runs in every render after it read the version.
	hook atomic.Pointer[func(v int64)]
	// static, if set, is written instead of a rendered page (the raw
	// row: what net/http costs without a render or a cache).
	static []byte
}

func newSite(db *atomic.Int64, delay time.Duration) *site {
	if db == nil {
		db = new(atomic.Int64)
		db.Store(1)
	}
	return &site{db: db, delay: delay}
}

func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.renders.Add(1)
	v := s.db.Load()
	if h := s.hook.Load(); h != nil {
		(*h)(v)
	}
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if s.static != nil {
		w.Write(s.static)
		return
	}
	w.Write(renderPage(v, r.URL.Path))
}

// renderPage returns a fresh page of pageSize bytes that begins with the
// version it shows. A fresh slice each time: one library keeps the slice
// the handler wrote.
func renderPage(v int64, path string) []byte {
	b := make([]byte, 0, pageSize)
	b = fmt.Appendf(b, "<!doctype html><p>version=%d path=%s</p>\n", v, path)
	for len(b) < pageSize {
		b = append(b, 'x')
	}
	return b[:pageSize]
}

// pageVersion reads the version a page shows, or -1.
func pageVersion(body []byte) int64 {
	_, rest, ok := strings.Cut(string(body[:min(len(body), 128)]), "version=")
	if !ok {
		return -1
	}
	end := strings.IndexByte(rest, ' ')
	if end < 0 {
		return -1
	}
	v, err := strconv.ParseInt(rest[:end], 10, 64)
	if err != nil {
		return -1
	}
	return v
}

// node is one server of a page cache: in this process (srv and site set)
// or a child process (only url and client).
type node struct {
	url    string
	client *http.Client
	srv    *httptest.Server
	site   *site
	cache  PageCache
	// entered, if set, is called when a request for a page reaches the
	// node's server, before the page cache sees it.
	entered atomic.Pointer[func(r *http.Request)]
}

// handler returns the node's server handler: the cached site under
// pagePrefix and the bench's own uncached endpoints beside it.
func (n *node) handler(s *site, cached http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(pagePrefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := n.entered.Load(); f != nil {
			(*f)(r)
		}
		cached.ServeHTTP(w, r)
	}))
	mux.HandleFunc("/_bench/ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/_bench/renders", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, s.renders.Load())
	})
	return mux
}

// newClient returns an http.Client whose transport keeps up to conns idle
// connections to a host, so that a warmed pool serves conns concurrent
// requests without dialing.
func newClient(conns int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// startNode builds lib's cache and serves it on a new httptest server in
// this process, with a client for conns concurrent requests. The site
// reads db (a new row if nil) and takes delay per render.
func startNode(lib PageLib, cfg PageConfig, db *atomic.Int64, delay time.Duration, conns int) (*node, error) {
	c, err := lib.New(cfg)
	if err != nil {
		return nil, err
	}
	s := newSite(db, delay)
	n := &node{client: newClient(conns), site: s, cache: c}
	n.srv = httptest.NewServer(n.handler(s, c.Wrap(s)))
	n.url = n.srv.URL
	return n, nil
}

// startRawNode serves a prebuilt page with no cache: the HTTP floor of a
// hit.
func startRawNode(conns int) *node {
	s := newSite(nil, 0)
	s.static = renderPage(1, "/")
	n := &node{client: newClient(conns), site: s}
	n.srv = httptest.NewServer(n.handler(s, s))
	n.url = n.srv.URL
	return n
}

// close stops the server and the cache.
func (n *node) close() {
	if n.srv != nil {
		n.srv.Close()
	}
	n.client.CloseIdleConnections()
	if n.cache != nil {
		n.cache.Close()
	}
}

// renders returns the handler calls the node has made.
func (n *node) renders(ctx context.Context) (int64, error) {
	if n.site != nil {
		return n.site.renders.Load(), nil
	}
	b, _, err := n.get(ctx, "/_bench/renders")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(b), 10, 64)
}

// get fetches path from the node and returns the body read whole.
func (n *node) get(ctx context.Context, path string) ([]byte, *http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.url+path, nil)
	if err != nil {
		return nil, nil, err
	}
	// Every node is the same site behind a load balancer: one Host.
	req.Host = siteHost
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, resp, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, resp, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, resp, nil
}

// getPage fetches a page and returns the version it shows and the
// response's header.
func (n *node) getPage(ctx context.Context, path string) (int64, http.Header, error) {
	b, resp, err := n.get(ctx, path)
	if err != nil {
		return 0, nil, err
	}
	if len(b) != pageSize {
		return 0, resp.Header, fmt.Errorf("GET %s: %d bytes, want %d", path, len(b), pageSize)
	}
	v := pageVersion(b)
	if v < 0 {
		return 0, resp.Header, fmt.Errorf("GET %s: no version in the page", path)
	}
	return v, resp.Header, nil
}

// warmConns opens conns connections to the node (concurrent requests to
// an uncached endpoint) and leaves them idle in its client's pool.
func (n *node) warmConns(ctx context.Context, conns int) error {
	var wg sync.WaitGroup
	errs := make([]error, conns)
	for i := range conns {
		wg.Go(func() { _, _, errs[i] = n.get(ctx, "/_bench/ping") })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// usablePage reports whether lib can run here; a Redis lib without Redis
// cannot, nor one of the libraries whose clients take only host:port with
// a unix socket.
func (e *env) usablePage(lib PageLib) bool {
	switch {
	case !lib.Redis:
		return true
	case e.redis == "":
		return false
	}
	return !lib.TCPOnly || !strings.HasPrefix(e.redis, "/")
}

// pageConfig returns the config of a page scenario, with the Redis address.
func (e *env) pageConfig(ttl time.Duration) PageConfig {
	return PageConfig{TTL: ttl, Redis: e.redis}
}

// pagePath returns a path unique to this run, scenario and round.
func (e *env) pagePath(lib string, parts ...any) string {
	var b strings.Builder
	b.WriteString(pagePrefix)
	b.WriteString(e.run)
	b.WriteString("/")
	b.WriteString(lib)
	for _, p := range parts {
		fmt.Fprintf(&b, "/%v", p)
	}
	return b.String()
}

// rotate returns libs rotated by round, so that no library always runs
// first (or right after the same one) in interleaved rounds.
func rotate[T any](xs []T, round int) []T {
	if len(xs) == 0 {
		return nil
	}
	k := round % len(xs)
	return append(slices.Clone(xs[k:]), xs[:k]...)
}
