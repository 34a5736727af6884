package faulttest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/redisstore"
)

// clientOptions are the go-redis options the README recommends in front
// of a Cache: context deadlines end socket reads (so StoreTimeout bounds
// every call), no dial retries and no command retries (a dead Redis fails
// at once and the Get loads instead), no sleeps between retries, and the
// dial and the wait for a pooled connection bounded by the store timeout.
func clientOptions(network, addr string, storeTimeout time.Duration) *redis.Options {
	return &redis.Options{
		Network:               network,
		Addr:                  addr,
		ContextTimeoutEnabled: true,
		DialTimeout:           storeTimeout,
		DialerRetries:         1,
		MaxRetries:            -1,
		MinRetryBackoff:       -1,
		MaxRetryBackoff:       -1,
		PoolTimeout:           storeTimeout,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
	}
}

// A node is one process of a fleet: its own client, store and Cache.
type node struct {
	client *redis.Client
	store  *redisstore.Store
	cache  *paddock.Cache
	calls  atomic.Int64 // commands and pipelines the client sent
}

// newNode returns a node on the Redis at network/addr, closed when t ends.
// storeTimeout is given to the Cache (0: the Cache's default) and bounds
// the client's dial.
func newNode(t testing.TB, network, addr string, storeTimeout time.Duration, opts ...paddock.Option) *node {
	t.Helper()
	st := storeTimeout
	if st == 0 {
		st = paddock.DefaultStoreTimeout
	} else {
		opts = append([]paddock.Option{paddock.StoreTimeout(st)}, opts...)
	}
	n := &node{client: redis.NewClient(clientOptions(network, addr, st))}
	t.Cleanup(func() { _ = n.client.Close() })
	n.client.AddHook(counter{&n.calls})
	s, err := redisstore.New(n.client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	c, err := paddock.New(s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	n.store, n.cache = s, c
	return n
}

func (n *node) loader(t testing.TB, ns string, opts ...paddock.LoaderOption) *paddock.Loader[string] {
	t.Helper()
	l, err := paddock.NewLoader[string](n.cache, ns, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// stats returns the Stats of namespace ns ("": the Cache-wide counters,
// tag invalidations and the durable invalidations).
func (n *node) stats(ns string) paddock.Stats { return n.cache.Stats()[ns] }

// counter is a go-redis hook that counts round trips.
type counter struct{ n *atomic.Int64 }

func (c counter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// unixDialer dials a redis-server's unix socket, for the proxy.
func unixDialer(socket string) func() (net.Conn, error) {
	return func() (net.Conn, error) { return net.DialTimeout("unix", socket, 5*time.Second) }
}

// truth is the source of truth the loads read: a version per key, bumped
// by every write. It remembers, per key, the last version whose
// invalidation returned (attempted, error or not) and the last one whose
// invalidation was acknowledged.
type truth struct {
	mu        sync.Mutex
	ver       map[string]int
	attempted map[string]int
	acked     map[string]int
	loads     atomic.Int64
}

func newTruth() *truth {
	return &truth{ver: map[string]int{}, attempted: map[string]int{}, acked: map[string]int{}}
}

// write bumps key's version and returns it; the caller invalidates next.
func (d *truth) write(key string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ver[key]++
	return d.ver[key]
}

// invalidated records that the invalidation after write v of keys returned
// err.
func (d *truth) invalidated(v int, err error, keys ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, k := range keys {
		d.attempted[k] = max(d.attempted[k], v)
		if err == nil {
			d.acked[k] = max(d.acked[k], v)
		}
	}
}

func (d *truth) read(key string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ver[key]
}

// floor is the oldest version a Get of key that starts now may return:
// the last acknowledged invalidation's, or (strict, the promise of the
// process that made it) the last attempted one's.
func (d *truth) floor(key string, strict bool) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if strict {
		return max(d.acked[key], d.attempted[key])
	}
	return d.acked[key]
}

// load returns the load function of key: it reads the current version.
func (d *truth) load(key string) paddock.LoadFunc[string] {
	return func(context.Context) (string, error) {
		d.loads.Add(1)
		return strconv.Itoa(d.read(key)), nil
	}
}

// row is one scenario's line of the figures table.
type row struct {
	name      string
	mu        sync.Mutex
	gets      int
	errs      int
	stale     int
	faultLat  []time.Duration // Gets while the store was down or slow
	recovered time.Duration   // time to use the store again after it returned
	hasRecov  bool
	retried   string
	notes     []string
	failed    bool
}

func (r *row) note(format string, args ...any) {
	r.mu.Lock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *row) recover(d time.Duration) {
	r.mu.Lock()
	r.recovered, r.hasRecov = d, true
	r.mu.Unlock()
}

// A run is one scenario in progress: its test, its row and its truth.
type run struct {
	t   *testing.T
	row *row
	db  *truth

	staleLogged atomic.Int64
}

// staleErr fails the test for a stale value served, logging the first few.
func (r *run) staleErr(msg string) {
	r.t.Helper()
	switch n := r.staleLogged.Add(1); {
	case n <= 3:
		r.t.Error(msg)
	case n == 4:
		r.t.Error("(more stale values served: see the count in the figures)")
	}
}

// get makes one Fetch and records it: the error, whether the value is
// older than the floor taken when the Get began (a stale value served:
// the test fails), and, if during is set, its latency as a Get made while
// the store was down or slow.
func (r *run) get(ctx context.Context, l *paddock.Loader[string], key string, strict, during bool) (paddock.Result[string], time.Duration, error) {
	r.t.Helper()
	floor := r.db.floor(key, strict)
	start := time.Now()
	res, err := l.Fetch(ctx, key, r.db.load(key))
	d := time.Since(start)
	stale := false
	if err == nil {
		v, perr := strconv.Atoi(res.Value)
		if perr != nil {
			r.t.Errorf("Get %s: value %q is not a version", key, res.Value)
		}
		stale = v < floor
	}
	r.row.mu.Lock()
	r.row.gets++
	if err != nil {
		r.row.errs++
	}
	if stale {
		r.row.stale++
	}
	if during {
		r.row.faultLat = append(r.row.faultLat, d)
	}
	r.row.mu.Unlock()
	if stale {
		r.staleErr(fmt.Sprintf("Get %s served version %s (%v) after the invalidation of version %d returned", key, res.Value, res.Status, floor))
	}
	return res, d, err
}

// publish writes key in the truth, then invalidates it through c, and
// records the outcome.
func (r *run) publish(ctx context.Context, c *paddock.Cache, l *paddock.Loader[string], key string) (int, error) {
	v := r.db.write(key)
	err := c.Invalidate(ctx, l.Key(key))
	r.db.invalidated(v, err, key)
	return v, err
}

// until polls cond, every few milliseconds, for at most limit; it returns
// how long it took and whether cond became true. Polling measures a
// recovery; it orders nothing.
func until(limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		<-tick.C
	}
}

// table formats the rows.
func table(rows []*row) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "scenario\tresult\tGets\terrors\tstale\tp50 down/slow\tmax down/slow\trecovery\tinv. retried\tnotes")
	for _, r := range rows {
		r.mu.Lock()
		res := "ok"
		if r.failed {
			res = "FAIL"
		}
		p50, mx := "-", "-"
		if len(r.faultLat) > 0 {
			s := slices.Clone(r.faultLat)
			slices.Sort(s)
			p50, mx = round(s[len(s)/2]), round(s[len(s)-1])
		}
		rec := "-"
		if r.hasRecov {
			rec = round(r.recovered)
		}
		ret := r.retried
		if ret == "" {
			ret = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", r.name, res, r.gets, r.errs, r.stale, p50, mx, rec, ret, strings.Join(r.notes, "; "))
		r.mu.Unlock()
	}
	_ = w.Flush()
	return b.String()
}

func round(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}
