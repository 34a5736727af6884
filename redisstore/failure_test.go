package redisstore_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// TestRedisDown: with Redis gone, Gets load (still coalesced in the
// process), the breaker stops asking Redis, and once Redis is back the
// Cache uses it again by itself.
func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })
	rec := new(calls)
	client.AddHook(rec)
	s := newStore(t, client)
	c := newCache(t, s, paddock.StoreTimeout(500*time.Millisecond), paddock.Breaker(2, time.Second))
	l := newLoader(t, c, "d")
	ctx := t.Context()

	srv.Stop()
	const callers = 16
	var (
		loads   atomic.Int64
		entered sync.WaitGroup
		release = make(gate)
		wg      sync.WaitGroup
	)
	entered.Add(callers)
	for range callers {
		wg.Go(func() {
			entered.Done()
			v, err := l.Get(ctx, "k", func(ctx context.Context) (string, error) {
				loads.Add(1)
				return "v", release.wait(ctx)
			})
			if err != nil || v != "v" {
				t.Errorf("Get with Redis down: %q, %v", v, err)
			}
		})
	}
	entered.Wait()
	release.open()
	wg.Wait()
	if n := loads.Load(); n < 1 || n > callers {
		t.Fatalf("%d loads", n)
	}
	t.Logf("Redis down: %d callers, %d load(s)", callers, loads.Load())

	// The breaker opens after 2 failures: later Gets do not call Redis.
	for range 4 {
		if _, err := l.Get(ctx, "k2", func(context.Context) (string, error) { return "v", nil }); err != nil {
			t.Fatal(err)
		}
	}
	rec.take()
	for range 4 {
		if _, err := l.Get(ctx, "k3", func(context.Context) (string, error) { return "v", nil }); err != nil {
			t.Fatal(err)
		}
	}
	// At most one half-open probe may have gone out.
	if n := rec.count(); n > 1 {
		t.Fatalf("breaker open, yet %d calls to Redis: %q", n, rec.take())
	}
	if st := c.Stats()["d"]; st.StoreErrors == 0 {
		t.Fatalf("no store errors counted: %+v", st)
	}

	// Redis returns; the breaker lets a probe through after its cooldown
	// and closes: Gets fill and hit again.
	srv.Restart(t)
	deadline := time.Now().Add(time.Minute)
	for {
		r, err := l.Fetch(ctx, "back", func(context.Context) (string, error) { return "v", nil })
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == paddock.StatusHit {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Cache never used Redis again")
		}
		time.Sleep(50 * time.Millisecond) // polling for the breaker's recovery
	}
}

// TestRedisSlow: a Redis that does not answer costs a Get the store
// timeout, not the client's read timeout; the Get loads.
func TestRedisSlow(t *testing.T) {
	srv := redistest.Start(t)
	// Without the context deadline a call would hang for ReadTimeout.
	client := srv.Client(t, func(o *redis.Options) { o.ReadTimeout, o.WriteTimeout, o.MaxRetries = time.Minute, time.Minute, -1 })
	s := newStore(t, client)
	c := newCache(t, s, paddock.StoreTimeout(300*time.Millisecond))
	l := newLoader(t, c, "slow")
	ctx := t.Context()
	if _, err := l.Get(ctx, "warm", func(context.Context) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	srv.Pause(t)
	defer srv.Resume(t)
	start := time.Now()
	r, err := l.Fetch(ctx, "k", func(context.Context) (string, error) { return "loaded", nil })
	if err != nil || r.Value != "loaded" {
		t.Fatalf("Get with Redis paused: %+v, %v", r, err)
	}
	// A loose bound: the point is "not a minute".
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("Get took %v with a store timeout of 300ms", d)
	}
	t.Logf("Get with Redis paused: %v, %v", r.Status, time.Since(start))
}

// TestTooLarge: a value over MaxValueSize is a clear error and the lease
// is given back; the Cache still returns the value.
func TestTooLarge(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv.Client(t, nil), redisstore.MaxValueSize(1024))
	ctx := t.Context()
	lk, err := s.Lookup(ctx, "big", store.LookupRequest{Lease: 1, LeaseTTL: time.Hour})
	if err != nil || !lk.Lease {
		t.Fatal(lk, err)
	}
	ok, err := s.Fill(ctx, "big", &store.Fill{Value: make([]byte, 1025), Ticket: lk.Ticket, Lease: 1, TTL: time.Hour})
	if ok || !errors.Is(err, paddock.ErrTooLarge) || !strings.Contains(err.Error(), "1025 bytes") {
		t.Fatalf("Fill of 1025 bytes: %v, %v; want ErrTooLarge", ok, err)
	}
	if lk, err := s.Lookup(ctx, "big", store.LookupRequest{Lease: 2, LeaseTTL: time.Hour}); err != nil || !lk.Lease {
		t.Fatalf("lease not released: %+v, %v", lk, err)
	}
	if ok, err := s.Fill(ctx, "big", &store.Fill{Value: make([]byte, 1024), Ticket: lk.Ticket, Lease: 2, TTL: time.Hour}); !ok || err != nil {
		t.Fatalf("Fill of 1024 bytes: %v, %v", ok, err)
	}

	c := newCache(t, s)
	l := newLoader(t, c, "p")
	big := strings.Repeat("x", 2000)
	r, err := l.Fetch(ctx, "k", func(context.Context) (string, error) { return big, nil })
	if err != nil || r.Value != big || !errors.Is(r.FillErr, paddock.ErrTooLarge) {
		t.Fatalf("Fetch: value %d bytes, FillErr %v, err %v", len(r.Value), r.FillErr, err)
	}
}

// TestNilFill: a nil *store.Fill is bad input, an error wrapping
// ErrInvalidOption, as in memstore; nothing is sent.
func TestNilFill(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	rec := new(calls)
	client.AddHook(rec)
	s := newStore(t, client)
	ok, err := s.Fill(t.Context(), "k", nil)
	if ok || !errors.Is(err, paddock.ErrInvalidOption) || !strings.HasPrefix(err.Error(), `redisstore: fill "k": `) {
		t.Fatalf("Fill(nil) = %v, %v; want false and a fill error wrapping ErrInvalidOption", ok, err)
	}
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("Fill(nil) made calls %q", got)
	}
}

// TestNewOptions checks the constructor's validation.
func TestNewOptions(t *testing.T) {
	ok := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer ok.Close()
	noCtx := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer noCtx.Close()
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	for _, c := range []struct {
		name   string
		client redis.UniversalClient
		opts   []redisstore.Option
		ok     bool
	}{
		{"defaults", ok, nil, true},
		{"nil client", nil, nil, false},
		{"nil option", ok, []redisstore.Option{nil}, false},
		{"prefix with brace", ok, []redisstore.Option{redisstore.Prefix("a{b}")}, false},
		{"empty prefix", ok, []redisstore.Option{redisstore.Prefix("")}, true},
		{"max value size 0", ok, []redisstore.Option{redisstore.MaxValueSize(0)}, false},
		{"max value size over redis's", ok, []redisstore.Option{redisstore.MaxValueSize(redisstore.MaxValueSizeLimit + 1)}, false},
		{"nil offset", ok, []redisstore.Option{redisstore.TimeOffset(nil)}, false},
		{"no context timeout", noCtx, nil, false},
		{"no context timeout allowed", noCtx, []redisstore.Option{redisstore.AllowNoContextTimeout()}, true},
		{"ring", ring, nil, false},
	} {
		_, err := redisstore.New(c.client, c.opts...)
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.name, err)
		}
		if err != nil && !errors.Is(err, paddock.ErrInvalidOption) {
			t.Errorf("%s: %v does not wrap ErrInvalidOption", c.name, err)
		}
	}
}

// TestFailoverStartsNewEpoch: a replica promoted to master has a new
// replication ID; entries and tickets of the old master's epoch are not
// trusted, so an invalidation the old master acknowledged but never
// replicated cannot bring its entry back.
func TestFailoverStartsNewEpoch(t *testing.T) {
	primary := redistest.Start(t, "--repl-diskless-sync-delay", "0")
	replica := redistest.Start(t)
	ctx := t.Context()
	pc, rc := primary.Client(t, nil), replica.Client(t, nil)
	// The master takes a new replication ID when its first replica
	// attaches (a new epoch, once): the link comes first.
	replicate(t, rc, listenTCP(t, pc), "")
	sp := newStore(t, pc)
	lk, err := sp.Lookup(ctx, "k", store.LookupRequest{Lease: 1, LeaseTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := sp.Fill(ctx, "k", &store.Fill{Value: []byte("v"), Ticket: lk.Ticket, Lease: 1, TTL: time.Hour}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// Wait until the replica has the entry.
	deadline := time.Now().Add(time.Minute)
	for {
		n, err := rc.Exists(ctx, "paddock:{k}:e").Result()
		if err == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica never caught up")
		}
		time.Sleep(10 * time.Millisecond) // polling replication
	}
	// The failover: the replica becomes master (the old master's next
	// invalidation never reached it).
	if err := rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	sr := newStore(t, rc)
	got, err := sr.Lookup(ctx, "k", store.LookupRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Entry != nil || got.Ticket.Epoch == lk.Ticket.Epoch {
		t.Fatalf("after the failover: entry %+v, epoch %d (was %d); want no entry and a new epoch", got.Entry, got.Ticket.Epoch, lk.Ticket.Epoch)
	}
	if ok, _ := sr.Fill(ctx, "k", &store.Fill{Value: []byte("old"), Ticket: lk.Ticket, TTL: time.Hour}); ok {
		t.Fatal("a fill with a ticket of the old epoch was accepted")
	}
	// SkipFailoverCheck trusts the replicated marker.
	lax := newStore(t, rc, redisstore.SkipFailoverCheck())
	if _, err := lax.Lookup(ctx, "k2", store.LookupRequest{}); err != nil {
		t.Fatal(err)
	}
}

// listenTCP makes the server of c listen on a loopback port too
// (replication needs TCP) and returns the port.
func listenTCP(t *testing.T, c *redis.Client) string {
	t.Helper()
	ctx := t.Context()
	for try := 0; ; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		_ = l.Close()
		if err = c.ConfigSet(ctx, "port", port).Err(); err == nil {
			if err := c.ConfigSet(ctx, "bind", "127.0.0.1").Err(); err != nil {
				t.Fatal(err)
			}
			return port
		} else if try == 5 {
			t.Fatal(err)
		}
	}
}

// replicate makes r a replica of the server on port and waits for the
// link; then, if key is not "", for r to hold key.
func replicate(t *testing.T, r *redis.Client, port, key string) {
	t.Helper()
	ctx := t.Context()
	if err := r.Do(ctx, "REPLICAOF", "127.0.0.1", port).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		info, err := r.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			if key == "" {
				return
			}
			if n, err := r.Exists(ctx, key).Result(); err == nil && n == 1 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica never caught up: %v\n%s", err, info)
		}
		time.Sleep(10 * time.Millisecond) // polling replication
	}
}

// TestFailoverOnNewConnection: one Store, whose client is switched to a
// promoted replica (as a Sentinel client is: its connections to the old
// master end, and the new ones reach the new master). The replica lacks
// the old master's last invalidation. The Store's count of new
// connections makes it verify the new server before any hit: a new epoch,
// and the entry the invalidation dropped is not served. With the failover
// check off, it is: the case the check exists for.
func TestFailoverOnNewConnection(t *testing.T) {
	primary := redistest.Start(t, "--repl-diskless-sync-delay", "0")
	replica := redistest.Start(t)
	ctx := t.Context()
	pc, rc := primary.Client(t, nil), replica.Client(t, nil)
	port := listenTCP(t, pc)
	replicate(t, rc, port, "")

	var target atomic.Value
	target.Store(primary.Socket)
	switched := func(t *testing.T) *redis.Client {
		return primary.Client(t, func(o *redis.Options) {
			o.MaxRetries = -1
			o.Dialer = func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", target.Load().(string))
			}
		})
	}
	s := newStore(t, switched(t), redisstore.Prefix("fo:"))
	lax := newStore(t, switched(t), redisstore.Prefix("fo:"), redisstore.SkipFailoverCheck())
	lk, err := s.Lookup(ctx, "k", store.LookupRequest{Lease: 1, LeaseTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Fill(ctx, "k", &store.Fill{Value: []byte("old"), Ticket: lk.Ticket, Lease: 1, TTL: time.Hour}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	epoch := lk.Ticket.Epoch
	replicate(t, rc, port, "fo:{k}:f")
	for _, st := range []*redisstore.Store{s, lax} {
		if err := redisstore.CheckServers(ctx, st); err != nil {
			t.Fatal(err)
		}
		if lk, err := st.Lookup(ctx, "k", store.LookupRequest{}); err != nil || lk.State != store.StateFresh {
			t.Fatalf("before the failover: %+v, %v", lk, err)
		}
	}

	// The failover: the replica is promoted and misses the old master's
	// invalidation, acknowledged after the promotion.
	if err := rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Invalidate(ctx, store.Invalidation{Keys: []string{"k"}}); err != nil {
		t.Fatal(err)
	}
	target.Store(replica.Socket)
	if err := pc.Do(ctx, "CLIENT", "KILL", "TYPE", "normal").Err(); err != nil {
		t.Fatal(err)
	}
	after := func(st *redisstore.Store) store.Lookup {
		t.Helper()
		for try := 0; ; try++ { // a call may fail on a killed connection
			lk, err := st.Lookup(ctx, "k", store.LookupRequest{})
			if err == nil {
				return lk
			}
			if try == 3 {
				t.Fatal(err)
			}
		}
	}
	// The lax Store first: the strict one starts a new epoch on the
	// promoted replica, which the lax one would then see too.
	if lk := after(lax); lk.State != store.StateFresh || string(lk.Entry.Value) != "old" {
		t.Fatalf("with the check off, after the failover: %+v; want the dropped entry served (what the check prevents)", lk)
	}
	if lk := after(s); lk.Entry != nil || lk.Ticket.Epoch == epoch {
		t.Fatalf("after the failover: %+v (the old epoch was %d); want a miss in a new epoch", lk, epoch)
	}
}

// TestDemotedMaster: a master demoted to a replica keeps its clients'
// connections, and once it has synchronised from the new master it holds
// the new master's data, which lacks its own last invalidation. No new
// connection is made: the Store finds the change at its next check of the
// server (every FailoverCheckInterval while in use), and from then on
// serves nothing from it. Before that check is the window the package doc
// states.
func TestDemotedMaster(t *testing.T) {
	primary := redistest.Start(t, "--repl-diskless-sync-delay", "0")
	replica := redistest.Start(t, "--repl-diskless-sync-delay", "0")
	ctx := t.Context()
	pc, rc := primary.Client(t, nil), replica.Client(t, nil)
	pport := listenTCP(t, pc)
	rport := listenTCP(t, rc)
	replicate(t, rc, pport, "")
	client := primary.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })
	s := newStore(t, client, redisstore.Prefix("dm:"), redisstore.FailoverCheckInterval(time.Hour))
	lk, err := s.Lookup(ctx, "k", store.LookupRequest{Lease: 1, LeaseTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Fill(ctx, "k", &store.Fill{Value: []byte("old"), Ticket: lk.Ticket, Lease: 1, TTL: time.Hour}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	replicate(t, rc, pport, "dm:{k}:f")
	if err := redisstore.CheckServers(ctx, s); err != nil {
		t.Fatal(err)
	}
	// The failover, and the old master's invalidation that the new one
	// never gets; then the old master follows the new one.
	if err := rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Invalidate(ctx, store.Invalidation{Keys: []string{"k"}}); err != nil {
		t.Fatal(err)
	}
	replicate(t, pc, rport, "dm:{k}:f")
	lk, err = s.Lookup(ctx, "k", store.LookupRequest{})
	t.Logf("before the Store's check (the window): %v, %v", lk.State, err)

	if err := redisstore.CheckServers(ctx, s); err == nil {
		t.Fatal("the check of a replica passed")
	}
	for range 3 {
		lk, err := s.Lookup(ctx, "k", store.LookupRequest{})
		if err == nil && lk.Entry != nil && lk.State != store.StateMiss {
			t.Fatalf("after the check: %v %q served by a replica", lk.State, lk.Entry.Value)
		}
		if err != nil && !strings.Contains(err.Error(), "READONLY") {
			t.Fatalf("after the check: %v, want a READONLY error", err)
		}
	}
}

// TestBackgroundCheck: while the Store is in use it checks its server
// again once its verification is older than FailoverCheckInterval, in
// the background; Close waits for that check.
func TestBackgroundCheck(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	rec := new(calls)
	client.AddHook(rec)
	s, err := redisstore.New(client, redisstore.Prefix("bg:"), redisstore.FailoverCheckInterval(time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for range 3 {
		if _, err := s.Lookup(ctx, "k", store.LookupRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got := rec.take()
	n := 0
	for _, c := range got {
		if c == "check" {
			n++
		}
	}
	if n == 0 {
		t.Fatalf("calls %q: no background check", got)
	}
}
