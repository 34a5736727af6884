package proptest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/httpcache"
	"github.com/paddockcache/paddock/store"
)

// The page machine: httpcache's guarantees, checked the way the core's
// are. Two or three processes (a paddock Cache and an httpcache.Cache
// each) share one store and serve one site in process (ServeHTTP into
// httptest recorders). Every render blocks on a channel twice, before it
// reads its row and before it writes its response, and rapid releases the
// renders one step at a time, so that requests, writes of the "database",
// purges, soft purges, changes of the pages' Vary and the passing of time
// land between a render's read and its fill. A render writes into its
// response what it saw (its own id, the request it was made for, the row
// version it read, the request's values of the headers pages vary on) and
// sometimes sets a cookie; the invariants (P1 to P4) judge each response
// by that against the model's record of purges and renders.
//
// TestPagesMemstore and TestPagesRedis run it; the can-fail table
// (canfail_test.go) switches off httpcache's Vary and private checks and
// the core's fence, late tags and dependencies in turn.

// TestPagesMemstore runs the page machine on memstore, several processes
// sharing one in-process store, on the Remote lookup path in half the
// checks.
func TestPagesMemstore(t *testing.T) { runPages(t, memstoreBackend, 500) }

// TestPagesRedis runs the page machine on redisstore over a real,
// standalone redis-server, whose clock follows the bubble's as in
// TestRedis. (The backend's own number of checks is the core machine's.)
func TestPagesRedis(t *testing.T) { runPages(t, redisBackend(standalone, 0), 80) }

// The site. Each URL shows one row. The pages under /p/ read their row
// from the database and name the row's tag with paddock.Tag; the page
// under /d/ reads it through the row Loader with the render's context, so
// that it depends on the row's key and on the tag the row's entry carries,
// and the view varies on X-Theme (VaryHeaders) besides what the handler
// names in Vary.
var (
	pageURLs = []string{"/p/a", "/p/b", "/d/a"}
	pageRows = []string{"a", "b"}
	// pagePrefixes are the prefixes purged with PurgePrefix and
	// MarkStalePrefix.
	pagePrefixes = []string{"/", "/p/", "/p/a", "/d"}
)

// The request headers the pages vary on, the values requests send
// (empty: none), and the Vary sets the handler may send.
const (
	hdrLang  = "Accept-Language"
	hdrTheme = "X-Theme"
	// hdrReq carries the id of each request to the render made for it.
	hdrReq = "X-Req"
	// hdrPage is the response header in which a render writes what it saw
	// (a HEAD response has no body).
	hdrPage = "X-Page"
	rowsNS  = "rows"
)

var (
	langs    = []string{"", "en", "fr"}
	themes   = []string{"", "dark"}
	varySets = [][]string{nil, {hdrLang}, {hdrLang, hdrTheme}, {hdrTheme}}
)

func pageRow(u string) string { return u[strings.LastIndexByte(u, '/')+1:] }

// pageDep reports whether URL u reads its row through the row Loader.
func pageDep(u string) bool { return strings.HasPrefix(u, "/d/") }

func rowTag(row string) string { return paddock.ModelTag("row", row) }

// urlsOf returns the URLs that show row.
func urlsOf(row string) []string {
	var us []string
	for _, u := range pageURLs {
		if pageRow(u) == row {
			us = append(us, u)
		}
	}
	return us
}

// A pageNode is one process serving the site.
type pageNode struct {
	id      int
	cache   *paddock.Cache
	rows    *paddock.Loader[string]
	pages   *httpcache.Cache
	handler http.Handler
}

// renderState is where a render stands.
type renderState uint8

const (
	renderBegun renderState = iota // called, has not read its row
	renderRead                     // read its row, has not written
	renderDone                     // wrote its response and returned
)

func (s renderState) String() string { return [...]string{"begun", "read", "done"}[s] }

// A pageRender is one call of the site's handler: in a page load, a
// background refresh, or uncached (a request that bypassed the cache).
type pageRender struct {
	id      int
	node    *pageNode
	url     string
	req     int  // the request it was made for (the X-Req it saw)
	refresh bool // a background refresh: no request waits for it
	lang    string
	theme   string

	begin    int // the step at which the handler was called
	state    renderState
	waiting  bool // blocked in await, for the machine's word
	ver      int  // the row version it read
	cookie   bool // it set a cookie
	finish   int  // the step at which it wrote its response
	finishAt time.Time

	cmds chan pageCmd
}

func (rd *pageRender) String() string {
	return fmt.Sprintf("render %d (%s on node %d for request %d, began step %d, read v%d, %v)",
		rd.id, rd.url, rd.node.id, rd.req, rd.begin, rd.ver, rd.state)
}

// pageCmd tells a blocked render to go on: to read its row, or to write
// its response (with a cookie or not). dead: the check is over.
type pageCmd struct {
	cookie bool
	dead   bool
}

// A pageReq is one request and the response it got.
type pageReq struct {
	id      int
	node    *pageNode
	url     string
	method  string
	lang    string
	theme   string
	start   int
	startAt time.Time

	done   bool
	end    int
	code   int
	header http.Header
	body   string
}

func (q *pageReq) String() string {
	return fmt.Sprintf("request %d (%s %s on node %d, %s=%q %s=%q, started step %d)",
		q.id, q.method, q.url, q.node.id, hdrLang, q.lang, hdrTheme, q.theme, q.start)
}

// A pagePurge is a purge (after a write of a row, or not): by URL, by
// prefix, by a row's tag, or by a row's key (the dependency), hard or
// soft.
type pagePurge struct {
	step int
	kind string // "url", "prefix", "tag", "dep"
	arg  string // the URL, prefix or row
	soft bool
	ok   bool
	node *pageNode
	// vers are the rows' versions when it returned: the writes it follows.
	vers map[string]int
}

func (p *pagePurge) String() string {
	kind := "purge"
	if p.soft {
		kind = "soft purge"
	}
	return fmt.Sprintf("%s by %s %s at step %d", kind, p.kind, p.arg, p.step)
}

// covers reports whether p drops (or marks stale) the pages of URL u.
func (p *pagePurge) covers(u string) bool {
	switch p.kind {
	case "url":
		return p.arg == u
	case "prefix":
		if strings.HasSuffix(p.arg, "/") {
			return strings.HasPrefix(u, p.arg)
		}
		return u == p.arg || strings.HasPrefix(u, p.arg+"/")
	case "tag":
		return pageRow(u) == p.arg
	case "dep":
		return pageDep(u) && pageRow(u) == p.arg
	}
	return false
}

// coversData reports whether p also reaches what a render of u reads
// its row from: the database itself (a /p/ page), or the row's entry (a
// /d/ page, which a purge by URL or prefix leaves).
func (p *pagePurge) coversData(u string) bool {
	if !p.covers(u) {
		return false
	}
	return !pageDep(u) || p.kind == "tag" || p.kind == "dep"
}

// pageMachine is the state machine. Its exported methods of type
// func(*rapid.T) are the actions; Check reports the invariants.
type pageMachine struct {
	t     *rapid.T
	env   *env
	tally *tally
	start time.Time
	// dead is closed at teardown: every render still blocked goes on.
	dead chan struct{}

	mu         sync.Mutex // guards everything below; renders and requests report under it
	step       int
	db         map[string]int
	nodes      []*pageNode
	vary       map[string][]string // the Vary each URL's handler sends now
	reqs       []*pageReq
	reqByID    map[int]*pageReq
	last       *pageReq
	renders    map[int]*pageRender
	purges     []*pagePurge
	nextID     int
	closing    bool
	violations []string
	history    []string
}

// runPages runs the page machine on the store of b, each check in its
// own synctest bubble: checks checks, unless the run names its own
// number.
func runPages(t *testing.T, b backend, checks int) {
	t.Helper()
	open := b.setup(t)
	tl := new(tally)
	defer func() { t.Logf("what the checks did:%v", tl) }()
	withChecks(checks, func() {
		rapid.Check(t, func(rt *rapid.T) {
			rapid.SyncTest(rt, func(rt *rapid.T) {
				m := newPageMachine(rt, open(rt))
				m.tally = tl
				defer m.teardown(rt)
				rt.Repeat(pageActions(m))
			})
		})
	})
}

// pageWeights makes rapid draw some actions more often than others.
var pageWeights = map[string]int{"Request": 5, "Release": 5, "Purge": 2}

func pageActions(m *pageMachine) map[string]func(*rapid.T) {
	acts := rapid.StateMachineActions(m)
	for name, w := range pageWeights {
		for i := 2; i <= w; i++ {
			acts[fmt.Sprintf("%s%d", name, i)] = acts[name]
		}
	}
	return acts
}

// remoteView makes a local store take the Remote path: the processes'
// concurrent lookups of a key are shared, as on Redis.
type remoteView struct{ store.Store }

func (remoteView) Remote() bool { return true }

func newPageMachine(t *rapid.T, e *env) *pageMachine {
	m := &pageMachine{
		t: t, env: e, dead: make(chan struct{}), start: time.Now(),
		db: make(map[string]int), vary: make(map[string][]string), renders: make(map[int]*pageRender),
		reqByID: make(map[int]*pageReq),
	}
	for _, r := range pageRows {
		m.db[r] = 1
	}
	for _, u := range pageURLs {
		m.vary[u] = rapid.SampledFrom(varySets).Draw(t, "vary "+u)
	}
	var s store.Store = e.store
	remote := false
	if r, ok := s.(store.Remote); ok && r.Remote() {
		remote = true
	} else if rapid.Bool().Draw(t, "remote") {
		s, remote = remoteView{s}, true
	}
	nodes := rapid.IntRange(2, 3).Draw(t, "nodes")
	for range nodes {
		m.nodes = append(m.nodes, m.newNode(s))
	}
	m.logf("config: %d nodes, remote %v, vary %v", nodes, remote, m.vary)
	return m
}

// newNode starts a process: a paddock Cache on s, the row Loader, an
// httpcache.Cache and the site's two views.
func (m *pageMachine) newNode(s store.Store) *pageNode {
	m.nextID++
	n := &pageNode{id: m.nextID}
	c, err := paddock.New(s,
		paddock.LeaseTTL(leaseTTL),
		paddock.StoreTimeout(time.Second),
		paddock.Rand(func() float64 { return 0.5 }),
	)
	if err != nil {
		m.t.Fatalf("paddock.New: %v", err)
	}
	rows, err := paddock.NewLoader[string](c, rowsNS, paddock.TTL(ttl), paddock.Stale(staleFor), paddock.Beta(0))
	if err != nil {
		m.t.Fatalf("paddock.NewLoader: %v", err)
	}
	pages, err := httpcache.New(c, httpcache.TTL(ttl), httpcache.Stale(staleFor), httpcache.LoadTimeout(waitTimeout))
	if err != nil {
		m.t.Fatalf("httpcache.New: %v", err)
	}
	site := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.render(n, w, r) })
	mux := http.NewServeMux()
	mux.Handle("/p/", pages.Handler(site))
	mux.Handle("/d/", pages.Handler(site, httpcache.VaryHeaders(hdrTheme)))
	n.cache, n.rows, n.pages, n.handler = c, rows, pages, mux
	return n
}

// render is the site's handler. It registers with the model, waits for
// the machine, reads its row, waits again, and writes what it saw.
func (m *pageMachine) render(n *pageNode, w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	req, _ := strconv.Atoi(r.Header.Get(hdrReq))
	m.mu.Lock()
	m.nextID++
	rd := &pageRender{
		id: m.nextID, node: n, url: r.URL.Path, req: req, refresh: paddock.Refreshing(ctx),
		lang: r.Header.Get(hdrLang), theme: r.Header.Get(hdrTheme),
		begin: m.step, cmds: make(chan pageCmd, 1),
	}
	m.renders[rd.id] = rd
	how := ""
	if rd.refresh {
		how = " (a background refresh)"
	}
	m.logf("  render %d of %s begins on node %d for request %d%s", rd.id, rd.url, n.id, req, how)
	m.count("render begins, refresh " + strconv.FormatBool(rd.refresh))
	m.mu.Unlock()

	m.await(rd)
	row := pageRow(rd.url)
	ver, err := m.readRow(ctx, n, row, rd)
	m.mu.Lock()
	rd.ver, rd.state = ver, renderRead
	m.logf("  render %d read row %s v%d (err %v)", rd.id, row, ver, err)
	m.mu.Unlock()

	c := m.await(rd)
	m.mu.Lock()
	vary := m.vary[rd.url]
	rd.cookie = c.cookie && !c.dead
	info := url.Values{
		"render": {strconv.Itoa(rd.id)}, "req": {strconv.Itoa(req)}, "url": {rd.url},
		"v": {strconv.Itoa(ver)}, "lang": {rd.lang}, "theme": {rd.theme},
	}.Encode()
	m.mu.Unlock()

	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set(hdrPage, info)
	if len(vary) > 0 {
		h.Set("Vary", strings.Join(vary, ", "))
	}
	if rd.cookie {
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: fmt.Sprintf("%d-%d", rd.id, req), Path: "/"})
	}
	status := http.StatusOK
	if err != nil {
		status = http.StatusServiceUnavailable
	}
	w.WriteHeader(status)
	io.WriteString(w, pageBody(info))

	m.mu.Lock()
	rd.state, rd.finish, rd.finishAt = renderDone, m.step, time.Now()
	m.logf("  render %d returns (vary %v, cookie %v)", rd.id, vary, rd.cookie)
	m.mu.Unlock()
}

// pageBody is the body of a page whose X-Page is info.
func pageBody(info string) string { return "page " + info + "\n" }

// await blocks render rd until the machine tells it to go on, or the
// check is over.
func (m *pageMachine) await(rd *pageRender) pageCmd {
	m.mu.Lock()
	rd.waiting = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		rd.waiting = false
		m.mu.Unlock()
	}()
	select {
	case c := <-rd.cmds:
		return c
	case <-m.dead:
		return pageCmd{dead: true}
	}
}

// readRow reads row for render rd: from the database for a /p/ page,
// which names the row's tag, and through the row Loader with the
// render's context for a /d/ page, which so depends on the row's key and
// its entry's tag.
func (m *pageMachine) readRow(ctx context.Context, n *pageNode, row string, rd *pageRender) (int, error) {
	if !pageDep(rd.url) {
		m.mu.Lock()
		v := m.db[row]
		m.mu.Unlock()
		paddock.Tag(ctx, rowTag(row))
		return v, nil
	}
	val, err := n.rows.Get(ctx, row, func(context.Context) (string, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.logf("  row %s loaded on node %d: v%d", row, n.id, m.db[row])
		return fmt.Sprintf("%s@v%d", row, m.db[row]), nil
	}, paddock.Tags(rowTag(row)))
	if err != nil {
		return 0, err
	}
	_, v, _ := strings.Cut(val, "@v")
	return strconv.Atoi(v)
}

// Request sends a GET or HEAD of a URL to a process, with drawn values of
// the headers pages vary on. Half the time it repeats the last request's
// process, URL and headers, so that requests often meet in one render.
func (m *pageMachine) Request(t *rapid.T) {
	m.mu.Lock()
	last := m.last
	m.mu.Unlock()
	var n *pageNode
	var u, lang, theme string
	if last != nil && rapid.Bool().Draw(t, "again") {
		n, u, lang, theme = last.node, last.url, last.lang, last.theme
	} else {
		n = m.drawNode(t)
		u = rapid.SampledFrom(pageURLs).Draw(t, "url")
		lang = rapid.SampledFrom(langs).Draw(t, "lang")
		theme = rapid.SampledFrom(themes).Draw(t, "theme")
	}
	method := http.MethodGet
	if rapid.IntRange(0, 3).Draw(t, "head") == 0 {
		method = http.MethodHead
	}
	m.begin("%s %s on node %d (%s=%q %s=%q)", method, u, n.id, hdrLang, lang, hdrTheme, theme)
	m.mu.Lock()
	m.nextID++
	q := &pageReq{id: m.nextID, node: n, url: u, method: method, lang: lang, theme: theme, start: m.step, startAt: time.Now()}
	m.reqs = append(m.reqs, q)
	m.reqByID[q.id] = q
	m.last = q
	m.logf("  request %d starts", q.id)
	m.mu.Unlock()

	r := httptest.NewRequest(method, "http://site.example"+u, nil)
	if lang != "" {
		r.Header.Set(hdrLang, lang)
	}
	if theme != "" {
		r.Header.Set(hdrTheme, theme)
	}
	r.Header.Set(hdrReq, strconv.Itoa(q.id))
	w := httptest.NewRecorder()
	go func() {
		n.handler.ServeHTTP(w, r)
		m.responded(q, w)
	}()
	m.settle()
}

// responded records the response request q got and checks it.
func (m *pageMachine) responded(q *pageReq, w *httptest.ResponseRecorder) {
	res := w.Result()
	m.mu.Lock()
	defer m.mu.Unlock()
	q.done, q.end, q.code, q.header, q.body = true, m.step, res.StatusCode, res.Header, w.Body.String()
	m.logf("  request %d got %d [%s] %s (%d bytes)", q.id, q.code, q.header.Get("Cache-Status"), q.header.Get(hdrPage), len(q.body))
	m.count("response " + cacheStatusKind(q.header))
	m.checkResponse(q)
}

// Release moves a blocked render on by one step: one that has not read
// its row reads it; one that has writes its response, setting a cookie a
// quarter of the time.
func (m *pageMachine) Release(t *rapid.T) {
	m.mu.Lock()
	var cands []*pageRender
	for _, rd := range m.renders {
		if rd.waiting && len(rd.cmds) == 0 {
			cands = append(cands, rd)
		}
	}
	m.mu.Unlock()
	if len(cands) == 0 {
		t.Skip("no render waits")
	}
	// Ordered by what the model knows of them, not by id, so that a draw
	// means the same render however the scheduler numbered them.
	slices.SortFunc(cands, func(a, b *pageRender) int {
		switch {
		case a.begin != b.begin:
			return a.begin - b.begin
		case a.req != b.req:
			return a.req - b.req
		case a.node.id != b.node.id:
			return a.node.id - b.node.id
		case a.url != b.url:
			return strings.Compare(a.url, b.url)
		case a.refresh != b.refresh:
			if a.refresh {
				return 1
			}
			return -1
		}
		return 0
	})
	rd := cands[rapid.IntRange(0, len(cands)-1).Draw(t, "render")]
	m.mu.Lock()
	st := rd.state
	m.mu.Unlock()
	if st == renderBegun {
		m.begin("release render %d: it reads its row", rd.id)
		rd.cmds <- pageCmd{}
	} else {
		cookie := rapid.IntRange(0, 3).Draw(t, "cookie") == 0
		m.begin("release render %d: it writes its response (cookie %v)", rd.id, cookie)
		rd.cmds <- pageCmd{cookie: cookie}
	}
	m.settle()
}

// Purge writes a row (or not) and then purges: by a URL that shows the
// row, by a prefix, by the row's tag, or by the row's key, which drops the
// pages that read the row through the row Loader (the dependency); soft
// a quarter of the time (MarkStaleURL, MarkStalePrefix, MarkStaleTags,
// MarkStale), from any process.
func (m *pageMachine) Purge(t *rapid.T) {
	n := m.drawNode(t)
	row := rapid.SampledFrom(pageRows).Draw(t, "row")
	write := rapid.IntRange(0, 3).Draw(t, "write") > 0
	kind := rapid.SampledFrom([]string{"url", "prefix", "tag", "dep"}).Draw(t, "kind")
	soft := rapid.IntRange(0, 3).Draw(t, "soft") == 0
	var arg string
	switch kind {
	case "url":
		arg = rapid.SampledFrom(urlsOf(row)).Draw(t, "purgeURL")
	case "prefix":
		arg = rapid.SampledFrom(pagePrefixes).Draw(t, "prefix")
	default:
		arg = row
	}
	p := &pagePurge{kind: kind, arg: arg, soft: soft, node: n}
	m.mu.Lock()
	p.step = m.step + 1
	m.mu.Unlock()
	m.begin("%v from node %d (write row %s first: %v)", p, n.id, row, write)
	m.mu.Lock()
	if write {
		m.db[row]++
		m.logf("  row %s is v%d", row, m.db[row])
	}
	m.mu.Unlock()

	ctx := context.Background()
	var err error
	switch {
	case kind == "url" && soft:
		err = n.pages.MarkStaleURL(ctx, arg)
	case kind == "url":
		err = n.pages.PurgeURL(ctx, arg)
	case kind == "prefix" && soft:
		err = n.pages.MarkStalePrefix(ctx, arg)
	case kind == "prefix":
		err = n.pages.PurgePrefix(ctx, arg)
	case kind == "tag" && soft:
		err = n.cache.MarkStaleTags(ctx, rowTag(arg))
	case kind == "tag":
		err = n.cache.InvalidateTags(ctx, rowTag(arg))
	case kind == "dep" && soft:
		err = n.rows.MarkStale(ctx, arg)
	default:
		err = n.rows.Invalidate(ctx, arg)
	}
	m.mu.Lock()
	p.ok, p.vers = err == nil, make(map[string]int)
	for _, r := range pageRows {
		p.vers[r] = m.db[r]
	}
	m.purges = append(m.purges, p)
	m.logf("  returned %v", err)
	m.count(fmt.Sprintf("purge by %s, soft %v, ok %v", kind, soft, err == nil))
	m.mu.Unlock()
	m.settle()
}

// Revary changes the Vary a URL's handler sends from its next response
// on: the pages already stored keep theirs.
func (m *pageMachine) Revary(t *rapid.T) {
	u := rapid.SampledFrom(pageURLs).Draw(t, "url")
	set := rapid.SampledFrom(varySets).Draw(t, "vary")
	m.begin("revary: the handler of %s varies on %v", u, set)
	m.mu.Lock()
	m.vary[u] = set
	m.mu.Unlock()
	m.settle()
}

// Advance moves time forward: within the fresh window, past the lease,
// to the end of the fresh window, past the stale window.
func (m *pageMachine) Advance(t *rapid.T) {
	d := rapid.SampledFrom([]time.Duration{time.Second, leaseTTL, ttl, staleFor}).Draw(t, "by")
	m.begin("advance %v", d)
	m.env.advance(d)
	time.Sleep(d)
	m.settle()
}

func (m *pageMachine) drawNode(t *rapid.T) *pageNode {
	return m.nodes[rapid.IntRange(0, len(m.nodes)-1).Draw(t, "node")]
}

// begin starts an action: a new step.
func (m *pageMachine) begin(format string, args ...any) {
	m.mu.Lock()
	m.step++
	m.logf(format, args...)
	m.count("action " + strings.Fields(fmt.Sprintf(format, args...))[0])
	m.mu.Unlock()
}

// settle waits until every goroutine of the bubble (requests, renders,
// flights, refreshes) is blocked: the action's effects are complete.
func (m *pageMachine) settle() { synctest.Wait() }

func (m *pageMachine) count(what string) {
	if m.tally != nil && !m.closing {
		m.tally.add(what)
	}
}

// logf records an event in the history printed with a counterexample.
// The caller holds m.mu.
func (m *pageMachine) logf(format string, args ...any) {
	m.history = append(m.history, fmt.Sprintf("%3d %6s  ", m.step, m.since(time.Now()))+fmt.Sprintf(format, args...))
}

func (m *pageMachine) since(at time.Time) string {
	return at.Sub(m.start).Truncate(time.Millisecond).String()
}

func (m *pageMachine) historyString() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(m.history, "\n")
}

// violate records a broken invariant, as machine.violate does: kind names
// it the same way every time and starts with its label ("P2 purge: ...").
// The caller holds m.mu.
func (m *pageMachine) violate(kind, format string, args ...any) {
	if m.closing {
		return
	}
	if only != "" && !strings.HasPrefix(kind, only+" ") || ignore != "" && strings.Contains(kind, ignore) {
		return
	}
	m.violations = append(m.violations, kind)
	m.logf("VIOLATION %s\n%12s%s", kind, "", fmt.Sprintf(format, args...))
}

// teardown ends the check: it releases every blocked render, lets the
// requests finish (waiters on another process's lease poll as time
// passes), and closes the caches and the store.
func (m *pageMachine) teardown(t *rapid.T) {
	if os.Getenv("PADDOCK_PROPTEST_TRACE") != "" {
		fmt.Printf("---- check\n%s\n", m.historyString())
	}
	m.mu.Lock()
	m.closing = true
	m.mu.Unlock()
	close(m.dead)
	settle(t, m.env, "requests", func() (pending int) {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, q := range m.reqs {
			if !q.done {
				pending++
			}
		}
		return pending
	})
	for _, n := range m.nodes {
		n.cache.Close()
	}
	m.env.close()
}
