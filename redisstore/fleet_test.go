package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
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

// node is one member of a simulated fleet: its own client, store and
// Cache on a shared Redis.
type node struct {
	store *watched
	cache *paddock.Cache
	l     *paddock.Loader[string]
}

func fleet(t *testing.T, srv *redistest.Server, n int, clock *offset, copts ...paddock.Option) []*node {
	t.Helper()
	nodes := make([]*node, n)
	for i := range nodes {
		client := srv.Client(t, nil)
		opts := []redisstore.Option{redisstore.Prefix("fleet:")}
		if clock != nil {
			opts = append(opts, redisstore.TimeOffset(clock.get))
		}
		w := watch(newStore(t, client, opts...))
		c := newCache(t, w, copts...)
		nodes[i] = &node{store: w, cache: c, l: newLoader(t, c, "page", paddock.Beta(0))}
	}
	return nodes
}

// TestFleetOneLoad: several processes (Caches with their own clients) on
// one Redis, many callers each, one cold key: one load for the fleet. The
// load holds until every other node has found the lease held, so all of
// them are waiting on it, not arriving after it.
func TestFleetOneLoad(t *testing.T) {
	const nodes, callers = 4, 8
	srv := redistest.Start(t)
	fl := fleet(t, srv, nodes, nil)
	ctx := t.Context()
	var (
		loads atomic.Int64
		wg    sync.WaitGroup
	)
	for i, n := range fl {
		load := func(ctx context.Context) (string, error) {
			loads.Add(1)
			for j, other := range fl {
				if j != i {
					if err := gate(other.store.held).wait(ctx); err != nil {
						return "", err
					}
				}
			}
			return "home", nil
		}
		for range callers {
			wg.Go(func() {
				v, err := n.l.Get(ctx, "home", load, paddock.TTL(time.Hour))
				if err != nil || v != "home" {
					t.Errorf("node %d: %q, %v", i, v, err)
				}
			})
		}
	}
	wg.Wait()
	if loads.Load() != 1 {
		t.Fatalf("%d loads for a fleet of %d nodes × %d callers, want 1", loads.Load(), nodes, callers)
	}
	var coalesced, hits uint64
	for _, n := range fl {
		st := n.cache.Stats()["page"]
		coalesced += st.Coalesced
		hits += st.Hits
	}
	t.Logf("%d nodes × %d callers: 1 load; %d coalesced in process, %d served from the lease holder's fill", nodes, callers, coalesced, hits)
}

// TestFleetNoStaleFill: a load on node A that began before node B's
// invalidation can not fill, and node C, which starts after the
// invalidation, never sees the old value.
func TestFleetNoStaleFill(t *testing.T) {
	srv := redistest.Start(t)
	fl := fleet(t, srv, 3, nil)
	a, b, c := fl[0], fl[1], fl[2]
	ctx := t.Context()
	db := "old"
	var dbMu sync.Mutex
	read := func() string { dbMu.Lock(); defer dbMu.Unlock(); return db }

	started, finish := make(gate), make(gate)
	done := make(chan string)
	go func() {
		v, _ := a.l.Get(ctx, "home", func(ctx context.Context) (string, error) {
			v := read() // reads the old rows
			paddock.Tag(ctx, "articles")
			started.open()
			return v, finish.wait(ctx)
		}, paddock.TTL(time.Hour))
		done <- v
	}()
	wait(t, started, "A's load")
	// The publisher writes the database, then invalidates through B.
	dbMu.Lock()
	db = "new"
	dbMu.Unlock()
	if err := b.cache.InvalidateTags(ctx, "articles"); err != nil {
		t.Fatal(err)
	}
	finish.open()
	if v := <-done; v != "old" {
		t.Fatalf("A's own Get returned %q", v) // A's callers get A's load
	}
	if st := a.cache.Stats()["page"]; st.FillsRefused != 1 {
		t.Fatalf("A's fill was not refused: %+v", st)
	}
	v, err := c.l.Get(ctx, "home", func(context.Context) (string, error) { return read(), nil })
	if err != nil || v != "new" {
		t.Fatalf("C after the invalidation: %q, %v; want the new value", v, err)
	}
	r, found, err := a.l.Peek(ctx, "home")
	if err != nil || !found || r.Value != "new" {
		t.Fatalf("A's Peek: %+v, %v, %v", r, found, err)
	}
}

// TestFleetStaleWhileRevalidate: with the entry in its stale window, every
// node serves the stale value at once and the fleet runs one refresh.
func TestFleetStaleWhileRevalidate(t *testing.T) {
	const nodes, callers = 4, 8
	srv := redistest.Start(t)
	clock := new(offset)
	fl := fleet(t, srv, nodes, clock)
	ctx := t.Context()
	opts := []paddock.GetOption{paddock.TTL(time.Minute), paddock.Stale(time.Hour)}
	if _, err := fl[0].l.Get(ctx, "home", func(context.Context) (string, error) { return "v1", nil }, opts...); err != nil {
		t.Fatal(err)
	}
	clock.advance(2 * time.Minute)

	var (
		loads   atomic.Int64
		release = make(gate)
		wg      sync.WaitGroup
	)
	refresh := func(ctx context.Context) (string, error) {
		loads.Add(1)
		return "v2", release.wait(ctx)
	}
	for i, n := range fl {
		for range callers {
			wg.Go(func() {
				r, err := n.l.Fetch(ctx, "home", refresh, opts...)
				if err != nil || r.Value != "v1" || r.Status != paddock.StatusStale {
					t.Errorf("node %d: %+v, %v; want v1, stale", i, r, err)
				}
			})
		}
	}
	wg.Wait() // every caller was served while the refresh is held
	release.open()
	for _, n := range fl {
		_ = n.cache.Close() // waits for background refreshes
	}
	if loads.Load() != 1 {
		t.Fatalf("%d refreshes for the fleet, want 1", loads.Load())
	}
	lk, err := fl[1].store.Lookup(ctx, "page:home", store.LookupRequest{})
	if err != nil || lk.State != store.StateFresh || string(lk.Entry.Value) == "" {
		t.Fatalf("after the refresh: %+v, %v", lk, err)
	}
}

// TestFleetDeadLeaseHolder: a lease holder that dies (never fills) is
// replaced once its lease expires; the waiter then loads once.
func TestFleetDeadLeaseHolder(t *testing.T) {
	srv := redistest.Start(t)
	clock := new(offset)
	fl := fleet(t, srv, 1, clock, paddock.LeaseTTL(time.Hour), paddock.WaitTimeout(time.Hour))
	ctx := t.Context()
	// The dead process: took the lease, then vanished.
	lk, err := fl[0].store.Store.Lookup(ctx, "page:k", store.LookupRequest{Lease: 1, LeaseTTL: time.Hour})
	if err != nil || !lk.Lease {
		t.Fatalf("dead holder: %+v, %v", lk, err)
	}
	var loads atomic.Int64
	done := make(chan error, 1)
	go func() {
		v, err := fl[0].l.Get(ctx, "k", func(context.Context) (string, error) { loads.Add(1); return "v", nil })
		if err == nil && v != "v" {
			err = fmt.Errorf("got %q", v)
		}
		done <- err
	}()
	wait(t, fl[0].store.held, "the waiter to find the lease held")
	clock.advance(time.Hour + time.Second) // the dead holder's lease expires
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if loads.Load() != 1 {
		t.Fatalf("%d loads, want 1", loads.Load())
	}
}

// TestFleetWaitBound: a caller that reaches its wait bound loads for itself
// instead of failing.
func TestFleetWaitBound(t *testing.T) {
	srv := redistest.Start(t)
	fl := fleet(t, srv, 1, nil, paddock.LeaseTTL(time.Hour), paddock.WaitTimeout(200*time.Millisecond))
	ctx := t.Context()
	if lk, err := fl[0].store.Store.Lookup(ctx, "page:k", store.LookupRequest{Lease: 1, LeaseTTL: time.Hour}); err != nil || !lk.Lease {
		t.Fatalf("holder: %+v, %v", lk, err)
	}
	r, err := fl[0].l.Fetch(ctx, "k", func(context.Context) (string, error) { return "mine", nil })
	if err != nil || r.Value != "mine" || r.Status != paddock.StatusLoaded {
		t.Fatalf("%+v, %v", r, err)
	}
	if fl[0].store.n.Load() == 0 {
		t.Fatal("the caller never waited")
	}
}

// The OS-process fleet: the parent re-executes the test binary as N
// children, each a Cache with its own client on the parent's Redis. They
// all Get one cold key at once; the load counts itself in Redis (INCR)
// and holds until every other child has found the lease held.

const (
	envChild  = "PADDOCK_REDISSTORE_CHILD"
	envSocket = "PADDOCK_REDISSTORE_SOCKET"
	envN      = "PADDOCK_REDISSTORE_N"
)

func TestFleetProcesses(t *testing.T) {
	if id := os.Getenv(envChild); id != "" {
		fleetChild(t, id)
		return
	}
	const children = 4
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	ctx := t.Context()
	cmds := make([]*exec.Cmd, children)
	outs := make([]*syncBuffer, children)
	for i := range cmds {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFleetProcesses$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), envChild+"="+strconv.Itoa(i), envSocket+"="+srv.Socket, envN+"="+strconv.Itoa(children))
		outs[i] = new(syncBuffer)
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	// The barrier: every child is connected and ready, then all go.
	deadline := time.Now().Add(time.Minute)
	for {
		n, err := client.Get(ctx, "proc:ready").Int()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		if n == children {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d children ready", n, children)
		}
		time.Sleep(10 * time.Millisecond) // polling the children's readiness
	}
	for range children {
		if err := client.RPush(ctx, "proc:go", "go").Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("child %d: %v\n%s", i, err, outs[i])
		}
	}
	loads, err := client.Get(ctx, "proc:loads").Int()
	if err != nil {
		t.Fatal(err)
	}
	if loads != 1 {
		t.Fatalf("%d loads for %d processes, want 1", loads, children)
	}
	got, err := client.LRange(ctx, "proc:results", 0, -1).Result()
	if err != nil || len(got) != children {
		t.Fatalf("results %q, %v", got, err)
	}
	t.Logf("%d processes, 1 load; statuses %q", children, got)
}

func fleetChild(t *testing.T, id string) {
	ctx := t.Context()
	n, _ := strconv.Atoi(os.Getenv(envN))
	client := redis.NewClient(&redis.Options{Network: "unix", Addr: os.Getenv(envSocket), ContextTimeoutEnabled: true})
	defer client.Close()
	w := watch(newStore(t, client, redisstore.Prefix("proc:")))
	c := newCache(t, w, paddock.LeaseTTL(time.Minute), paddock.WaitTimeout(time.Minute))
	l := newLoader(t, c, "page")
	// Tell Redis when this process has found the lease held.
	go func() {
		select {
		case <-w.held:
			client.Incr(context.WithoutCancel(ctx), "proc:held")
		case <-ctx.Done():
		}
	}()
	if err := client.Incr(ctx, "proc:ready").Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.BLPop(ctx, time.Minute, "proc:go").Err(); err != nil {
		t.Fatal(err)
	}
	r, err := l.Fetch(ctx, "cold", func(ctx context.Context) (string, error) {
		if err := client.Incr(ctx, "proc:loads").Err(); err != nil {
			return "", err
		}
		// Hold the load until every other process waits on it.
		deadline := time.Now().Add(time.Minute)
		for {
			h, err := client.Get(ctx, "proc:held").Int()
			if err != nil && !errors.Is(err, redis.Nil) {
				return "", err
			}
			if h == n-1 {
				return "value", nil
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("only %d of %d other processes waited", h, n-1)
			}
			time.Sleep(5 * time.Millisecond) // polling the other processes
		}
	}, paddock.TTL(time.Hour))
	if err != nil || r.Value != "value" {
		t.Fatalf("child %s: %+v, %v", id, r, err)
	}
	if err := client.RPush(ctx, "proc:results", id+":"+r.Status.String()).Err(); err != nil {
		t.Fatal(err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}
