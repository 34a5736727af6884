package httpcache_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/httpcache"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// The fleet tests: several processes, each a paddock Cache with its own
// Redis client, its own httpcache.Cache and its own HTTP server, on one
// Redis (standalone or Cluster), asked by real http.Clients.

// fleetRequests is how many requests the cold-URL test sends at once.
const fleetRequests = 1000

// The article every page shows.
const (
	articlePath = "/articles/42"
	articleID   = "42"
)

// fleetHost is the Host every request of the fleet names: the servers
// are one site behind a load balancer, and a page's key has its host.
const fleetHost = "news.example"

// articleTag is the tag the view names for the article it shows.
var articleTag = paddock.ModelTag("article", 42)

// TestFleet runs the fleet tests on a standalone Redis and on a Redis
// Cluster of three masters.
func TestFleet(t *testing.T) {
	t.Run("layout=standalone", func(t *testing.T) {
		srv := redistest.Start(t)
		runFleet(t, func(t *testing.T) redis.UniversalClient { return srv.Client(t, nil) })
	})
	t.Run("layout=cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t, 3)
		runFleet(t, func(t *testing.T) redis.UniversalClient { return cl.Client(t) })
	})
}

func runFleet(t *testing.T, dial func(*testing.T) redis.UniversalClient) {
	t.Run("OneRenderPerFleet", func(t *testing.T) { testFleetOneRender(t, dial) })
	for _, purge := range []string{"url", "prefix", "tag", "dependency"} {
		t.Run("PurgeRacesRender/purge="+purge, func(t *testing.T) { testFleetPurgeRace(t, dial, purge) })
	}
	t.Run("SoftPurge", func(t *testing.T) { testFleetSoftPurge(t, dial) })
	t.Run("StatsAndURLs", func(t *testing.T) { testFleetStatsAndURLs(t, dial) })
}

// testFleetOneRender: fleetRequests concurrent requests for one cold URL,
// spread over four servers, run the view once. The render holds until
// every request has reached its server and every other server has found
// the page's lease held, so that all of them are in flight while it runs.
func testFleetOneRender(t *testing.T, dial func(*testing.T) redis.UniversalClient) {
	const nodes = 4
	f := newFleet(t, dial, nodes)
	f.site.setHold(func(r *http.Request, node int, n int64) error {
		if n != 1 {
			return fmt.Errorf("render %d: the fleet rendered the cold URL more than once", n)
		}
		return f.events.wait(r.Context(), f.stop, func(ev counts) bool {
			if ev("arrive") < fleetRequests {
				return false
			}
			for i := range nodes {
				if i != node && ev(held(i)) == 0 {
					return false
				}
			}
			return true
		})
	})

	resps := make([]fleetResp, fleetRequests)
	errs := make([]error, fleetRequests)
	var wg sync.WaitGroup
	for i := range fleetRequests {
		wg.Go(func() { resps[i], errs[i] = f.nodes[i%nodes].get(articlePath) })
	}
	wg.Wait()

	if n := f.site.renders.Load(); n != 1 {
		t.Fatalf("%d renders for %d requests over %d servers, want 1; counts: %v", n, fleetRequests, nodes, f.events)
	}
	statuses := map[string]int{}
	for i, r := range resps {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if r.code != http.StatusOK || r.title() != "old" {
			t.Fatalf("request %d: %d %q", i, r.code, r.body)
		}
		statuses[r.cacheStatus]++
	}
	rendered := 0
	for cs, n := range statuses {
		if !strings.Contains(cs, "hit") && !strings.Contains(cs, "collapsed") {
			rendered += n
		}
	}
	if rendered != 1 {
		t.Errorf("%d responses say they rendered, want 1: %v", rendered, statuses)
	}
	tot := f.total()
	if tot.Misses != 1 || tot.Stored != 1 || tot.Stale != 0 || tot.Bypassed != 0 ||
		tot.Hits+tot.Coalesced+tot.Misses != fleetRequests {
		t.Errorf("fleet stats: %+v; want 1 miss, stored, and %d requests served from it", tot, fleetRequests-1)
	}
	t.Logf("%d requests over %d servers: 1 render; Cache-Status: %v", fleetRequests, nodes, statuses)
}

// testFleetPurgeRace: server A renders the page from the old row; while the
// render is in flight the article is published on server B, which purges
// the page by URL, by prefix, by the tag the view names, or through the
// dependency on the row's key alone. A's render is not stored, and every
// request that starts after the purge returned, on any server (on A too,
// where it may join A's render in process), gets the new page.
func testFleetPurgeRace(t *testing.T, dial func(*testing.T) redis.UniversalClient, purge string) {
	f := newFleet(t, dial, 3)
	a, b, c := f.nodes[0], f.nodes[1], f.nodes[2]
	// With purge=dependency the view reads the row with r.Context(): the
	// page depends on the row's key, and the publish invalidates that key
	// and nothing else. Otherwise the view reads the row on a context of
	// its own, so that the page does not depend on it: the purge alone
	// must keep the old page out.
	f.site.dependent.Store(purge == "dependency")
	release := make(chan struct{})
	f.site.setHold(func(r *http.Request, node int, n int64) error {
		if n != 1 {
			return nil
		}
		f.events.add("holding")
		return gateWait(r.Context(), f.stop, release)
	})

	first := make(chan fleetResult, 1)
	go func() { r, err := a.get(articlePath); first <- fleetResult{r, err} }()
	f.events.await(t, "A's render to read the old row", func(ev counts) bool { return ev("holding") == 1 })

	// The publisher writes the row, then invalidates through B.
	f.site.setTitle("new")
	if err := b.articles.Invalidate(t.Context(), articleID); err != nil {
		t.Fatal(err)
	}
	var err error
	switch purge {
	case "url":
		err = b.hc.PurgeURL(t.Context(), articlePath)
	case "prefix":
		err = b.hc.PurgePrefix(t.Context(), "/articles/")
	case "tag":
		err = b.pc.InvalidateTags(t.Context(), articleTag)
	case "dependency":
		// Invalidating the row's key was the purge.
	}
	if err != nil {
		t.Fatal(err)
	}

	// Requests that start after the purge returned, while A's render
	// holds: they reach their servers, and B and C find the page's lease
	// (A's) held, before A's render goes on.
	const each = 2
	before := f.events.snapshot()
	results := make(chan fleetResult, each*len(f.nodes))
	for _, n := range f.nodes {
		for range each {
			go func() { r, err := n.get(articlePath); results <- fleetResult{r, err} }()
		}
	}
	f.events.await(t, "the later requests to be in flight", func(ev counts) bool {
		return ev("arrive") == before("arrive")+each*len(f.nodes) &&
			ev(held(1)) > before(held(1)) && ev(held(2)) > before(held(2))
	})
	close(release)

	old := <-first
	if old.err != nil {
		t.Fatal(old.err)
	}
	if old.title() != "old" {
		t.Fatalf("A's own request: %q; want the page it rendered from the old row", old.body)
	}
	for range each * len(f.nodes) {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.title() != "new" {
			t.Errorf("a request that started after the purge got %q (Cache-Status %q)", r.body, r.cacheStatus)
		}
	}
	if st := a.pc.Stats()["page"]; st.FillsRefused != 1 {
		t.Errorf("A's page fills refused = %d, want 1", st.FillsRefused)
	}
	// The old page is in no server's cache: each serves the new one, as a
	// hit on what the one later render stored.
	for i, n := range []*fleetNode{a, b, c} {
		r, err := n.get(articlePath)
		if err != nil {
			t.Fatal(err)
		}
		if r.title() != "new" || !strings.HasPrefix(r.cacheStatus, "paddock; hit") {
			t.Errorf("server %d after the race: %q, Cache-Status %q; want the new page, a hit", i, r.body, r.cacheStatus)
		}
	}
	if n := f.site.renders.Load(); n != 2 {
		t.Errorf("%d renders, want 2 (the fenced one and one for the fleet after the purge)", n)
	}
	tot := f.total()
	if tot.Stored != 1 || tot.Reasons["fenced"] != 1 {
		t.Errorf("fleet stats: %+v; want 1 page stored and 1 render fenced", tot)
	}
	if st := a.route(); st.Reasons["fenced"] != 1 {
		t.Errorf("A's stats: %+v; want its render counted as fenced", st)
	}
}

// testFleetSoftPurge: after MarkStaleURL on one server, every server serves
// the old page as stale while one render for the fleet runs, and the new
// page once it is stored.
func testFleetSoftPurge(t *testing.T, dial func(*testing.T) redis.UniversalClient) {
	f := newFleet(t, dial, 3)
	a, b, c := f.nodes[0], f.nodes[1], f.nodes[2]
	release := make(chan struct{})
	f.site.setHold(func(r *http.Request, node int, n int64) error {
		if n != 2 {
			return nil
		}
		f.events.add("holding")
		return gateWait(r.Context(), f.stop, release)
	})
	if r, err := a.get(articlePath); err != nil || r.title() != "old" {
		t.Fatalf("first render: %+v, %v", r, err)
	}

	f.site.setTitle("new")
	if err := b.articles.Invalidate(t.Context(), articleID); err != nil {
		t.Fatal(err)
	}
	if err := b.hc.MarkStaleURL(t.Context(), articlePath); err != nil {
		t.Fatal(err)
	}
	fills := f.events.snapshot()
	// C's request gets the old page at once and starts the re-render,
	// which holds.
	r, err := c.get(articlePath)
	if err != nil {
		t.Fatal(err)
	}
	if r.title() != "old" || !strings.Contains(r.cacheStatus, "detail=stale") {
		t.Fatalf("C after the soft purge: %q, Cache-Status %q; want the old page, stale", r.body, r.cacheStatus)
	}
	f.events.await(t, "the re-render", func(ev counts) bool { return ev("holding") == 1 })

	// While it holds, every server serves the old page, stale, and
	// renders nothing.
	const each = 3
	var wg sync.WaitGroup
	for i, n := range f.nodes {
		for range each {
			wg.Go(func() {
				r, err := n.get(articlePath)
				if err != nil {
					t.Error(err)
					return
				}
				if r.title() != "old" || !strings.Contains(r.cacheStatus, "detail=stale") {
					t.Errorf("server %d during the re-render: %q, Cache-Status %q; want the old page, stale", i, r.body, r.cacheStatus)
				}
			})
		}
	}
	wg.Wait()
	if n := f.site.renders.Load(); n != 2 {
		t.Fatalf("%d renders while the re-render holds, want 2", n)
	}
	close(release)
	f.events.await(t, "the re-rendered page to be stored", func(ev counts) bool {
		return ev("fill") > fills("fill")
	})
	for i, n := range f.nodes {
		r, err := n.get(articlePath)
		if err != nil {
			t.Fatal(err)
		}
		if r.title() != "new" || !strings.HasPrefix(r.cacheStatus, "paddock; hit") || strings.Contains(r.cacheStatus, "stale") {
			t.Errorf("server %d after the re-render: %q, Cache-Status %q; want the new page, a fresh hit", i, r.body, r.cacheStatus)
		}
	}
	if n := f.site.renders.Load(); n != 2 {
		t.Errorf("%d renders, want 2", n)
	}
	tot := f.total()
	if want := int64(1 + each*len(f.nodes)); tot.Stale != want {
		t.Errorf("fleet stats: %+v; want %d stale", tot, want)
	}
}

// testFleetStatsAndURLs: each server counts its own requests, and lists a
// URL once it has rendered or served it; a purge on another server takes
// it off every server's list at the next call.
func testFleetStatsAndURLs(t *testing.T, dial func(*testing.T) redis.UniversalClient) {
	f := newFleet(t, dial, 3)
	a, b, c := f.nodes[0], f.nodes[1], f.nodes[2]
	get := func(n *fleetNode, path, wantCS string) {
		t.Helper()
		r, err := n.get(path)
		if err != nil {
			t.Fatal(err)
		}
		if r.code != http.StatusOK || !strings.HasPrefix(r.cacheStatus, wantCS) {
			t.Fatalf("%s on server %d: %d, Cache-Status %q; want %q", path, n.id, r.code, r.cacheStatus, wantCS)
		}
	}
	urls := func(n *fleetNode, prefix string, want ...string) {
		t.Helper()
		got, err := n.hc.URLs(t.Context(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("server %d: URLs(%q) = %q, want %q", n.id, prefix, got, want)
		}
	}

	get(a, "/articles/1", "paddock; fwd=miss")
	get(b, "/articles/1", "paddock; hit")
	get(b, "/articles/1", "paddock; hit")
	get(b, "/articles/2?b=2&a=1", "paddock; fwd=miss")
	get(a, "/articles/2?a=1&b=2", "paddock; hit")
	get(b, "/articles/3", "paddock; fwd=miss")

	urls(a, "/articles/", "/articles/1", "/articles/2?a=1&b=2")
	urls(b, "/articles/", "/articles/1", "/articles/2?a=1&b=2", "/articles/3")
	urls(b, "/articles/2", "/articles/2?a=1&b=2")
	urls(c, "/") // C has served nothing: it knows no URL
	get(c, "/articles/3", "paddock; hit")
	urls(c, "/", "/articles/3")

	route := "GET /articles/{id}"
	check := func(n *fleetNode, hits, misses int64) {
		t.Helper()
		st := n.route()
		if st.Route != route || st.Hits != hits || st.Misses != misses || st.Stored != misses ||
			st.Stale != 0 || st.Coalesced != 0 || st.Bypassed != 0 || len(st.Reasons) != 0 {
			t.Errorf("server %d: %+v; want %d hits, %d misses, all stored", n.id, st, hits, misses)
		}
	}
	check(a, 1, 1)
	check(b, 2, 2)
	check(c, 1, 0)
	if tot := f.total(); tot.Requests() != 7 || tot.HitRatio() != 4.0/7 {
		t.Errorf("fleet: %d requests, hit ratio %v; want 7, 4/7", tot.Requests(), tot.HitRatio())
	}

	// Purges on another server: gone from every list at the next call.
	if err := c.hc.PurgeURL(t.Context(), "/articles/1"); err != nil {
		t.Fatal(err)
	}
	urls(a, "/", "/articles/2?a=1&b=2")
	urls(b, "/", "/articles/2?a=1&b=2", "/articles/3")
	if err := a.hc.PurgePrefix(t.Context(), "/articles/"); err != nil {
		t.Fatal(err)
	}
	urls(b, "/")
	urls(c, "/")
	// What was purged renders again, once, and is listed again.
	get(b, "/articles/1", "paddock; fwd=miss")
	get(c, "/articles/1", "paddock; hit")
	urls(b, "/", "/articles/1")
	urls(c, "/", "/articles/1")
	urls(a, "/")
	if n := f.site.renders.Load(); n != 4 {
		t.Errorf("%d renders, want 4", n)
	}
}

// fleet is several servers sharing one site on one Redis.
type fleet struct {
	site   *fleetSite
	nodes  []*fleetNode
	events *tally
	stop   chan struct{} // closed when the test ends: holding views give up
}

// fleetNode is one process of the fleet.
type fleetNode struct {
	id       int
	store    *fleetStore
	pc       *paddock.Cache
	hc       *httpcache.Cache
	articles *paddock.Loader[string]
	srv      *httptest.Server
	client   *http.Client
}

// fleetPrefix numbers the fleets' Redis prefixes, so that each test's
// fleet shares nothing with the others'.
var fleetPrefix atomic.Int64

func newFleet(t *testing.T, dial func(*testing.T) redis.UniversalClient, n int) *fleet {
	t.Helper()
	f := &fleet{events: newTally(), stop: make(chan struct{})}
	f.site = &fleetSite{title: "old", events: f.events}
	prefix := fmt.Sprintf("hc%d:", fleetPrefix.Add(1))
	for i := range n {
		rs, err := redisstore.New(dial(t), redisstore.Prefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rs.Close() })
		st := &fleetStore{Store: rs, node: i, events: f.events}
		// The tests check the protocol, not timeouts: store calls and
		// waits get bounds a busy machine under -race never reaches.
		pc, err := paddock.New(st, paddock.StoreTimeout(10*time.Second), paddock.LeaseTTL(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pc.Close() })
		hc, err := httpcache.New(pc, httpcache.TTL(time.Hour), httpcache.Stale(time.Hour), httpcache.LoadTimeout(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		articles, err := paddock.NewLoader[string](pc, "article")
		if err != nil {
			t.Fatal(err)
		}
		nd := &fleetNode{id: i, store: st, pc: pc, hc: hc, articles: articles}
		mux := http.NewServeMux()
		mux.Handle("GET /articles/{id}", hc.Handler(f.site.view(nd)))
		nd.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.events.add("arrive")
			mux.ServeHTTP(w, r)
		}))
		t.Cleanup(nd.srv.Close)
		nd.client = nd.srv.Client()
		f.nodes = append(f.nodes, nd)
	}
	t.Cleanup(func() { close(f.stop) }) // runs first: no view holds a server's Close
	return f
}

// route returns the node's stats of the articles route.
func (n *fleetNode) route() httpcache.RouteStats {
	for _, st := range n.hc.Stats() {
		if st.Route == "GET /articles/{id}" {
			return st
		}
	}
	return httpcache.RouteStats{}
}

// total sums the "(total)" rows of the fleet's servers.
func (f *fleet) total() httpcache.RouteStats {
	var tot httpcache.RouteStats
	tot.Reasons = map[string]int64{}
	for _, n := range f.nodes {
		all := n.hc.Stats()
		tot.Add(all[len(all)-1])
	}
	return tot
}

// fleetSite is what the fleet shares besides Redis: the database (one
// article's title) and the view's behaviour.
type fleetSite struct {
	mu    sync.Mutex
	title string

	// dependent: the view reads the row with r.Context(), so that the
	// page depends on it.
	dependent atomic.Bool
	// hold, if set, runs in every render after the row is read; an error
	// fails the render.
	events  *tally
	hold    atomic.Pointer[func(r *http.Request, node int, n int64) error]
	renders atomic.Int64
}

func (s *fleetSite) setTitle(v string) {
	s.mu.Lock()
	s.title = v
	s.mu.Unlock()
}

func (s *fleetSite) readTitle() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.title
}

func (s *fleetSite) setHold(f func(r *http.Request, node int, n int64) error) { s.hold.Store(&f) }

// view renders an article page on node nd: it tags the page, reads the
// row through the node's cached article Loader, and writes the title.
func (s *fleetSite) view(nd *fleetNode) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.renders.Add(1)
		s.events.add(fmt.Sprintf("render/%d", nd.id))
		paddock.Tag(r.Context(), articleTag)
		rowCtx := context.Background()
		if s.dependent.Load() {
			rowCtx = r.Context()
		}
		title, err := nd.articles.Get(rowCtx, articleID, func(context.Context) (string, error) {
			return s.readTitle(), nil
		}, paddock.TTL(time.Hour))
		if err == nil {
			if hold := s.hold.Load(); hold != nil {
				err = (*hold)(r, nd.id, n)
			}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s\nrender %d on server %d of %s\n", title, n, nd.id, r.URL.RequestURI())
	})
}

// fleetResp is what a client got.
type fleetResp struct {
	code        int
	body        string
	cacheStatus string
}

// title is the page's first line: the article's title.
func (r fleetResp) title() string { t, _, _ := strings.Cut(r.body, "\n"); return t }

type fleetResult struct {
	fleetResp
	err error
}

// get asks the node for path, as the fleet's load balancer would: with
// the site's Host, whatever the node's address.
func (n *fleetNode) get(path string) (fleetResp, error) {
	req, err := http.NewRequest(http.MethodGet, n.srv.URL+path, nil)
	if err != nil {
		return fleetResp{}, err
	}
	req.Host = fleetHost
	resp, err := n.client.Do(req)
	if err != nil {
		return fleetResp{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fleetResp{}, err
	}
	return fleetResp{code: resp.StatusCode, body: string(b), cacheStatus: strings.Join(resp.Header.Values("Cache-Status"), ", ")}, nil
}

// fleetStore is a node's redisstore.Store, reporting to the fleet's tally
// the page lookups that find the lease held by another process ("held/i")
// and the page fills the store accepts ("fill").
type fleetStore struct {
	*redisstore.Store
	node   int
	events *tally
}

func held(node int) string { return fmt.Sprintf("held/%d", node) }

func (s *fleetStore) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	lk, err := s.Store.Lookup(ctx, key, req)
	if err == nil && lk.Held && strings.HasPrefix(key, "page:") {
		s.events.add(held(s.node))
	}
	return lk, err
}

func (s *fleetStore) Fill(ctx context.Context, key string, f *store.Fill) (bool, error) {
	ok, err := s.Store.Fill(ctx, key, f)
	if err == nil && ok && strings.HasPrefix(key, "page:") {
		s.events.add("fill")
	}
	return ok, err
}

// tally counts named events and lets goroutines wait until the counts
// meet a condition: a condition variable made of a channel that is closed
// and replaced at every event.
type tally struct {
	mu      sync.Mutex
	n       map[string]int
	changed chan struct{}
}

// counts reads the counts of a tally.
type counts func(name string) int

func newTally() *tally { return &tally{n: map[string]int{}, changed: make(chan struct{})} }

func (t *tally) add(name string) {
	t.mu.Lock()
	t.n[name]++
	close(t.changed)
	t.changed = make(chan struct{})
	t.mu.Unlock()
}

// String lists the counts.
func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprint(t.n)
}

// snapshot returns the counts as they are now.
func (t *tally) snapshot() counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := make(map[string]int, len(t.n))
	for k, v := range t.n {
		m[k] = v
	}
	return func(name string) int { return m[name] }
}

// wait blocks until cond holds, ctx ends or stop is closed. It gives up
// after a minute: a hang is a bug, and the bound is no timing assertion.
func (t *tally) wait(ctx context.Context, stop <-chan struct{}, cond func(counts) bool) error {
	bound := time.NewTimer(time.Minute)
	defer bound.Stop()
	for {
		t.mu.Lock()
		ok := cond(func(name string) int { return t.n[name] })
		changed := t.changed
		t.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return errors.New("the test ended")
		case <-bound.C:
			return errors.New("the condition never held")
		}
	}
}

// await is wait for the test's goroutine: it fails the test if cond
// never holds.
func (t *tally) await(tb testing.TB, what string, cond func(counts) bool) {
	tb.Helper()
	if err := t.wait(context.Background(), nil, cond); err != nil {
		tb.Fatalf("waiting for %s: %v; counts: %v", what, err, t)
	}
}

// gateWait blocks until gate is closed, ctx ends or stop is closed.
func gateWait(ctx context.Context, stop, gate <-chan struct{}) error {
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return errors.New("the test ended")
	}
}
