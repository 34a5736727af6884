package httpcache

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/hooks"
)

// A Cache caches whole responses of the handlers it wraps, as [Page]s in
// a [paddock.Loader]. It is safe for concurrent use.
type Cache struct {
	c     *paddock.Cache
	pages *paddock.Loader[Page]
	ns    string
	cfg   config
	hints hints
	urls  *urlIndex
	stats *statsTable

	mu    sync.Mutex
	rules map[string]queryRule // the query rules of the Cache's views, by id
}

// New returns a page cache on c, with the pages in the namespace
// [DefaultNamespace] (see [Namespace]). The options are the defaults of
// every view; see [Option].
func New(c *paddock.Cache, opts ...Option) (*Cache, error) {
	if c == nil {
		return nil, invalid("New: nil paddock.Cache")
	}
	cfg := defaultConfig()
	if err := apply(&cfg, opts); err != nil {
		return nil, err
	}
	pages, err := paddock.NewLoader[Page](c, cfg.namespace, paddock.WithCodec(pageCodec{}),
		// A render streams to its request's ResponseWriter: it cannot be
		// run again, on its own, once the request is served.
		paddock.NoAudit())
	if err != nil {
		return nil, err
	}
	hc := &Cache{
		c: c, pages: pages, ns: cfg.namespace, cfg: cfg,
		hints: hints{m: make(map[string][]string), max: cfg.maxURLs},
		urls:  newURLIndex(cfg.maxURLs),
		stats: newStatsTable(cfg.maxStatsRows),
		rules: map[string]queryRule{cfg.query.id(): cfg.query},
	}
	hc.cfg.newOnly = nil
	return hc, nil
}

// Loader returns the Loader the pages are stored with.
func (c *Cache) Loader() *paddock.Loader[Page] { return c.pages }

// Handler returns h with its GET and HEAD responses cached: Django's
// cache_page. The options apply to this view on top of the Cache's. It
// panics if an option is invalid or one of New's, as [http.ServeMux.Handle]
// does for a bad pattern: the error is in the program, not in a request.
func (c *Cache) Handler(h http.Handler, opts ...Option) http.Handler {
	if h == nil {
		panic("httpcache: Handler(nil)")
	}
	cfg := c.cfg.clone()
	if err := apply(&cfg, opts); err != nil {
		panic(err.Error())
	}
	if len(cfg.newOnly) > 0 {
		panic(fmt.Sprintf("httpcache: %s is an option of New, not of a view", strings.Join(cfg.newOnly, ", ")))
	}
	c.mu.Lock()
	c.rules[cfg.query.id()] = cfg.query
	c.mu.Unlock()
	return &handler{
		c: c, next: h, cfg: cfg,
		stream: cfg.postProcess == nil && cfg.postProcessAlways == nil,
		opts: []paddock.GetOption{
			paddock.TTL(cfg.ttl), paddock.Stale(cfg.stale), paddock.StaleIfError(cfg.staleIfError),
			paddock.LoadTimeout(cfg.loadTimeout),
		},
	}
}

// Middleware returns a middleware that caches the responses of the
// handler it wraps, as [Cache.Handler] does: Django's CacheMiddleware, for
// net/http, chi, or any router that takes a func(http.Handler)
// http.Handler.
func (c *Cache) Middleware(opts ...Option) func(http.Handler) http.Handler {
	// Check the options now, so that a bad one fails where it is given.
	cfg := c.cfg.clone()
	if err := apply(&cfg, opts); err != nil {
		panic(err.Error())
	}
	return func(h http.Handler) http.Handler { return c.Handler(h, opts...) }
}

// handler is one view.
type handler struct {
	c      *Cache
	next   http.Handler
	cfg    config
	stream bool // nothing needs a whole body before it is sent
	opts   []paddock.GetOption
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	label := h.c.stats.label(r)
	keyed, why := h.cfg.bypass(r)
	if why != ReasonNone {
		h.pass(w, r, label, why, "")
		return
	}
	q, err := h.cfg.query.canonical(r.URL.RawQuery)
	if err != nil {
		h.pass(w, r, label, ReasonBadQuery, "")
		return
	}
	p := r.URL.EscapedPath()
	u := pageURL(p, q)
	base := baseKey(r, u, keyed)
	names := union(h.cfg.vary, h.c.hints.get(base))
	varyMiss := false
	for attempt := 0; ; attempt++ {
		cl := &call{h: h, w: w, r: r, label: label, path: p, url: u, base: base, names: names}
		key := variantKey(base, names, r.Header)
		res, err := h.c.pages.Fetch(r.Context(), key, cl.load, h.opts...)
		if cl.finished(key, res, err) {
			h.c.stats.add(label, cl.outcome, cl.why, false)
			return
		}
		if err == nil && res.Status != paddock.StatusLoaded {
			// A page rendered for another request: it is this one's only
			// if the request agrees on every header it varies on.
			pg := &res.Value
			if extra := notIn(pg.vary, names); len(extra) > 0 {
				h.c.hints.learn(base, notIn(pg.vary, h.cfg.vary))
				if !pg.matches(r.Header) && !hooks.PageIgnoresVary.Load() {
					names, varyMiss = union(names, extra), true
					if attempt < 2 {
						continue
					}
					// The URL's variants keep changing: render this one
					// uncached.
					h.pass(w, r, label, ReasonNone, "paddock; fwd=vary-miss; detail=uncached")
					return
				}
			}
		}
		cl.varyMiss = varyMiss
		cl.respond(key, res, err)
		h.c.stats.add(label, cl.outcome, cl.why, cl.notModified)
		return
	}
}

// pass serves r with the handler, uncached, because of why (a request
// the cache refuses) or, with ReasonNone, as cacheStatus says.
func (h *handler) pass(w http.ResponseWriter, r *http.Request, label string, why Reason, cacheStatus string) {
	if why != ReasonNone {
		cacheStatus = "paddock; fwd=bypass; detail=" + why.String()
	}
	w.Header().Add("Cache-Status", cacheStatus)
	h.c.stats.add(label, outcomeBypass, why, false)
	h.next.ServeHTTP(w, r)
}

// call is one request's Fetch of one key: what its render, if it runs one,
// may do to the client's ResponseWriter.
//
// A render runs on a goroutine of the paddock Cache, not the request's,
// while the request waits in Fetch. It may write to the client's
// ResponseWriter only while the request is known to wait for it: a render
// claims the client (claim) before its first write, and only while Fetch
// has not returned. Picture the race it closes:
//
//	R: Fetch finds a stale page and starts a refresh render F
//	F: the handler writes its header
//	R: Fetch returns the stale page; R writes it
//
// Unclaimed, F would write to a ResponseWriter R is writing to, or that
// net/http has recycled after R returned. Claimed, either F claimed first
// and R waits for F to finish (the client gets the new page), or R marked
// the call returned first and F writes only to its capture.
type call struct {
	h     *handler
	w     http.ResponseWriter
	r     *http.Request
	label string // the request's stats row
	path  string
	url   string
	base  string   // the key without Vary
	names []string // the Vary names in the key

	mu        sync.Mutex
	returned  bool          // Fetch returned: no render may claim the client
	streaming bool          // a render claimed the client
	detached  bool          // the client went away: a render writes no more
	hijacked  bool          // a render took the client's connection
	done      chan struct{} // made on claim, closed when that render ends
	ran       bool          // a render ran for this call
	rwhy      Reason        // why the render's response is not stored
	zero      bool          // the render's windows were all zero

	// Set by the request's goroutine alone.
	why         Reason // why the response was not stored, for the stats
	varyMiss    bool
	outcome     outcome
	notModified bool
}

// claim gives the render the client, if the request still waits for it.
func (cl *call) claim() bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.returned || cl.streaming {
		return false
	}
	cl.streaming, cl.done = true, make(chan struct{})
	return true
}

// send runs f on the client's ResponseWriter, unless the client is gone.
func (cl *call) send(f func(http.ResponseWriter)) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if !cl.detached {
		f(cl.w)
	}
}

func (cl *call) hijack() (net.Conn, *bufio.ReadWriter, error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	hj, ok := cl.w.(http.Hijacker)
	if !ok || cl.detached {
		return nil, nil, http.ErrNotSupported
	}
	conn, rw, err := hj.Hijack()
	if err == nil {
		cl.hijacked = true
	}
	return conn, rw, err
}

// conditional are the request fields a render does not see: the cache
// answers them from the page.
var conditional = []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range"}

// load renders the page: the handler runs on the load's context, so that
// what it tags and the cached Gets it makes become the page's.
func (cl *call) load(ctx context.Context) (Page, error) {
	h := cl.h
	r := cl.r.Clone(ctx)
	r.Method = http.MethodGet // a HEAD fills the GET page
	r.Body, r.GetBody, r.ContentLength = http.NoBody, nil, 0
	for _, f := range conditional {
		r.Header.Del(f)
	}
	// A refresh runs while this request is served the old page: it never
	// writes to the client.
	refresh := paddock.Refreshing(ctx)
	cw := &capture{c: cl, ctx: ctx, header: make(http.Header), refresh: refresh,
		stream: h.stream && cl.r.Method == http.MethodGet && !refresh}
	defer func() {
		cl.mu.Lock()
		cl.ran = true
		if cw.streaming && cl.done != nil {
			close(cl.done)
		}
		cl.mu.Unlock()
	}()
	h.next.ServeHTTP(cw, r)
	if !cw.wrote && !cw.hijacked {
		cw.WriteHeader(http.StatusOK)
	}
	why := cw.why
	pg := Page{Status: cw.status, Header: storedHeader(cw.header), Body: cw.body, url: cl.url}
	if cw.hijacked || cw.dropped {
		pg.Body = nil
	}
	names, _ := parseVary(pg.Header)
	pg.vary = union(names, h.cfg.vary)
	pg.varyValues = make([]string, len(pg.vary))
	for i, n := range pg.vary {
		pg.varyValues[i] = headerValue(cl.r.Header, n)
	}
	if len(notIn(pg.vary, cl.names)) > 0 {
		// The key lacked some of the headers the page varies on: the next
		// request of the URL looks up its own variant.
		h.c.hints.learn(cl.base, notIn(pg.vary, h.cfg.vary))
	}
	if pg.Status == http.StatusOK && pg.Header.Get("ETag") == "" && !cw.dropped {
		pg.Header.Set("ETag", etagOf(pg.Body))
	}
	if h.cfg.postProcess != nil && !cw.flushed && !cw.hijacked {
		h.cfg.postProcess(r, &pg)
	}
	zero := h.windows(ctx, &pg)
	paddock.Tag(ctx, h.c.pageTags(cl.path, cl.url)...)
	cl.mu.Lock()
	cl.rwhy, cl.zero = why, zero
	cl.mu.Unlock()
	switch {
	case pg.Status >= 500:
		if why.private() {
			private(ctx)
		}
		return Page{}, &renderError{page: pg, private: why.private()}
	case why.private():
		private(ctx)
	case why != ReasonNone:
		paddock.NoStore(ctx)
	}
	return pg, nil
}

// kept are a response's windows: the view's, replaced by what its
// Cache-Control (or Expires) says; set says which were replaced.
type kept struct {
	ttl, stale, staleIfError          time.Duration
	setTTL, setStale, setStaleIfError bool
}

// zero reports whether a page kept so is never served: it is not stored.
func (k *kept) zero() bool { return k.ttl == 0 && k.stale == 0 && k.staleIfError == 0 }

// keptFor returns the windows of a response with header hdr.
func (cfg *config) keptFor(hdr http.Header) kept {
	d := parseCacheControl(hdr)
	k := kept{ttl: cfg.ttl, stale: cfg.stale, staleIfError: cfg.staleIfError}
	switch {
	case d.hasSMaxAge:
		k.ttl, k.setTTL = d.sMaxAge, true
	case d.hasMaxAge:
		k.ttl, k.setTTL = d.maxAge, true
	default:
		if e, ok := expires(hdr, time.Now()); ok {
			k.ttl, k.setTTL = e, true
		}
	}
	if d.hasSWR {
		k.stale, k.setStale = d.swr, true
	}
	if d.hasSIE {
		k.staleIfError, k.setStaleIfError = d.sie, true
	}
	if d.mustRevalidate {
		k.stale, k.staleIfError, k.setStale, k.setStaleIfError = 0, 0, true, true
	}
	return k
}

// private keeps the page being rendered from every request but the one
// that rendered it (see paddock.Private).
func private(ctx context.Context) {
	if hooks.PageSharesPrivate.Load() {
		paddock.NoStore(ctx)
		return
	}
	paddock.Private(ctx)
}

// windows sets the page's windows from its Cache-Control (or Expires), and
// reports whether they are all zero: the page is not stored.
func (h *handler) windows(ctx context.Context, pg *Page) (zero bool) {
	k := h.cfg.keptFor(pg.Header)
	if k.setTTL {
		paddock.SetTTL(ctx, k.ttl)
	}
	if k.setStale {
		paddock.SetStale(ctx, k.stale)
	}
	if k.setStaleIfError {
		paddock.SetStaleIfError(ctx, k.staleIfError)
	}
	return k.zero()
}

// renderError is a render that failed with a 5xx status: a stale-if-error
// page may stand in for it.
type renderError struct {
	page    Page
	private bool
}

func (e *renderError) Error() string {
	return "httpcache: render failed with status " + strconv.Itoa(e.page.Status)
}

// finished settles the request if a render streamed to it or took its
// connection, and reports whether it did. Either way no render may claim
// the client afterwards.
func (cl *call) finished(key string, res paddock.Result[Page], err error) bool {
	cl.mu.Lock()
	cl.returned = true
	streaming, hijacked, done := cl.streaming, cl.hijacked, cl.done
	cl.mu.Unlock()
	if !streaming {
		return false
	}
	cl.outcome = outcomeMiss
	if hijacked {
		cl.why = ReasonHijacked
		return true
	}
	if res.Status == paddock.StatusLoaded && err == nil {
		// The render that streamed is this call's: it is over. Whether
		// its page was stored is known now, as in respond.
		cl.why = cl.notStored(res)
		if res.Stored {
			cl.h.c.urls.add(cl.url, key)
		}
		return true
	}
	// This call's own render streamed, and failed (a stale-if-error page
	// or an error stands in for it): wait for it to end; the client has
	// its bytes. (A refresh never streams: see Refreshing.)
	defer func() {
		cl.mu.Lock()
		cl.why = cl.rwhy
		cl.mu.Unlock()
	}()
	select {
	case <-done:
	case <-cl.r.Context().Done():
		cl.mu.Lock()
		cl.detached = true
		cl.mu.Unlock()
		return true
	}
	var pe *paddock.PanicError
	if errors.As(err, &pe) || errors.As(res.LoadErr, &pe) {
		// The handler panicked mid-stream: end the connection, as net/http
		// does for a handler that panics.
		panic(http.ErrAbortHandler)
	}
	return true
}

// respond writes Fetch's answer to the client.
func (cl *call) respond(key string, res paddock.Result[Page], err error) {
	h, w, r := cl.h, cl.w, cl.r
	var (
		re *renderError
		pe *paddock.PanicError
	)
	switch {
	case err == nil:
	case errors.As(err, &re):
		if re.private && !cl.ran {
			// Another request's failed render, made for it alone.
			h.pass(w, r, cl.label, ReasonNone, "paddock; fwd=miss; detail=uncached")
			cl.outcome = outcomeNone
			return
		}
		cl.outcome, cl.why = outcomeMiss, ReasonError
		if !cl.ran {
			cl.outcome = outcomeCoalesced
		}
		cl.write(&re.page, cl.missStatus(re.page.Status, false, ReasonError), 0, false)
		return
	case errors.As(err, &pe):
		cl.outcome, cl.why = outcomeMiss, ReasonError
		if cl.ran && pe.Value != http.ErrAbortHandler {
			panic(pe)
		}
		panic(http.ErrAbortHandler)
	case r.Context().Err() != nil:
		cl.outcome = outcomeNone // the client is gone
		return
	default:
		// The cache could not serve (closed): serve uncached.
		h.pass(w, r, cl.label, ReasonNone, "paddock; fwd=bypass; detail=unavailable")
		cl.outcome = outcomeNone
		return
	}
	pg := &res.Value
	switch res.Status {
	case paddock.StatusHit:
		cl.outcome = outcomeHit
		cl.write(pg, "paddock; hit; ttl="+secs(res.TTL), res.Age, true)
	case paddock.StatusStale:
		cl.outcome = outcomeStale
		cl.write(pg, "paddock; hit; ttl="+secs(res.TTL)+"; detail=stale", res.Age, true)
	case paddock.StatusStaleIfError:
		cl.outcome = outcomeStale
		status := http.StatusInternalServerError
		if errors.As(res.LoadErr, &re) {
			status = re.page.Status
		}
		cl.write(pg, "paddock; fwd=stale; fwd-status="+strconv.Itoa(status)+"; ttl="+secs(res.TTL)+"; detail=stale-if-error", res.Age, true)
	default:
		cl.outcome = outcomeMiss
		coalesced := res.Status == paddock.StatusCoalesced
		if coalesced {
			cl.outcome = outcomeCoalesced
		}
		why := cl.notStored(res)
		cl.why = why
		if res.Stored {
			h.c.urls.add(cl.url, key)
		}
		cl.write(pg, cl.missStatus(pg.Status, coalesced, why), 0, false)
	}
	if cl.outcome == outcomeHit || cl.outcome == outcomeStale {
		h.c.urls.seen(cl.url, key)
	}
}

// notStored says why the render's page was not stored (ReasonNone: it
// was).
func (cl *call) notStored(res paddock.Result[Page]) Reason {
	if res.Stored {
		return ReasonNone
	}
	cl.mu.Lock()
	why, zero := cl.rwhy, cl.zero
	cl.mu.Unlock()
	switch {
	case res.Status == paddock.StatusCoalesced:
		// The render was another request's: its reasons are its own.
		if res.FillErr != nil {
			return fillReason(res.FillErr)
		}
		return ReasonNone
	case why != ReasonNone:
		return why
	case res.FillErr != nil:
		return fillReason(res.FillErr)
	case zero:
		return ReasonExpired
	}
	return ReasonFenced
}

func fillReason(err error) Reason {
	if errors.Is(err, paddock.ErrTooLarge) {
		return ReasonTooLarge
	}
	return ReasonStoreFailed
}

// missStatus is the Cache-Status of a rendered response.
func (cl *call) missStatus(status int, coalesced bool, why Reason) string {
	fwd := "miss"
	if cl.varyMiss {
		fwd = "vary-miss"
	}
	s := "paddock; fwd=" + fwd + "; fwd-status=" + strconv.Itoa(status)
	if coalesced {
		s += "; collapsed"
	}
	if why == ReasonNone {
		if coalesced {
			return s
		}
		return s + "; stored"
	}
	return s + "; detail=" + why.String()
}

// write sends the page, or a 304 if the request's validators match it.
func (cl *call) write(pg *Page, cacheStatus string, age time.Duration, cached bool) {
	w, r, cfg := cl.w, cl.r, &cl.h.cfg
	if cfg.postProcessAlways != nil {
		pg = pg.clone()
		cfg.postProcessAlways(w, r, pg)
	}
	hdr := w.Header()
	for k, v := range pg.Header {
		// The page may be the Loader's hot copy, shared by every request:
		// a middleware that edits the header in place edits its own.
		hdr[k] = slices.Clone(v)
	}
	if cached {
		hdr.Set("Age", strconv.FormatInt(int64(max(age, 0)/time.Second), 10))
	}
	hdr.Add("Cache-Status", cacheStatus)
	if pg.Status == http.StatusOK && notModified(r, hdr) {
		for _, f := range []string{"Content-Type", "Content-Length", "Content-Encoding"} {
			hdr.Del(f)
		}
		if cl.outcome == outcomeHit || cl.outcome == outcomeStale {
			cl.notModified = true
		}
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if bodyAllowed(pg.Status) {
		hdr.Set("Content-Length", strconv.Itoa(len(pg.Body)))
	}
	w.WriteHeader(pg.Status)
	if r.Method != http.MethodHead && bodyAllowed(pg.Status) {
		w.Write(pg.Body)
	}
}

// secs formats d in whole seconds, rounded toward zero.
func secs(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }

// notIn returns the names of a that are not in b (both sorted).
func notIn(a, b []string) []string {
	var out []string
	for _, n := range a {
		if !slices.Contains(b, n) {
			out = append(out, n)
		}
	}
	return out
}

// matches reports whether a request with header h agrees with the one the
// page was rendered for on every header the page varies on.
func (p *Page) matches(h http.Header) bool {
	for i, n := range p.vary {
		if headerValue(h, n) != p.varyValues[i] {
			return false
		}
	}
	return true
}

// hints remembers, per base key, the request headers its pages vary on
// beyond the view's VaryHeaders, so that a request looks up its own
// variant at once. A hint only saves lookups: a page is served only to a
// request that agrees with it on every header it varies on.
type hints struct {
	mu  sync.RWMutex
	m   map[string][]string
	max int
}

func (hs *hints) get(base string) []string {
	hs.mu.RLock()
	defer hs.mu.RUnlock()
	return hs.m[base]
}

func (hs *hints) learn(base string, names []string) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if len(names) == 0 {
		delete(hs.m, base)
		return
	}
	if len(hs.m) >= hs.max {
		forgetSome(hs.m, hs.max)
	}
	hs.m[base] = names
}

// forgetSome deletes about an eighth of m's max entries, arbitrarily: the
// bound of a map of hints or records whose loss costs only a lookup.
func forgetSome[V any](m map[string]V, max int) {
	n := 0
	for k := range m {
		delete(m, k)
		if n++; n >= max/8+1 {
			return
		}
	}
}
