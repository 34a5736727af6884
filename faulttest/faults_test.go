package faulttest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
)

// TestFaults runs every scenario as a subtest, one after the other (their
// latencies are measured), and logs the figures table at the end. Its
// columns: the Gets made (those that poll for the recovery included), the
// errors returned to callers (a failed invalidation included), the stale
// values served (any is also a test failure), the p50 and max latency of
// the Gets made while the store was down or slow, the time the Cache took
// to use the store again once it was back (the first hit, or the Get that
// had waited on a lease), and the invalidations that a retry applied.
func TestFaults(t *testing.T) {
	redistest.Require(t)
	scenarios := []struct {
		name string
		f    func(*run)
	}{
		{"breaker-after-latency-spike", breakerAfterSpike},
		{"timed-out-lookup-lease", timedOutLookupLease},
		{"lookup-run-after-release", lookupRunAfterRelease},
		{"abandoned-lease-breaker-open", abandonedLeaseBreakerOpen},
		{"corrupt-entries", corruptEntries},
		{"invalidation-while-frozen", invalidationWhileFrozen},
		{"lookups-racing-the-retry", lookupsRacingTheRetry},
		{"dead-redis-at-start", deadAtStart},
		{"frozen-redis-cost", frozenRedisCost},
		{"sigkill-and-restart", sigkillAndRestart},
		{"restart-empty", restartEmpty},
		{"flushall", flushAll},
		{"lease-holder-killed", leaseHolderKilled},
		{"latency-100ms", latency100ms},
		{"latency-2s", latency2s},
		{"sigstop", sigstop},
		{"network-pause", networkPause},
		{"connections-cut", connectionsCut},
		{"near-feed-killed", feedKilled},
		{"near-redis-restart", feedRestart},
		{"near-feed-delayed", feedDelayed},
		{"near-cluster-feed-killed", feedCluster},
	}
	var rows []*row
	for _, sc := range scenarios {
		r := &row{name: sc.name}
		ran := false
		ok := t.Run(sc.name, func(t *testing.T) {
			ran = true
			sc.f(&run{t: t, row: r, db: newTruth()})
		})
		if ran {
			r.failed = !ok
			rows = append(rows, r)
		}
	}
	t.Log("figures:\n" + table(rows))
}

// breakerAfterSpike: with Breaker(1, 200ms), a 2 s
// latency spike and callers whose deadlines (100-150 ms) end before the
// store timeout, the Cache must use Redis again within cooldown + one
// store timeout of the spike's end, whoever took the half-open probe.
func breakerAfterSpike(r *run) {
	t := r.t
	const (
		storeTimeout = 500 * time.Millisecond
		cooldown     = 200 * time.Millisecond
		keys         = 8
		callers      = 4
	)
	srv := redistest.Start(t)
	px := startProxy(t, unixDialer(srv.Socket))
	n := newNode(t, "tcp", px.Addr(), storeTimeout, paddock.Breaker(1, cooldown))
	l := n.loader(t, "b", paddock.TTL(time.Minute))
	ctx := t.Context()
	key := func(i int) string { return fmt.Sprintf("k%d", i%keys) }
	for i := range keys { // warm: every key is in Redis
		for range 2 {
			if _, _, err := r.get(ctx, l, key(i), false, false); err != nil {
				t.Fatal(err)
			}
		}
	}

	var (
		healed    atomic.Bool
		hits      atomic.Int64 // hits after the heal
		afterHeal atomic.Int64 // Gets after the heal
		firstHit  = make(chan struct{})
		hitOnce   sync.Once
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	px.SetLatency(2 * time.Second)
	for c := range callers {
		wg.Go(func() {
			tick := time.NewTicker(5 * time.Millisecond) // a steady request rate
			defer tick.Stop()
			for i := c; ; i += callers {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				h := healed.Load()
				cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond+rand.N(50*time.Millisecond))
				res, _, err := r.get(cctx, l, key(i), false, !h)
				cancel()
				if h {
					afterHeal.Add(1)
					if err == nil && res.Status == paddock.StatusHit {
						hits.Add(1)
						hitOnce.Do(func() { close(firstHit) })
					}
				}
			}
		})
	}
	// The spike lasts long enough for the breaker to open and for several
	// half-open probes to be taken by callers whose deadline ends first.
	spike := time.NewTimer(3 * time.Second)
	<-spike.C
	callsAtHeal := n.calls.Load()
	healed.Store(true)
	px.SetLatency(0)
	heal := time.Now()
	limit := time.NewTimer(5 * time.Second)
	var recovered bool
	select {
	case <-firstHit:
		recovered = true
		r.row.recover(time.Since(heal))
	case <-limit.C:
	}
	close(stop)
	wg.Wait()
	calls := n.calls.Load() - callsAtHeal
	r.row.note("after heal: %d store calls, %d hits in %d Gets", calls, hits.Load(), afterHeal.Load())
	r.row.note("errors are the callers' own deadlines")
	if !recovered {
		t.Fatalf("the Cache never used Redis again: %d store calls and %d hits in %d Gets in the 5s after the latency went away (breaker stuck open)",
			calls, hits.Load(), afterHeal.Load())
	}
	// Cooldown + one store timeout is 700ms; the bound is generous.
	if d := r.row.recovered; d > 3*time.Second {
		t.Errorf("the first hit came %v after the heal; want about cooldown + store timeout (%v)", d, cooldown+storeTimeout)
	}
}

// timedOutLookupLease: a lookup that timed out, but that
// Redis ran and answered late, was granted the key's lease; the next Get
// of the key, with Redis healthy, must not wait on that lease.
func timedOutLookupLease(r *run) {
	t := r.t
	const (
		storeTimeout = 300 * time.Millisecond
		leaseTTL     = 4 * time.Second
	)
	srv := redistest.Start(t)
	px := startProxy(t, unixDialer(srv.Socket))
	n := newNode(t, "tcp", px.Addr(), storeTimeout, paddock.LeaseTTL(leaseTTL))
	l := n.loader(t, "lease")
	ctx := t.Context()
	// A first Get loads the scripts and opens a connection, so that the
	// slow lookup below is one script call that Redis runs at once.
	if _, _, err := r.get(ctx, l, "warm", false, false); err != nil {
		t.Fatal(err)
	}
	px.SetLatency(2 * time.Second)
	before := px.Replies()
	if _, _, err := r.get(ctx, l, "k", false, true); err != nil {
		t.Fatalf("Get with a slow Redis: %v", err)
	}
	// Redis ran the lookup: its reply reached the proxy, late for the Get.
	if _, ok := until(10*time.Second, func() bool { return px.Replies() > before }); !ok {
		t.Fatal("Redis never answered the slow lookup")
	}
	px.SetLatency(0)
	res, d, err := r.get(ctx, l, "k", false, false)
	r.row.recover(d)
	r.row.note("Get after recovery: %v in %v (LeaseTTL %v)", res.Status, round(d), leaseTTL)
	if err != nil {
		t.Fatalf("Get after recovery: %v", err)
	}
	if d > leaseTTL/2 {
		t.Errorf("the Get after recovery took %v (LeaseTTL %v): it waited on the lease its own Cache's timed-out lookup was granted", d, leaseTTL)
	}
}

// corruptEntries: an entry overwritten in Redis with
// something that does not parse is a miss counted in DecodeErrors, is
// replaced by the next fill, can be invalidated, and never opens the
// breaker.
func corruptEntries(r *run) {
	t := r.t
	srv := redistest.Start(t)
	rc := srv.Client(t, nil)
	n := newNode(t, "unix", srv.Socket, 0)
	l := n.loader(t, "c", paddock.TTL(time.Minute), paddock.Tags("t"))
	ctx := t.Context()
	entry := func(k string) string { return "paddock:{" + l.Key(k) + "}:e" }
	// edit rewrites the entry's bytes (see redisstore's entry layout:
	// the fixed part is 76 bytes, the flags byte is at 3, the guard at
	// 12, the fresh-until instant at 52).
	edit := func(f func(b []byte) []byte) func(e string) error {
		return func(e string) error {
			b, err := rc.Get(ctx, e).Bytes()
			if err != nil {
				return err
			}
			return rc.Set(ctx, e, f(b), redis.KeepTTL).Err()
		}
	}
	damage := []struct {
		name string
		do   func(e string) error
	}{
		{"fresh-until garbage", edit(func(b []byte) []byte { copy(b[52:60], "\x7fgarbage"); return b })},
		{"guard negative", edit(func(b []byte) []byte { b[12] = 0xff; return b })},
		{"bad tag list", edit(func(b []byte) []byte { copy(b[80:], "zz"); return b })},
		{"truncated", edit(func(b []byte) []byte { return b[:60] })},
		{"a hash, not a string", func(e string) error {
			_, err := rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Del(ctx, e)
				p.HSet(ctx, e, "v", "garbage")
				return nil
			})
			return err
		}},
		{"another format", edit(func(b []byte) []byte { b[2] = 9; return b })},
		{"negative flag with a value", edit(func(b []byte) []byte { b[3] |= 1; return b })},
		{"fresh marker garbage", func(e string) error {
			return rc.Set(ctx, strings.TrimSuffix(e, "e")+"f", "garbage", redis.KeepTTL).Err()
		}},
	}
	key := func(i int) string { return fmt.Sprintf("k%d", i) }
	for i := range damage {
		r.warm(ctx, l, key(i))
	}
	r.warm(ctx, l, "healthy")
	for i, dm := range damage {
		if err := dm.do(entry(key(i))); err != nil {
			t.Fatalf("%s: %v", dm.name, err)
		}
	}
	// Every damaged key in a row, more of them than the breaker's
	// threshold: each Get loads and counts a decode error.
	fails := make([][]string, len(damage))
	for i := range damage {
		dec := n.stats("c").DecodeErrors
		res, _, err := r.get(ctx, l, key(i), false, false)
		if err != nil || res.Status != paddock.StatusLoaded {
			fails[i] = append(fails[i], fmt.Sprintf("the Get was %v, %v, not a load", res.Status, err))
		}
		if n.stats("c").DecodeErrors <= dec {
			fails[i] = append(fails[i], "DecodeErrors did not count it")
		}
	}
	// The breaker did not open: a healthy key is still served by Redis.
	if res, _, err := r.get(ctx, l, "healthy", false, false); err != nil || res.Status != paddock.StatusHit {
		t.Errorf("a healthy key after %d damaged ones: %v, %v; want a hit (the breaker opened)", len(damage), res.Status, err)
	}
	// The loads replaced the damaged entries; damaged again, they can be
	// invalidated.
	for i, dm := range damage {
		if res, _, err := r.get(ctx, l, key(i), false, false); err != nil || res.Status != paddock.StatusHit {
			fails[i] = append(fails[i], fmt.Sprintf("the next Get was %v, %v, not a hit (not replaced)", res.Status, err))
		}
		if err := dm.do(entry(key(i))); err != nil {
			t.Fatalf("%s: %v", dm.name, err)
		}
		if err := l.Invalidate(ctx, key(i)); err != nil {
			fails[i] = append(fails[i], fmt.Sprintf("Invalidate: %v", err))
		}
	}
	var broken []string
	for i, dm := range damage {
		if len(fails[i]) > 0 {
			broken = append(broken, dm.name)
			t.Errorf("%s: %s", dm.name, strings.Join(fails[i], "; "))
		}
	}
	se, de := n.stats("c").StoreErrors, n.stats("c").DecodeErrors
	r.row.note("%d kinds of damage, %d handled as misses; DecodeErrors %d, StoreErrors %d", len(damage), len(damage)-len(broken), de, se)
	if se != 0 {
		t.Errorf("StoreErrors = %d: damaged entries were counted as store failures", se)
	}
}

// invalidationWhileFrozen: Redis is frozen (SIGSTOP)
// while an article is published. InvalidateTags returns an error wrapping
// ErrStoreUnavailable; this process never serves the old homepage after
// that, and once Redis is continued the homepage shows the article within
// the retry delay (at most 1 s) here and in a second process.
func invalidationWhileFrozen(r *run) {
	t := r.t
	const storeTimeout = 100 * time.Millisecond
	srv := redistest.Start(t)
	a := newNode(t, "unix", srv.Socket, storeTimeout)
	b := newNode(t, "unix", srv.Socket, storeTimeout)
	opts := []paddock.LoaderOption{paddock.TTL(time.Minute), paddock.Tags("articles")}
	pa, pb := a.loader(t, "page", opts...), b.loader(t, "page", opts...)
	ctx := t.Context()
	r.db.write("home")
	for _, l := range []*paddock.Loader[string]{pa, pa, pb} { // both processes hold the page
		if _, _, err := r.get(ctx, l, "home", false, false); err != nil {
			t.Fatal(err)
		}
	}

	srv.Pause(t)
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume(t)
		}
	}()
	v := r.db.write("home") // publish: the source of truth first
	start := time.Now()
	err := a.cache.InvalidateTags(ctx, "articles")
	took := time.Since(start)
	r.db.invalidated(v, err, "home")
	r.row.mu.Lock()
	r.row.faultLat = append(r.row.faultLat, took)
	if err != nil {
		r.row.errs++
	}
	r.row.mu.Unlock()
	if !errors.Is(err, paddock.ErrStoreUnavailable) {
		t.Errorf("InvalidateTags on a frozen Redis: %v; want an error wrapping ErrStoreUnavailable", err)
	}
	// While frozen, this process does not serve the old page.
	if _, _, err := r.get(ctx, pa, "home", true, true); err != nil {
		t.Errorf("Get while frozen: %v", err)
	}
	srv.Resume(t)
	resumed = true
	back := time.Now()

	// Every Get in this process is checked against the published version
	// (strict); the second process's must reach it.
	var seenA, seenB time.Duration
	_, ok := until(4*time.Second, func() bool {
		if seenA == 0 {
			if res, _, err := r.get(ctx, pa, "home", true, false); err == nil && res.Value == fmt.Sprint(v) {
				seenA = time.Since(back)
			}
		} else if _, _, err := r.get(ctx, pa, "home", true, false); err != nil {
			t.Errorf("Get in this process: %v", err)
		}
		if seenB == 0 {
			if res, _, err := r.get(ctx, pb, "home", false, false); err == nil && res.Value == fmt.Sprint(v) {
				seenB = time.Since(back)
			}
		}
		return seenA != 0 && seenB != 0
	})
	// Let the retry land, if the Cache keeps one, before the figures.
	_, acked := until(3*time.Second, func() bool { return a.stats("").InvalidationsPending == 0 })
	inv := a.stats("")
	r.row.retried = fmt.Sprint(inv.InvalidationsRetried)
	r.row.note("pending at the end: %d, dropped: %d", inv.InvalidationsPending, inv.InvalidationsDropped)
	if ok {
		r.row.recover(max(seenA, seenB))
	}
	r.row.note("this process saw the article %s after SIGCONT, the second %s", seen(seenA), seen(seenB))
	if !ok {
		t.Errorf("4s after Redis answered again: this process saw the article: %s, the second process: %s (the failed invalidation was lost)", seen(seenA), seen(seenB))
	}
	if !acked {
		t.Errorf("the invalidation is still pending 3s after Redis came back")
	}
	// The promise is the retry delay, at most 1 s; the bound is generous.
	if seenB > 3*time.Second {
		t.Errorf("the second process saw the article %v after Redis came back; want within the retry delay (<= 1s)", seenB)
	}
}

func seen(d time.Duration) string {
	if d == 0 {
		return "never"
	}
	return round(d)
}

// deadAtStart: with Redis refusing connections from the
// start, the first Gets cost at most one store timeout in all, then next to
// nothing while the breaker is open; once Redis is up the Cache uses it.
func deadAtStart(r *run) {
	t := r.t
	srv := redistest.Start(t)
	srv.Stop() // the socket file stays: connections are refused
	n := newNode(t, "unix", srv.Socket, 0)
	l := n.loader(t, "dead")
	ctx := t.Context()
	var lat []time.Duration
	for i := range 5 {
		_, d, err := r.get(ctx, l, fmt.Sprintf("k%d", i), false, true)
		if err != nil {
			t.Errorf("Get %d with Redis refusing: %v", i, err)
		}
		lat = append(lat, d)
	}
	r.row.note("first 5 Gets: %v (store timeout %v)", fmtDurations(lat), paddock.DefaultStoreTimeout)
	// At most one store timeout once, then next to nothing; both bounds
	// are generous.
	if lat[0] > 2*paddock.DefaultStoreTimeout {
		t.Errorf("the first Get with Redis refusing connections took %v; want at most about one store timeout (%v)", lat[0], paddock.DefaultStoreTimeout)
	}
	for i, d := range lat[1:] {
		if d > paddock.DefaultStoreTimeout/4 {
			t.Errorf("Get %d with Redis refusing connections took %v (first 5: %v); want next to nothing once the first has paid (store timeout %v)",
				i+2, d, fmtDurations(lat), paddock.DefaultStoreTimeout)
		}
	}
	srv.Restart(t)
	d, ok := until(10*time.Second, func() bool {
		res, _, err := r.get(ctx, l, "back", false, false)
		return err == nil && res.Status == paddock.StatusHit
	})
	if !ok {
		t.Fatal("the Cache never used Redis once it was up")
	}
	r.row.recover(d)
}

func fmtDurations(ds []time.Duration) string {
	s := ""
	for i, d := range ds {
		if i > 0 {
			s += " "
		}
		s += round(d)
	}
	return s
}

// untilHit gets key until the Get is a hit (the Cache uses Redis again)
// and returns how long that took; it fails the test after 10 s.
func (r *run) untilHit(ctx context.Context, l *paddock.Loader[string], key string) time.Duration {
	r.t.Helper()
	d, ok := until(10*time.Second, func() bool {
		res, _, err := r.get(ctx, l, key, false, false)
		return err == nil && res.Status == paddock.StatusHit
	})
	if !ok {
		r.t.Fatal("the Cache never used Redis again")
	}
	return d
}

// warm fills keys: a load, then a hit.
func (r *run) warm(ctx context.Context, l *paddock.Loader[string], keys ...string) {
	r.t.Helper()
	for _, k := range keys {
		for range 2 {
			if _, _, err := r.get(ctx, l, k, false, false); err != nil {
				r.t.Fatal(err)
			}
		}
	}
}

// sigkillAndRestart: Redis killed with SIGKILL, Gets while it is down,
// an invalidation that fails, then Redis restarted empty on the same
// socket. No Get serves a value older than an acknowledged invalidation.
func sigkillAndRestart(r *run) {
	t := r.t
	srv := redistest.Start(t)
	n := newNode(t, "unix", srv.Socket, 0)
	l := n.loader(t, "kill", paddock.TTL(time.Minute))
	ctx := t.Context()
	keys := []string{"k0", "k1", "k2", "k3"}
	r.db.write("k0")
	r.warm(ctx, l, keys...)
	if _, err := r.publish(ctx, n.cache, l, "k0"); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for i := range 20 {
		r.get(ctx, l, keys[i%len(keys)], false, true)
	}
	if _, err := r.publish(ctx, n.cache, l, "k1"); err == nil {
		t.Error("an invalidation with Redis down returned no error")
	} else {
		r.row.note("invalidation while down: %v", errors.Is(err, paddock.ErrStoreUnavailable))
	}
	for i := range 20 {
		r.get(ctx, l, keys[i%len(keys)], true, true)
	}
	srv.Restart(t)
	r.row.recover(r.untilHit(ctx, l, "k2"))
	for _, k := range keys {
		r.get(ctx, l, k, true, false)
	}
	retried(r, n)
}

// retried puts the Cache's retried invalidations in the row, if Stats
// counts them.
func retried(r *run, n *node) {
	r.row.retried = fmt.Sprint(n.stats("").InvalidationsRetried)
}

// restartEmpty: Redis restarted empty on the same socket while a load
// holds a lease on the old server; an invalidation acknowledged by the new
// server fences that load's fill (a new epoch).
func restartEmpty(r *run) {
	t := r.t
	srv := redistest.Start(t)
	a := newNode(t, "unix", srv.Socket, 0)
	b := newNode(t, "unix", srv.Socket, 0)
	la, lb := a.loader(t, "re", paddock.TTL(time.Minute)), b.loader(t, "re", paddock.TTL(time.Minute))
	ctx := t.Context()
	r.warm(ctx, la, "k0", "k1")
	r.warm(ctx, lb, "k0")
	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = la.Fetch(ctx, "slow", func(context.Context) (string, error) {
			v := r.db.read("slow") // read before the invalidation below
			close(entered)
			<-release
			return fmt.Sprint(v), nil
		})
	}()
	<-entered
	srv.Restart(t)
	r.row.recover(r.untilHit(ctx, la, "k0"))
	if _, err := r.publish(ctx, b.cache, lb, "slow"); err != nil {
		t.Errorf("invalidation after the restart: %v", err)
	}
	close(release)
	<-done
	for _, l := range []*paddock.Loader[string]{la, lb, la, lb} {
		r.get(ctx, l, "slow", false, false)
	}
	retried(r, b)
	refused := a.stats("re").FillsRefused
	r.row.note("fills refused: %d", refused)
}

// flushAll: FLUSHALL while a load is running; an invalidation after it
// fences the load's fill, and no Get serves the old value.
func flushAll(r *run) {
	t := r.t
	srv := redistest.Start(t)
	rc := srv.Client(t, nil)
	n := newNode(t, "unix", srv.Socket, 0)
	l := n.loader(t, "fl", paddock.TTL(time.Minute))
	ctx := t.Context()
	r.warm(ctx, l, "k0", "k1")
	if _, err := r.publish(ctx, n.cache, l, "k1"); err != nil {
		t.Fatal(err)
	}
	r.warm(ctx, l, "k1")
	entered, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		_, _ = l.Fetch(ctx, "slow", func(context.Context) (string, error) {
			v := r.db.read("slow")
			close(entered)
			<-release
			return fmt.Sprint(v), nil
		})
	}()
	<-entered
	if err := rc.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	d, ok := until(10*time.Second, func() bool {
		res, _, err := r.get(ctx, l, "k0", false, false)
		return err == nil && res.Status == paddock.StatusHit
	})
	if !ok {
		t.Fatal("the Cache never hit again")
	}
	r.row.recover(d)
	if _, err := r.publish(ctx, n.cache, l, "slow"); err != nil {
		t.Errorf("invalidation after FLUSHALL: %v", err)
	}
	close(release)
	<-done
	for _, k := range []string{"slow", "slow", "k0", "k1"} {
		r.get(ctx, l, k, false, false)
	}
	retried(r, n)
	refused := n.stats("fl").FillsRefused
	r.row.note("fills refused: %d", refused)
}

// leaseHolderKilled: the process holding a key's lease is cut off from
// Redis in the middle of its load; another process takes over once the
// lease expires.
func leaseHolderKilled(r *run) {
	t := r.t
	const leaseTTL = time.Second
	srv := redistest.Start(t)
	px := startProxy(t, unixDialer(srv.Socket))
	a := newNode(t, "tcp", px.Addr(), 0, paddock.LeaseTTL(leaseTTL))
	b := newNode(t, "unix", srv.Socket, 0, paddock.LeaseTTL(leaseTTL))
	la, lb := a.loader(t, "lh"), b.loader(t, "lh")
	ctx := t.Context()
	entered, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		_, _ = la.Fetch(ctx, "k", func(context.Context) (string, error) {
			close(entered)
			<-release
			return fmt.Sprint(r.db.read("k")), nil
		})
	}()
	<-entered
	// The holder is gone: no connection of it reaches Redis any more.
	px.Refuse(true)
	px.Cut()
	res, d, err := r.get(ctx, lb, "k", false, true)
	close(release)
	<-done
	r.row.recover(d)
	r.row.note("takeover after %s, LeaseTTL %v (%v)", round(d), leaseTTL, res.Status)
	if err != nil {
		t.Fatalf("Get while the lease holder is gone: %v", err)
	}
	if d > leaseTTL+5*time.Second {
		t.Errorf("the takeover took %v with a lease TTL of %v", d, leaseTTL)
	}
}

// latency100ms: every reply 100 ms late; hits still come from Redis.
func latency100ms(r *run) {
	t := r.t
	srv := redistest.Start(t)
	px := startProxy(t, unixDialer(srv.Socket))
	n := newNode(t, "tcp", px.Addr(), 0)
	l := n.loader(t, "lat", paddock.TTL(time.Minute))
	ctx := t.Context()
	keys := []string{"k0", "k1", "k2", "k3"}
	r.warm(ctx, l, keys...)
	px.SetLatency(100 * time.Millisecond)
	hits := 0
	for i := range 12 {
		if res, _, err := r.get(ctx, l, keys[i%len(keys)], false, true); err == nil && res.Status == paddock.StatusHit {
			hits++
		}
	}
	px.SetLatency(0)
	r.row.note("%d of 12 Gets were hits", hits)
	if hits == 0 {
		t.Error("no hit with 100ms of latency and a store timeout of 1s")
	}
	d, ok := until(10*time.Second, func() bool {
		res, d, err := r.get(ctx, l, "k0", false, false)
		return err == nil && res.Status == paddock.StatusHit && d < 50*time.Millisecond
	})
	if !ok {
		t.Fatal("no fast hit after the latency went away")
	}
	r.row.recover(d)
}

// networkPause: all traffic to Redis held (a partition), concurrent Gets,
// then the traffic let through again.
func networkPause(r *run) {
	t := r.t
	srv := redistest.Start(t)
	px := startProxy(t, unixDialer(srv.Socket))
	n := newNode(t, "tcp", px.Addr(), 0)
	l := n.loader(t, "np", paddock.TTL(time.Minute))
	ctx := t.Context()
	keys := []string{"k0", "k1", "k2", "k3"}
	r.warm(ctx, l, keys...)
	px.Pause()
	var wg sync.WaitGroup
	for c := range len(keys) {
		wg.Go(func() {
			for i := range 3 {
				r.get(ctx, l, keys[(c+i)%len(keys)], false, true)
			}
		})
	}
	wg.Wait()
	px.Resume()
	r.row.recover(r.untilHit(ctx, l, "k0"))
}

// latency2s: every reply 2 s late, past the store timeout: Gets load
// without the store, the breaker opens, and the Cache uses Redis again
// once the latency goes away.
func latency2s(r *run) {
	t := r.t
	srv := redistest.Start(t)
	px := startProxy(t, unixDialer(srv.Socket))
	n := newNode(t, "tcp", px.Addr(), 0)
	l := n.loader(t, "lat2", paddock.TTL(time.Minute))
	ctx := t.Context()
	keys := []string{"k0", "k1", "k2", "k3"}
	r.warm(ctx, l, keys...)
	px.SetLatency(2 * time.Second)
	for i := range 12 {
		if _, _, err := r.get(ctx, l, keys[i%len(keys)], false, true); err != nil {
			t.Errorf("Get with 2s of latency: %v", err)
		}
	}
	px.SetLatency(0)
	r.row.recover(r.untilHit(ctx, l, "k0"))
	r.row.note("store errors: %d", n.stats("lat2").StoreErrors)
}

// sigstop: Redis frozen (SIGSTOP) under concurrent Gets, then continued
// (SIGCONT).
func sigstop(r *run) {
	t := r.t
	srv := redistest.Start(t)
	n := newNode(t, "unix", srv.Socket, 0)
	l := n.loader(t, "stop", paddock.TTL(time.Minute))
	ctx := t.Context()
	keys := []string{"k0", "k1", "k2", "k3"}
	r.warm(ctx, l, keys...)
	srv.Pause(t)
	var wg sync.WaitGroup
	for c := range len(keys) {
		wg.Go(func() {
			for i := range 3 {
				if _, _, err := r.get(ctx, l, keys[(c+i)%len(keys)], false, true); err != nil {
					t.Errorf("Get with Redis frozen: %v", err)
				}
			}
		})
	}
	wg.Wait()
	srv.Resume(t)
	r.row.recover(r.untilHit(ctx, l, "k0"))
}

// connectionsCut: every connection to Redis cut and new ones refused
// while an article is published; the invalidation fails, this process
// serves nothing older, and the retry applies it once connections are let
// through again, for a second process too.
func connectionsCut(r *run) {
	t := r.t
	srv := redistest.Start(t)
	px := startProxy(t, unixDialer(srv.Socket))
	a := newNode(t, "tcp", px.Addr(), 0)
	b := newNode(t, "unix", srv.Socket, 0)
	la, lb := a.loader(t, "cut", paddock.TTL(time.Minute)), b.loader(t, "cut", paddock.TTL(time.Minute))
	ctx := t.Context()
	keys := []string{"k0", "k1", "k2", "k3"}
	r.warm(ctx, la, keys...)
	r.warm(ctx, lb, keys...)
	px.Refuse(true)
	px.Cut()
	if _, err := r.publish(ctx, a.cache, la, "k0"); !errors.Is(err, paddock.ErrStoreUnavailable) {
		t.Errorf("invalidation with the connections cut: %v; want an error wrapping ErrStoreUnavailable", err)
	}
	for i := range 12 {
		if _, _, err := r.get(ctx, la, keys[i%len(keys)], true, true); err != nil {
			t.Errorf("Get with the connections cut: %v", err)
		}
	}
	px.Refuse(false)
	want := fmt.Sprint(r.db.read("k0"))
	d, ok := until(5*time.Second, func() bool {
		ra, _, erra := r.get(ctx, la, "k0", true, false)
		rb, _, errb := r.get(ctx, lb, "k0", false, false)
		return erra == nil && errb == nil && ra.Status == paddock.StatusHit && rb.Value == want
	})
	if !ok {
		t.Fatal("the invalidation never reached the second process, or the Cache never hit again")
	}
	r.row.recover(d)
	retried(r, a)
}

// lookupsRacingTheRetry: the promise of the process that made a failed
// invalidation holds across the moment its retry is acknowledged. Redis is
// frozen while pages that share a tag are published; at SIGCONT a burst of
// Gets of every page races the retry: a lookup that Redis ran before the
// retry (and so found the old page) must not be served because its reply
// was handled after the acknowledgement. The race needs no help from the
// test, so it runs several rounds.
func lookupsRacingTheRetry(r *run) {
	t := r.t
	const (
		storeTimeout = 100 * time.Millisecond
		pages        = 8
		rounds       = 8
	)
	srv := redistest.Start(t)
	// A short cooldown: the scenario is about the acknowledgement, and
	// the timeouts of the freeze open the breaker.
	a := newNode(t, "unix", srv.Socket, storeTimeout, paddock.Breaker(5, 20*time.Millisecond))
	l := a.loader(t, "race", paddock.TTL(time.Minute), paddock.Tags("articles"))
	ctx := t.Context()
	keys := make([]string, pages)
	for i := range keys {
		keys[i] = fmt.Sprintf("p%d", i)
	}
	for round := range rounds {
		d, ok := until(5*time.Second, func() bool { // every page in Redis, the breaker closed
			hits := 0
			for _, k := range keys {
				if res, _, err := r.get(ctx, l, k, true, false); err == nil && res.Status == paddock.StatusHit {
					hits++
				}
			}
			return hits == pages && a.stats("").InvalidationsPending == 0
		})
		if !ok {
			t.Fatalf("round %d: the pages were not all hits again after %v", round, d)
		}
		srv.Pause(t)
		vs := make([]int, pages)
		for i, k := range keys {
			vs[i] = r.db.write(k)
		}
		err := a.cache.InvalidateTags(ctx, "articles")
		for i, k := range keys {
			r.db.invalidated(vs[i], err, k)
		}
		if err != nil {
			r.row.mu.Lock()
			r.row.errs++
			r.row.mu.Unlock()
		}
		// The freeze lasts a little longer each round, so that the retry
		// is at another point of its backoff at SIGCONT.
		for range round % 4 {
			r.get(ctx, l, keys[0], true, true)
		}
		srv.Resume(t)
		// Every page is read over and over until the retry is
		// acknowledged, and a little after: lookups are in flight when
		// the acknowledgement arrives.
		back := time.Now()
		var wg sync.WaitGroup
		for _, k := range keys {
			wg.Go(func() {
				after := 0
				for limit := back.Add(3 * time.Second); after < 5 && time.Now().Before(limit); {
					if a.stats("").InvalidationsPending == 0 {
						after++
					}
					r.get(ctx, l, k, true, true)
				}
			})
		}
		wg.Wait()
		// The retry delay is at most 1 s once the store answers; the
		// bound is generous.
		if p := a.stats("").InvalidationsPending; p != 0 {
			t.Fatalf("round %d: %d invalidation(s) still pending %v after SIGCONT", round, p, time.Since(back).Round(time.Millisecond))
		}
	}
	retried(r, a)
	r.row.note("%d rounds of %d pages", rounds, pages)
}

// lookupRunAfterRelease: a lookup that timed out may reach Redis after the
// Cache gave up the lease it might have been granted (a frozen link
// delivers it late, on a connection the client has closed): Redis then
// grants the lease to a token nobody holds, after its release. The next
// Get of the key must not wait on that lease either.
func lookupRunAfterRelease(r *run) {
	t := r.t
	const (
		storeTimeout = 100 * time.Millisecond
		leaseTTL     = 3 * time.Second
	)
	srv := redistest.Start(t)
	px := startProxy(t, unixDialer(srv.Socket))
	client := redis.NewClient(clientOptions("tcp", px.Addr(), storeTimeout))
	t.Cleanup(func() { _ = client.Close() })
	s, err := redisstore.New(client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	w := &releaseWatch{Store: s, key: "late:k", released: make(chan struct{})}
	c, err := paddock.New(w, paddock.StoreTimeout(storeTimeout), paddock.LeaseTTL(leaseTTL), paddock.Breaker(5, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	l, err := paddock.NewLoader[string](c, "late")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	r.warm(ctx, l, "warm") // the scripts are loaded; one connection is open
	px.HoldOpen()
	if _, _, err := r.get(ctx, l, "k", false, true); err != nil {
		t.Fatalf("Get with its lookup held: %v", err)
	}
	select {
	case <-w.released:
	case <-time.After(10 * time.Second):
		t.Fatal("the Cache never gave up the lease its timed-out lookup may have been granted")
	}
	before := px.Replies()
	px.ThawOpen()
	// Redis answered the held lookup: it ran, after the release.
	if _, ok := until(5*time.Second, func() bool { return px.Replies() > before }); !ok {
		t.Fatal("the held lookup never ran in Redis")
	}
	res, d, err := r.get(ctx, l, "k", false, false)
	r.row.recover(d)
	r.row.note("Get after the late lookup: %v in %v (LeaseTTL %v)", res.Status, round(d), leaseTTL)
	if err != nil {
		t.Fatalf("Get after the late lookup: %v", err)
	}
	if d > leaseTTL/2 {
		t.Errorf("the Get took %v (LeaseTTL %v): it waited on a lease that Redis granted to the Cache's abandoned token after the Cache had released it", d, leaseTTL)
	}
}

// releaseWatch is a redisstore.Store that reports the first successful
// Release of one key.
type releaseWatch struct {
	*redisstore.Store
	key      string
	once     sync.Once
	released chan struct{}
}

func (w *releaseWatch) Release(ctx context.Context, key string, lease uint64) error {
	err := w.Store.Release(ctx, key, lease)
	if err == nil && key == w.key {
		w.once.Do(func() { close(w.released) })
	}
	return err
}

// frozenRedisCost: a frozen Redis (SIGSTOP) costs one store timeout, then
// next to nothing per Get: the call that used up the store timeout opens
// the breaker at once. (go-redis reports a timed-out read as an i/o
// timeout, not as the context's deadline.)
func frozenRedisCost(r *run) {
	t := r.t
	srv := redistest.Start(t)
	n := newNode(t, "unix", srv.Socket, 0)
	l := n.loader(t, "fz", paddock.TTL(time.Minute))
	ctx := t.Context()
	keys := []string{"k0", "k1", "k2", "k3", "k4"}
	r.warm(ctx, l, keys...)
	srv.Pause(t)
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume(t)
		}
	}()
	var lat []time.Duration
	for _, k := range keys {
		_, d, err := r.get(ctx, l, k, false, true)
		if err != nil {
			t.Errorf("Get %s with Redis frozen: %v", k, err)
		}
		lat = append(lat, d)
	}
	srv.Resume(t)
	resumed = true
	r.row.note("first 5 Gets: %v (store timeout %v)", fmtDurations(lat), paddock.DefaultStoreTimeout)
	for i, d := range lat[1:] {
		if d > paddock.DefaultStoreTimeout/2 {
			t.Errorf("Get %d with Redis frozen took %v (first 5: %v); want next to nothing once one call has used up the store timeout (%v)",
				i+2, d, fmtDurations(lat), paddock.DefaultStoreTimeout)
		}
	}
	r.row.recover(r.untilHit(ctx, l, "k0"))
}

// abandonedLeaseBreakerOpen: a lookup that timed out on a frozen Redis may
// have been granted the lease; the next Get of the key in this process is
// to take it back with the same token. If that Get is skipped by the open
// breaker, the token must not be lost: once the breaker closes, a Get of
// the key must not wait on the lease Redis granted to it.
func abandonedLeaseBreakerOpen(r *run) {
	t := r.t
	const (
		storeTimeout = 100 * time.Millisecond
		leaseTTL     = 3 * time.Second
		cooldown     = 300 * time.Millisecond
	)
	srv := redistest.Start(t)
	n := newNode(t, "unix", srv.Socket, storeTimeout, paddock.LeaseTTL(leaseTTL), paddock.Breaker(1, cooldown))
	l := n.loader(t, "ab")
	ctx := t.Context()
	r.warm(ctx, l, "warm")
	srv.Pause(t)
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume(t)
		}
	}()
	if _, _, err := r.get(ctx, l, "k", false, true); err != nil { // times out: the breaker opens
		t.Fatalf("Get with Redis frozen: %v", err)
	}
	srv.Resume(t)
	resumed = true
	// Redis now runs the lookup it held and grants the lease. This Get
	// comes while the breaker is open: it cannot use the token.
	if _, _, err := r.get(ctx, l, "k", false, true); err != nil {
		t.Fatalf("Get with the breaker open: %v", err)
	}
	// Once the breaker is closed again (the first hit of another key),
	// a Get of k must not wait on the lease.
	r.untilHit(ctx, l, "warm")
	res, d, err := r.get(ctx, l, "k", false, false)
	r.row.recover(d)
	r.row.note("Get of the key after the breaker closed: %v in %v (LeaseTTL %v)", res.Status, round(d), leaseTTL)
	if err != nil {
		t.Fatal(err)
	}
	if d > leaseTTL/2 {
		t.Errorf("the Get took %v (LeaseTTL %v): it waited on the lease its own Cache's timed-out lookup was granted", d, leaseTTL)
	}
}
