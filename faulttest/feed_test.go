package faulttest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
)

// The near cache's scenarios: processes with paddock.NearCache on one
// Redis, the subscription that feeds them faulted. Each checks, for every
// Get, the promise of docs/guarantees.md ("A near cache on a shared
// store"): a Get in a process never returns a value older than an
// invalidation that returned, in another process, more than Δ before the
// Get began (in the invalidating process: before it began), and while a
// process's feed is down its Gets read Redis.
//
// Δ is the store's bound, FeedTimeout, plus a second for the delivery and
// the scheduling of a busy test machine: the checks hold a process to the
// bound, not to a tight time.

// slack is added to FeedTimeout for Δ.
const slack = time.Second

// A nearNode is one process with a near cache. Its store reports the
// feed's ups and downs to feed, in order.
type nearNode struct {
	client redis.UniversalClient
	store  *redisstore.Store
	cache  *paddock.Cache
	calls  atomic.Int64
	feed   chan bool
}

// feedWatch is a node's store: the Store, with Listen's up reported to the
// node as well as to the Cache.
type feedWatch struct {
	*redisstore.Store
	feed chan bool
}

func (f feedWatch) Listen(changed func(keys, tags []string), up func(bool)) func() {
	return f.Store.Listen(changed, func(b bool) {
		up(b)
		f.feed <- b
	})
}

// newNearNode returns a process with NearCache(time.Hour) (only the feed
// and the fresh window end a copy) on client, closed when t ends.
func newNearNode(t testing.TB, client redis.UniversalClient, opts ...redisstore.Option) *nearNode {
	t.Helper()
	n := &nearNode{client: client, feed: make(chan bool, 1000)}
	t.Cleanup(func() { _ = client.Close() })
	client.AddHook(counter{&n.calls})
	s, err := redisstore.New(client, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	c, err := paddock.New(feedWatch{s, n.feed}, paddock.NearCache(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	n.store, n.cache = s, c
	return n
}

// unixNearNode is a process on the server's unix socket.
func unixNearNode(t testing.TB, socket string, opts ...redisstore.Option) *nearNode {
	return newNearNode(t, redis.NewClient(clientOptions("unix", socket, paddock.DefaultStoreTimeout)), opts...)
}

// tcpNearNode is a process on addr (a proxy).
func tcpNearNode(t testing.TB, addr string, opts ...redisstore.Option) *nearNode {
	return newNearNode(t, redis.NewClient(clientOptions("tcp", addr, paddock.DefaultStoreTimeout)), opts...)
}

func (n *nearNode) loader(t testing.TB) *paddock.Loader[string] {
	t.Helper()
	l, err := paddock.NewLoader[string](n.cache, "near", paddock.TTL(time.Hour), paddock.Beta(0))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitFeed waits until the node's feed reports up (or down) and returns
// when it did.
func (n *nearNode) waitFeed(t testing.TB, up bool) time.Time {
	t.Helper()
	limit := time.NewTimer(time.Minute)
	defer limit.Stop()
	for {
		select {
		case b := <-n.feed:
			if b == up {
				return time.Now()
			}
		case <-limit.C:
			t.Fatalf("the feed did not report up(%v) within a minute", up)
		}
	}
}

// nearTruth is the source of truth of the near-cache scenarios: a version
// per key, and when each invalidation of a key returned.
type nearTruth struct {
	mu   sync.Mutex
	ver  map[string]int
	invs map[string][]invAt
}

type invAt struct {
	ver int
	at  time.Time
}

func newNearTruth() *nearTruth {
	return &nearTruth{ver: map[string]int{}, invs: map[string][]invAt{}}
}

// publish writes key in the truth, then invalidates it through l, and
// records when an acknowledged invalidation returned.
func (d *nearTruth) publish(ctx context.Context, t testing.TB, l *paddock.Loader[string], key string) {
	t.Helper()
	if err := d.tryPublish(ctx, l, key); err != nil {
		t.Fatal(err)
	}
}

func (d *nearTruth) tryPublish(ctx context.Context, l *paddock.Loader[string], key string) error {
	d.mu.Lock()
	d.ver[key]++
	v := d.ver[key]
	d.mu.Unlock()
	if err := l.Invalidate(ctx, key); err != nil {
		return fmt.Errorf("invalidate %s: %w", key, err)
	}
	d.mu.Lock()
	d.invs[key] = append(d.invs[key], invAt{v, time.Now()})
	d.mu.Unlock()
	return nil
}

// floor is the oldest version a Get of key may return if it began at
// start in a process that learns of invalidations delta after they
// returned (0: the invalidating process, or one that reads Redis).
func (d *nearTruth) floor(key string, start time.Time, delta time.Duration) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := 0
	for _, inv := range d.invs[key] {
		if !inv.at.After(start.Add(-delta)) {
			f = max(f, inv.ver)
		}
	}
	return f
}

func (d *nearTruth) load(key string) paddock.LoadFunc[string] {
	return func(context.Context) (string, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		return strconv.Itoa(d.ver[key]), nil
	}
}

// nearGet makes one Get on n and checks it against the floor of a Get
// that learns of invalidations delta late; during marks a Get made while
// the feed was faulted. It returns the version and the calls to Redis.
func (r *run) nearGet(ctx context.Context, d *nearTruth, n *nearNode, l *paddock.Loader[string], key string, delta time.Duration, during bool) (int, int64) {
	r.t.Helper()
	start := time.Now()
	floor := d.floor(key, start, delta)
	before := n.calls.Load()
	res, err := l.Fetch(ctx, key, d.load(key))
	lat := time.Since(start)
	calls := n.calls.Load() - before
	v := -1
	if err == nil {
		var perr error
		if v, perr = strconv.Atoi(res.Value); perr != nil {
			r.t.Errorf("Get %s: value %q is not a version", key, res.Value)
		}
	}
	r.row.mu.Lock()
	r.row.gets++
	if err != nil {
		r.row.errs++
	}
	stale := err == nil && v < floor
	if stale {
		r.row.stale++
	}
	if during {
		r.row.faultLat = append(r.row.faultLat, lat)
	}
	r.row.mu.Unlock()
	if stale {
		r.staleErr(fmt.Sprintf("Get %s served version %d, older than the invalidation of version %d that returned more than %v before the Get began", key, v, floor, delta))
	}
	if err != nil {
		r.t.Errorf("Get %s: %v", key, err)
	}
	return v, calls
}

// nearWarm fills keys through l, then reads each from Redis once more on
// every node (nodes[i] through ls[i]), which takes the near copies; every
// node's feed must be up.
func (r *run) nearWarm(ctx context.Context, d *nearTruth, nodes []*nearNode, ls []*paddock.Loader[string], keys ...string) {
	r.t.Helper()
	for _, k := range keys {
		for i, n := range nodes {
			for range 2 {
				r.nearGet(ctx, d, n, ls[i], k, 0, false)
			}
			if _, calls := r.nearGet(ctx, d, n, ls[i], k, 0, false); calls != 0 {
				r.t.Fatalf("a warm Get of %s made %d calls to Redis: no near copy", k, calls)
			}
		}
	}
}

// untilNear gets key on n until a Get is served from the near cache (no
// call to Redis) and returns how long that took.
func (r *run) untilNear(ctx context.Context, d *nearTruth, n *nearNode, l *paddock.Loader[string], key string, delta time.Duration) time.Duration {
	r.t.Helper()
	took, ok := until(time.Minute, func() bool {
		_, calls := r.nearGet(ctx, d, n, l, key, delta, false)
		return calls == 0
	})
	if !ok {
		r.t.Fatal("the near cache was never used again")
	}
	return took
}

// untilFresh gets key on n until it returns the version of the last
// invalidation, checking every Get against delta, and returns how long
// after that invalidation returned it did.
func (r *run) untilFresh(ctx context.Context, d *nearTruth, n *nearNode, l *paddock.Loader[string], key string, delta time.Duration) time.Duration {
	r.t.Helper()
	d.mu.Lock()
	invs := d.invs[key]
	last := invs[len(invs)-1]
	d.mu.Unlock()
	_, ok := until(time.Minute, func() bool {
		v, _ := r.nearGet(ctx, d, n, l, key, delta, true)
		return v >= last.ver
	})
	if !ok {
		r.t.Fatalf("%s: the other process never read the version of the last invalidation", key)
	}
	return time.Since(last.at)
}

// feedKilled: a process's subscription is killed (CLIENT KILL TYPE pubsub)
// and cannot subscribe again for a while (a proxy refuses its new
// connections; its pooled ones still work). While its feed is down every
// Get reads Redis and returns the last invalidated version; once it is
// back the near cache serves again, and a change reaches it.
func feedKilled(r *run) {
	t := r.t
	srv := redistest.Start(t)
	px := startProxy(t, unixDialer(srv.Socket))
	d := newNearTruth()
	a := unixNearNode(t, srv.Socket)
	b := tcpNearNode(t, px.Addr())
	la, lb := a.loader(t), b.loader(t)
	ctx := t.Context()
	a.waitFeed(t, true)
	b.waitFeed(t, true)
	keys := []string{"k0", "k1", "k2", "k3"}
	r.nearWarm(ctx, d, []*nearNode{a, b}, []*paddock.Loader[string]{la, lb}, keys...)
	delta := redisstore.DefaultFeedTimeout + slack

	px.Refuse(true)
	admin := redis.NewClient(clientOptions("unix", srv.Socket, time.Second))
	defer admin.Close()
	if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	b.waitFeed(t, false)
	d.publish(ctx, t, la, "k0")
	d.publish(ctx, t, la, "k1")
	for i := range 20 {
		// Down: b reads Redis, exact (delta 0).
		if _, calls := r.nearGet(ctx, d, b, lb, keys[i%len(keys)], 0, true); calls == 0 {
			t.Error("a Get was served from the near cache while the feed was down")
		}
	}
	px.Refuse(false)
	back := time.Now()
	b.waitFeed(t, true)
	r.untilNear(ctx, d, b, lb, "k2", delta)
	r.row.recover(time.Since(back))
	d.publish(ctx, t, la, "k2")
	r.row.note("a change after the return reached the other process %s after Invalidate returned", round(r.untilFresh(ctx, d, b, lb, "k2", delta)))
	r.row.note("Δ bound %v", delta)
}

// feedRestart: Redis restarted empty under two processes with near
// copies. Their feeds go down (the copies go) and come back on the new
// server; invalidations there reach the other process.
func feedRestart(r *run) {
	t := r.t
	srv := redistest.Start(t)
	d := newNearTruth()
	a := unixNearNode(t, srv.Socket)
	b := unixNearNode(t, srv.Socket)
	la, lb := a.loader(t), b.loader(t)
	ctx := t.Context()
	a.waitFeed(t, true)
	b.waitFeed(t, true)
	keys := []string{"k0", "k1", "k2", "k3"}
	r.nearWarm(ctx, d, []*nearNode{a, b}, []*paddock.Loader[string]{la, lb}, keys...)
	delta := redisstore.DefaultFeedTimeout + slack

	srv.Restart(t)
	restarted := time.Now()
	b.waitFeed(t, false)
	d.publish(ctx, t, la, "k0") // on the new server
	for i := range 20 {
		r.nearGet(ctx, d, b, lb, keys[i%len(keys)], delta, true)
	}
	b.waitFeed(t, true)
	r.row.recover(time.Since(restarted))
	d.publish(ctx, t, la, "k1")
	r.row.note("after the restart a change reached the other process %s after Invalidate returned", round(r.untilFresh(ctx, d, b, lb, "k1", delta)))
	for _, k := range keys {
		r.nearGet(ctx, d, b, lb, k, 0, false) // b's feed is up and has heard both: exact
	}
	r.untilNear(ctx, d, b, lb, "k3", delta)
}

// feedDelayed: what Redis sends on a process's subscription is held on
// the way (a proxy holds the bytes; the connection stays open): its
// messages and the replies to its PINGs. The process may serve its old
// copy after another's invalidation returned, for at most FeedTimeout
// (plus slack); then its feed reports down, its Gets read Redis, and it
// subscribes again.
func feedDelayed(r *run) {
	t := r.t
	const feedTimeout = 300 * time.Millisecond
	srv := redistest.Start(t)
	px := startProxy(t, unixDialer(srv.Socket))
	d := newNearTruth()
	a := unixNearNode(t, srv.Socket)
	b := tcpNearNode(t, px.Addr(), redisstore.FeedTimeout(feedTimeout))
	la, lb := a.loader(t), b.loader(t)
	ctx := t.Context()
	a.waitFeed(t, true)
	b.waitFeed(t, true)
	r.nearWarm(ctx, d, []*nearNode{a, b}, []*paddock.Loader[string]{la, lb}, "k0", "k1")
	delta := feedTimeout + slack

	px.HoldSubscriptions()
	d.publish(ctx, t, la, "k0")
	held := time.Now()
	// b's old copy may be served for up to delta; every Get is checked.
	served := r.untilFresh(ctx, d, b, lb, "k0", delta)
	down := b.waitFeed(t, false)
	r.row.note("old copy served until %s after the invalidation returned; feed down after %s (FeedTimeout %v)",
		round(served), round(down.Sub(held)), feedTimeout)
	px.ReleaseSubscriptions()
	b.waitFeed(t, true)
	r.row.recover(time.Since(held))
	d.publish(ctx, t, la, "k1")
	r.row.note("then a change reached it %s after Invalidate returned", round(r.untilFresh(ctx, d, b, lb, "k1", delta)))
	r.untilNear(ctx, d, b, lb, "k1", delta)
}

// feedCluster: a Redis Cluster of three masters; every master kills its
// subscriptions (CLIENT KILL TYPE pubsub) while another process keeps
// invalidating keys of every node and a process with near copies keeps
// reading them. No Get returns a version older than Δ allows, and the
// near cache is used again once the feed is back.
func feedCluster(r *run) {
	t := r.t
	cl := redistest.StartCluster(t, 3)
	d := newNearTruth()
	clusterClient := func() redis.UniversalClient {
		o := cl.Options()
		o.DialTimeout, o.MaxRetries, o.MinRetryBackoff, o.MaxRetryBackoff = time.Second, -1, -1, -1
		return redis.NewClusterClient(o)
	}
	a := newNearNode(t, clusterClient())
	b := newNearNode(t, clusterClient())
	la, lb := a.loader(t), b.loader(t)
	ctx := t.Context()
	a.waitFeed(t, true)
	b.waitFeed(t, true)
	var keys []string
	for i := range 8 {
		keys = append(keys, "k"+strconv.Itoa(i))
	}
	r.nearWarm(ctx, d, []*nearNode{a, b}, []*paddock.Loader[string]{la, lb}, keys...)
	delta := redisstore.DefaultFeedTimeout + slack

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := d.tryPublish(ctx, la, keys[i%len(keys)]); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for i := range 200 {
		if i%50 == 10 {
			for _, addr := range cl.Addrs {
				c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
				if err := c.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
					t.Error(err)
				}
				_ = c.Close()
			}
		}
		r.nearGet(ctx, d, b, lb, keys[i%len(keys)], delta, true)
	}
	close(stop)
	wg.Wait()
	back := time.Now()
	for _, k := range keys {
		r.untilFresh(ctx, d, b, lb, k, delta)
	}
	r.untilNear(ctx, d, b, lb, keys[0], delta)
	r.row.recover(time.Since(back))
}
