package redisstore_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// feedEvent is one call a Store's feed made to its listener: up or down,
// or a change.
type feedEvent struct {
	up         *bool
	keys, tags []string
	at         time.Time
}

func (e feedEvent) String() string {
	if e.up != nil {
		return fmt.Sprintf("up(%v)", *e.up)
	}
	return fmt.Sprintf("changed(%q, %q)", e.keys, e.tags)
}

// feedRec records a listener's calls, in order.
type feedRec struct{ ch chan feedEvent }

func newFeedRec() *feedRec { return &feedRec{ch: make(chan feedEvent, 10_000)} }

func (r *feedRec) changed(keys, tags []string) {
	r.ch <- feedEvent{keys: slices.Clone(keys), tags: slices.Clone(tags), at: time.Now()}
}

func (r *feedRec) up(up bool) { r.ch <- feedEvent{up: &up, at: time.Now()} }

// next returns the next call, failing the test after a generous bound.
func (r *feedRec) next(t testing.TB) feedEvent {
	t.Helper()
	select {
	case e := <-r.ch:
		return e
	case <-time.After(time.Minute):
		t.Fatal("timed out waiting for the feed")
		return feedEvent{}
	}
}

// wantUp checks that the next call is up(want).
func (r *feedRec) wantUp(t testing.TB, want bool) {
	t.Helper()
	if e := r.next(t); e.up == nil || *e.up != want {
		t.Fatalf("feed: %v, want up(%v)", e, want)
	}
}

// wantChange checks that the next call is changed(keys, tags).
func (r *feedRec) wantChange(t testing.TB, keys, tags []string) {
	t.Helper()
	e := r.next(t)
	if e.up != nil || !slices.Equal(e.keys, keys) || !slices.Equal(e.tags, tags) {
		t.Fatalf("feed: %v, want changed(%q, %q)", e, keys, tags)
	}
}

// wantChanges checks that the next calls are changes whose keys and tags,
// together, are keys and tags (one call per slot on Cluster).
func (r *feedRec) wantChanges(t testing.TB, keys, tags []string) {
	t.Helper()
	keys, tags = slices.Sorted(slices.Values(keys)), slices.Sorted(slices.Values(tags))
	var gotKeys, gotTags []string
	for len(gotKeys) < len(keys) || len(gotTags) < len(tags) {
		e := r.next(t)
		if e.up != nil {
			t.Fatalf("feed: %v, want changed(%q, %q)", e, keys, tags)
		}
		gotKeys, gotTags = append(gotKeys, e.keys...), append(gotTags, e.tags...)
	}
	slices.Sort(gotKeys)
	slices.Sort(gotTags)
	if !slices.Equal(gotKeys, keys) || !slices.Equal(gotTags, tags) {
		t.Fatalf("feed: keys %q and tags %q, want %q and %q", gotKeys, gotTags, keys, tags)
	}
}

// wantNothing checks that no call is waiting.
func (r *feedRec) wantNothing(t testing.TB) {
	t.Helper()
	select {
	case e := <-r.ch:
		t.Fatalf("feed: %v, want nothing", e)
	default:
	}
}

// lease takes key's lease on s with token and returns the ticket.
func lease(t testing.TB, s store.Store, key string, token uint64) store.Ticket {
	t.Helper()
	lk, err := s.Lookup(context.Background(), key, store.LookupRequest{Lease: token, LeaseTTL: time.Minute})
	if err != nil || !lk.Lease {
		t.Fatalf("lookup of %s with token %d: %+v, %v; want the lease", key, token, lk, err)
	}
	return lk.Ticket
}

// TestWatchWokenByLeaseEnd: a caller of one Store waiting for the lease of
// another Store's caller (a lookup answered Held) is woken through Redis
// when the holder fills, releases, or an invalidation breaks the lease;
// the watches of other keys are not.
func TestWatchWokenByLeaseEnd(t *testing.T) { twoStores(t, "wk-", testWatchWoken) }

// twoStores runs test with two Stores (two processes) on one server and
// one prefix (prefix and the layout's name), standalone and with the
// Cluster layout forced.
func twoStores(t *testing.T, prefix string, test func(t *testing.T, a, b *redisstore.Store)) {
	srv := redistest.Start(t)
	for _, layout := range []struct {
		name string
		opts []redisstore.Option
	}{
		{"standalone", nil},
		{"cluster", []redisstore.Option{redisstore.ForceCluster()}},
	} {
		t.Run("layout="+layout.name, func(t *testing.T) {
			opts := append([]redisstore.Option{redisstore.Prefix(prefix + layout.name + ":")}, layout.opts...)
			test(t, newStore(t, srv.Client(t, nil), opts...), newStore(t, srv.Client(t, nil), opts...))
		})
	}
}

func testWatchWoken(t *testing.T, holder, waiter *redisstore.Store) {
	ctx := t.Context()
	wait(t, redisstore.Subscribed(waiter), "the waiter's subscription")
	other, stopOther := waiter.Watch("w:other")
	defer stopOther()
	for _, end := range []struct {
		name string
		end  func(key string, tk store.Ticket) error
	}{
		{"fill", func(key string, tk store.Ticket) error {
			_, err := holder.Fill(ctx, key, &store.Fill{Value: []byte("v"), Ticket: tk, Lease: 1, TTL: time.Minute})
			return err
		}},
		{"refused-fill", func(key string, tk store.Ticket) error {
			_, err := holder.Fill(ctx, key, &store.Fill{Value: []byte("v"), Ticket: store.Ticket{Epoch: tk.Epoch + 1}, Lease: 1, TTL: time.Minute})
			return err
		}},
		{"release", func(key string, _ store.Ticket) error { return holder.Release(ctx, key, 1) }},
		{"invalidate", func(key string, _ store.Ticket) error {
			return holder.Invalidate(ctx, store.Invalidation{Keys: []string{"w:unrelated", key}})
		}},
		{"soft-invalidate", func(key string, _ store.Ticket) error {
			return holder.Invalidate(ctx, store.Invalidation{Keys: []string{key}, Soft: true})
		}},
	} {
		key := "w:{" + end.name + "}"
		tk := lease(t, holder, key, 1)
		wake, stop := waiter.Watch(key)
		lk, err := waiter.Lookup(ctx, key, store.LookupRequest{Lease: 2, LeaseTTL: time.Minute})
		if err != nil || !lk.Held {
			t.Fatalf("%s: the waiter's lookup: %+v, %v; want held", end.name, lk, err)
		}
		select {
		case <-wake:
			t.Fatalf("%s: woken before the lease ended", end.name)
		default:
		}
		if err := end.end(key, tk); err != nil {
			t.Fatalf("%s: %v", end.name, err)
		}
		wait(t, wake, end.name+"'s wake-up")
		stop()
	}
	select {
	case <-other:
		t.Fatal("the watch of a key nobody ended a lease of was woken")
	default:
	}
}

// TestWakeOnlyWhenWaited: a fill, a release or an invalidation of a key
// whose lease no lookup asking for it found held publishes no wake-up; one
// whose lease such a lookup found held publishes one, naming the key.
func TestWakeOnlyWhenWaited(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	s := newStore(t, srv.Client(t, nil), redisstore.Prefix("wo:"))
	wakeCh, _ := redisstore.Channels(s)
	ps := srv.Client(t, nil).Subscribe(ctx, wakeCh)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil { // the confirmation
		t.Fatal(err)
	}
	// Uncontended: nobody waits.
	tk := lease(t, s, "q:a", 1)
	if _, err := s.Fill(ctx, "q:a", &store.Fill{Value: []byte("v"), Ticket: tk, Lease: 1, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	lease(t, s, "q:b", 1)
	if err := s.Release(ctx, "q:b", 1); err != nil {
		t.Fatal(err)
	}
	lease(t, s, "q:c", 1)
	if err := s.Invalidate(ctx, store.Invalidation{Keys: []string{"q:c"}, Tags: []string{"t"}}); err != nil {
		t.Fatal(err)
	}
	// A read-only lookup (a Peek, a Set's) that finds the lease held
	// waits for nothing.
	tk = lease(t, s, "q:d", 1)
	if lk, err := s.Lookup(ctx, "q:d", store.LookupRequest{}); err != nil || !lk.Held {
		t.Fatalf("read-only lookup: %+v, %v; want held", lk, err)
	}
	if _, err := s.Fill(ctx, "q:d", &store.Fill{Value: []byte("v"), Ticket: tk, Lease: 1, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// Contended: a lookup found the lease held.
	const key = "q:{contended}%"
	tk = lease(t, s, key, 1)
	if lk, err := s.Lookup(ctx, key, store.LookupRequest{Lease: 2, LeaseTTL: time.Minute}); err != nil || !lk.Held {
		t.Fatalf("second lookup: %+v, %v; want held", lk, err)
	}
	if _, err := s.Fill(ctx, key, &store.Fill{Value: []byte("v"), Ticket: tk, Lease: 1, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	msg, err := ps.ReceiveMessage(rctx)
	if err != nil {
		t.Fatal(err)
	}
	// Messages keep their order on the connection: an uncontended step that
	// published would come first. The fill's 'w' item is followed by the
	// 'f' item that carries its entry (see TestWatchFillHandsTheEntry).
	name := redisstore.Esc(key)
	want := fmt.Sprintf("w%d:%s", len(name), name)
	if !strings.HasPrefix(msg.Payload, want+"f") {
		t.Fatalf("first wake-up %q, want %q and the fill's entry (only the contended fill's)", msg.Payload, want)
	}
}

// TestListen: a listener hears up(false) before Listen returns and up(true)
// once the subscription is confirmed; then the keys and tags of every
// invalidation, and the key of every Set fill (and of no other fill),
// made through another Store, exactly as they were named; nothing after
// cancel.
func TestListen(t *testing.T) { twoStores(t, "li-", testListen) }

func testListen(t *testing.T, writer, reader *redisstore.Store) {
	ctx := t.Context()
	rec := newFeedRec()
	cancel := reader.Listen(rec.changed, rec.up)
	select {
	case e := <-rec.ch:
		if e.up == nil || *e.up {
			t.Fatalf("first call %v, want up(false)", e)
		}
	default:
		t.Fatal("Listen returned before it called up(false)")
	}
	rec.wantUp(t, true)

	// Names with braces and '%' (which the key names escape); on Cluster,
	// one message per slot.
	keys := []string{"ns:{s}a", "ns:{s}%7B", "ns:}{"}
	tags := []string{"{s}t", "%", "{", "t"}
	if err := writer.Invalidate(ctx, store.Invalidation{Keys: keys, Tags: tags}); err != nil {
		t.Fatal(err)
	}
	rec.wantChanges(t, keys, tags)
	if err := writer.Invalidate(ctx, store.Invalidation{Tags: []string{""}, Soft: true}); err != nil {
		t.Fatal(err)
	}
	rec.wantChange(t, nil, []string{""})

	// A fill of a lease changes nothing out of turn; a Set does.
	tk := lease(t, writer, "ns:filled", 1)
	if _, err := writer.Fill(ctx, "ns:filled", &store.Fill{Value: []byte("v"), Ticket: tk, Lease: 1, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	lk, err := writer.Lookup(ctx, "ns:set", store.LookupRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Fill(ctx, "ns:set", &store.Fill{Value: []byte("v"), Ticket: lk.Ticket, Set: true, TTL: time.Minute, Tags: []string{"st"}}); err != nil {
		t.Fatal(err)
	}
	rec.wantChange(t, []string{"ns:set"}, nil) // the first after the plain fill
	// A refused Set drops the entry: it is heard too.
	if _, err := writer.Fill(ctx, "ns:set", &store.Fill{Value: []byte("v"), Ticket: store.Ticket{Epoch: lk.Ticket.Epoch + 1}, Set: true, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	rec.wantChange(t, []string{"ns:set"}, nil)

	// After cancel, nothing: a second listener hears the next change,
	// and the first, called before it if at all, has heard nothing.
	cancel()
	rec2 := newFeedRec()
	defer reader.Listen(rec2.changed, rec2.up)()
	rec2.wantUp(t, false)
	rec2.wantUp(t, true) // at once: the feed is up
	if err := writer.Invalidate(ctx, store.Invalidation{Keys: []string{"ns:late"}}); err != nil {
		t.Fatal(err)
	}
	rec2.wantChange(t, []string{"ns:late"}, nil)
	rec.wantNothing(t)
}

// TestListenLostSubscription: when the subscription's connection is
// killed the feed reports down before a change can be missed, and up
// again only once it has subscribed again; a change made in between is
// not delivered (it was lost), and the first change delivered after is
// the first one made after.
func TestListenLostSubscription(t *testing.T) {
	srv := redistest.Start(t)
	tcp := srv.ListenTCP(t)
	ctx := t.Context()
	wc := redis.NewClient(&redis.Options{Addr: tcp, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = wc.Close() })
	writer := newStore(t, wc, redisstore.Prefix("lost:"))
	reader := newStore(t, srv.Client(t, nil), redisstore.Prefix("lost:"))
	rec := newFeedRec()
	defer reader.Listen(rec.changed, rec.up)()
	rec.wantUp(t, false)
	rec.wantUp(t, true)

	// The reader cannot connect again (its socket is gone), and its
	// subscription is killed.
	srv.Disconnect(t)
	if err := wc.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	rec.wantUp(t, false)
	if err := writer.Invalidate(ctx, store.Invalidation{Keys: []string{"ns:while-down"}}); err != nil {
		t.Fatal(err)
	}
	srv.Reconnect(t)
	rec.wantUp(t, true)
	if err := writer.Invalidate(ctx, store.Invalidation{Keys: []string{"ns:after"}}); err != nil {
		t.Fatal(err)
	}
	rec.wantChange(t, []string{"ns:after"}, nil)

	// Killed and free to reconnect: down, then up.
	if err := wc.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	rec.wantUp(t, false)
	rec.wantUp(t, true)
}

// TestListenSilentConnection: a subscription whose server stops answering
// (SIGSTOP: the connection stays open and says nothing) is reported down
// by the health check, about FeedTimeout after it went silent, and up
// again once the server answers.
func TestListenSilentConnection(t *testing.T) {
	const timeout = 200 * time.Millisecond
	srv := redistest.Start(t)
	reader := newStore(t, srv.Client(t, nil), redisstore.Prefix("silent:"), redisstore.FeedTimeout(timeout))
	rec := newFeedRec()
	defer reader.Listen(rec.changed, rec.up)()
	rec.wantUp(t, false)
	rec.wantUp(t, true)
	srv.Pause(t)
	paused := time.Now()
	e := rec.next(t)
	srv.Resume(t)
	if e.up == nil || *e.up {
		t.Fatalf("feed while Redis is frozen: %v, want up(false)", e)
	}
	t.Logf("down %v after Redis froze (FeedTimeout %v)", e.at.Sub(paused).Round(time.Millisecond), timeout)
	rec.wantUp(t, true)
}

// TestListenIdle: an idle subscription pings and stays up: the health
// check does not take a quiet connection for a lost one.
func TestListenIdle(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	admin := srv.Client(t, nil)
	reader := newStore(t, srv.Client(t, nil), redisstore.Prefix("idle:"), redisstore.FeedTimeout(200*time.Millisecond))
	rec := newFeedRec()
	defer reader.Listen(rec.changed, rec.up)()
	rec.wantUp(t, false)
	rec.wantUp(t, true)
	if err := admin.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	pings := regexp.MustCompile(`cmdstat_ping:calls=(\d+)`)
	_, ok := until(time.Minute, func() bool {
		m := pings.FindStringSubmatch(admin.Info(ctx, "commandstats").Val())
		n := 0
		if m != nil {
			n, _ = strconv.Atoi(m[1])
		}
		return n >= 4
	})
	if !ok {
		t.Fatal("the idle subscription sent no PINGs")
	}
	rec.wantNothing(t)
}

// until polls cond every few milliseconds for at most limit (polling
// for a condition, not ordering events).
func until(limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start), true
}

// TestListenGarbage: a message on the feed channel that does not parse
// may have named anything: the listener hears the feed go down and come
// back, which drops a near cache whole.
func TestListenGarbage(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	reader := newStore(t, srv.Client(t, nil), redisstore.Prefix("garbage:"))
	_, feedCh := redisstore.Channels(reader)
	rec := newFeedRec()
	defer reader.Listen(rec.changed, rec.up)()
	rec.wantUp(t, false)
	rec.wantUp(t, true)
	for _, p := range []string{"zz", "k9:short", "x1:a", "k-1:a"} {
		if err := srv.Client(t, nil).Publish(ctx, feedCh, p).Err(); err != nil {
			t.Fatal(err)
		}
		rec.wantUp(t, false)
		rec.wantUp(t, true)
	}
}

// TestFeedCluster: on a Redis Cluster, the changes of an invalidation
// whose keys and tags are in several slots (one script per slot, on their
// masters) all reach a listener whose subscription is on one node, and a
// waiter is woken by a fill on another node.
func TestFeedCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	ctx := t.Context()
	writer := newStore(t, cl.Client(t), redisstore.Prefix("fc:"))
	reader := newStore(t, cl.Client(t), redisstore.Prefix("fc:"))
	rec := newFeedRec()
	defer reader.Listen(rec.changed, rec.up)()
	rec.wantUp(t, false)
	rec.wantUp(t, true)

	var keys, tags []string
	for i := range 12 {
		keys = append(keys, fmt.Sprintf("ns:k%d", i))
		tags = append(tags, fmt.Sprintf("t%d", i))
	}
	if err := writer.Invalidate(ctx, store.Invalidation{Keys: keys, Tags: tags}); err != nil {
		t.Fatal(err)
	}
	rec.wantChanges(t, keys, tags)
	testWatchWoken(t, writer, reader)
	rec2 := newFeedRec() // rec has heard testWatchWoken's invalidations
	defer reader.Listen(rec2.changed, rec2.up)()
	rec2.wantUp(t, false)
	rec2.wantUp(t, true)
	t.Logf("delivery after the call returned, across the cluster: %s", feedDelay(t, writer, rec2))
}

// TestFeedDelay measures Δ on one server: how long after an invalidation
// returned its change reached a listener of another Store.
func TestFeedDelay(t *testing.T) {
	srv := redistest.Start(t)
	writer := newStore(t, srv.Client(t, nil), redisstore.Prefix("delay:"))
	reader := newStore(t, srv.Client(t, nil), redisstore.Prefix("delay:"))
	rec := newFeedRec()
	defer reader.Listen(rec.changed, rec.up)()
	rec.wantUp(t, false)
	rec.wantUp(t, true)
	t.Logf("delivery after the call returned, standalone: %s", feedDelay(t, writer, rec))
}

// feedDelay makes 200 invalidations through writer, one at a time, and
// returns the quantiles of the time from each call's return to its
// change's arrival at rec (negative: it arrived first).
func feedDelay(t *testing.T, writer *redisstore.Store, rec *feedRec) string {
	ctx := t.Context()
	var ds []time.Duration
	for i := range 200 {
		key := fmt.Sprintf("ns:d%d", i)
		if err := writer.Invalidate(ctx, store.Invalidation{Keys: []string{key}}); err != nil {
			t.Fatal(err)
		}
		done := time.Now()
		e := rec.next(t)
		if e.up != nil || !slices.Equal(e.keys, []string{key}) {
			t.Fatalf("feed: %v, want %s", e, key)
		}
		ds = append(ds, e.at.Sub(done))
	}
	slices.Sort(ds)
	return fmt.Sprintf("p50 %v, p99 %v, max %v", ds[len(ds)/2], ds[len(ds)*99/100], ds[len(ds)-1])
}

// upStore is a Store whose feed's up and down reports a test can wait for.
type upStore struct {
	*redisstore.Store
	mu  sync.Mutex
	ups []chan bool
}

func (u *upStore) Listen(changed func(keys, tags []string), up func(bool)) func() {
	ch := make(chan bool, 100)
	u.mu.Lock()
	u.ups = append(u.ups, ch)
	u.mu.Unlock()
	return u.Store.Listen(changed, func(b bool) {
		up(b)
		ch <- b
	})
}

// waitUp waits until the feed of every Cache on u reports up.
func (u *upStore) waitUp(t testing.TB) {
	t.Helper()
	u.mu.Lock()
	ups := slices.Clone(u.ups)
	u.mu.Unlock()
	for _, ch := range ups {
		for {
			select {
			case b := <-ch:
				if !b {
					continue
				}
			case <-time.After(time.Minute):
				t.Fatal("the feed never came up")
			}
			break
		}
	}
}

// TestNearCacheOnRedis: two processes with NearCache on one Redis. A hit
// of a recently read key costs no call to Redis; an invalidation in one
// process drops its own copy before it returns and the other's when the
// change arrives, after which that process reads Redis again.
func TestNearCacheOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	type proc struct {
		calls *calls
		store *upStore
		l     *paddock.Loader[string]
	}
	mk := func() proc {
		client := srv.Client(t, nil)
		rec := new(calls)
		client.AddHook(rec)
		s := &upStore{Store: newStore(t, client, redisstore.Prefix("near:"))}
		c := newCache(t, s, paddock.NearCache(time.Hour))
		s.waitUp(t)
		return proc{rec, s, newLoader(t, c, "p", paddock.Beta(0), paddock.TTL(time.Hour))}
	}
	a, b := mk(), mk()
	var db atomic.Value
	db.Store("v1")
	load := func(context.Context) (string, error) { return db.Load().(string), nil }
	get := func(p proc) (string, int) {
		t.Helper()
		p.calls.take()
		v, err := p.l.Get(ctx, "k", load)
		if err != nil {
			t.Fatal(err)
		}
		return v, len(p.calls.take())
	}
	get(a) // the load and fill
	for _, p := range []proc{a, b} {
		get(p) // a hit from Redis: the copy
		if v, n := get(p); v != "v1" || n != 0 {
			t.Fatalf("warm Get = %q with %d calls to Redis, want v1 from the near cache", v, n)
		}
	}
	db.Store("v2")
	if err := a.l.Invalidate(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	returned := time.Now()
	if v, n := get(a); v != "v2" || n == 0 {
		t.Fatalf("the invalidating process after Invalidate returned: %q (%d calls), want v2 from Redis", v, n)
	}
	var v string
	for {
		if v, _ = get(b); v == "v2" {
			break
		}
		if time.Since(returned) > time.Minute {
			t.Fatal("the other process kept its copy for a minute")
		}
	}
	t.Logf("the other process read v2 %v after the invalidation returned", time.Since(returned).Round(time.Microsecond))
	get(b) // a hit from Redis: the new copy
	if v, n := get(b); v != "v2" || n != 0 {
		t.Fatalf("warm Get after the change = %q with %d calls, want v2 from the near cache", v, n)
	}
	// A Set in b reaches a the same way.
	if err := b.l.Set(ctx, "k", "v3"); err != nil {
		t.Fatal(err)
	}
	returned = time.Now()
	for {
		if v, _ = get(a); v == "v3" {
			break
		}
		if time.Since(returned) > time.Minute {
			t.Fatal("the other process kept its copy past a Set for a minute")
		}
	}
}

// BenchmarkNearCache compares a warm hit from the near cache with one
// from Redis, a raw GET, and a hot hit on memstore, in one run:
//
//	go test -run xxx -bench NearCache -benchmem ./redisstore/
func BenchmarkNearCache(b *testing.B) {
	srv := redistest.Start(b)
	client := srv.Client(b, nil)
	ctx := context.Background()
	value := strings.Repeat("x", 1024)
	load := func(context.Context) (string, error) { return value, nil }
	hit := func(b *testing.B, s store.Store, opts ...paddock.Option) {
		c := newCache(b, s, opts...)
		if u, ok := s.(*upStore); ok {
			u.waitUp(b)
		}
		l := newLoader(b, c, "hit", paddock.Beta(0), paddock.TTL(time.Hour))
		for range 2 { // the fill, then a hit that takes the copy
			if _, err := l.Get(ctx, "k", load); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		for b.Loop() {
			if v, err := l.Get(ctx, "k", load); err != nil || len(v) != len(value) {
				b.Fatal(v, err)
			}
		}
	}
	b.Run("op=hit/impl=raw-get", func(b *testing.B) {
		if err := client.Set(ctx, "raw:k", value, 0).Err(); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if v, err := client.Get(ctx, "raw:k").Result(); err != nil || len(v) != len(value) {
				b.Fatal(v, err)
			}
		}
	})
	b.Run("op=hit/impl=redis", func(b *testing.B) {
		hit(b, newStore(b, client, redisstore.Prefix("bn1:")))
	})
	b.Run("op=hit/impl=redis-near", func(b *testing.B) {
		hit(b, &upStore{Store: newStore(b, client, redisstore.Prefix("bn2:"))}, paddock.NearCache(time.Hour))
	})
	b.Run("op=hit/impl=memstore-hot", func(b *testing.B) {
		m, err := memstore.New()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = m.Close() })
		hit(b, m)
	})
}
