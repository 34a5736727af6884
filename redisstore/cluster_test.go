package redisstore_test

import (
	"context"
	"fmt"
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
	"github.com/paddockcache/paddock/storetest"
)

// clusterEnv is a real 3-master cluster shared by the subtests of
// TestCluster, with a map from slot to master.
type clusterEnv struct {
	c      *redistest.Cluster
	client *redis.ClusterClient
	owner  [16384]string // slot -> master address
}

func startCluster(t *testing.T) *clusterEnv {
	t.Helper()
	c := redistest.StartCluster(t, 3)
	env := &clusterEnv{c: c, client: c.Client(t)}
	slots, err := env.client.ClusterSlots(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range slots {
		for sl := r.Start; sl <= r.End; sl++ {
			env.owner[sl] = r.Nodes[0].Addr
		}
	}
	return env
}

// on returns a name with the given prefix whose slot is on master i (by
// the order of Addrs).
func (e *clusterEnv) on(i int, prefix string) string {
	for n := 0; ; n++ {
		s := fmt.Sprintf("%s%d", prefix, n)
		if e.owner[redisstore.SlotOf(s)] == e.c.Addrs[i] {
			return s
		}
	}
}

func (e *clusterEnv) node(i int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: e.c.Addrs[i]})
}

func TestCluster(t *testing.T) {
	env := startCluster(t)
	flush := func(t *testing.T) { env.c.FlushAll(t) }

	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, harness(env.client, flush))
	})
	t.Run("RoundTrips", func(t *testing.T) { testClusterRoundTrips(t, env) })
	t.Run("BatchRoundTrips", func(t *testing.T) { testClusterBatchRoundTrips(t, env) })
	t.Run("TagsAcrossSlots", func(t *testing.T) { testClusterTagsAcrossSlots(t, env) })
	t.Run("SkewFree", func(t *testing.T) { testClusterSkewFree(t, env) })
	t.Run("NodeLosesData", func(t *testing.T) { testClusterNodeLoss(t, env) })
	t.Run("Fleet", func(t *testing.T) { testClusterFleet(t, env) })
	t.Run("NestedFleet", func(t *testing.T) { testNestedFleet(t, env.c.Client(t), "nest:") })
	t.Run("RefusedSet", func(t *testing.T) {
		testRefusedSet(t, env.client, func(i int) (string, string) {
			return env.on(0, fmt.Sprintf("k%d-", i)), env.on(1, fmt.Sprintf("t%d-", i))
		})
	})
	t.Run("Corrupt", func(t *testing.T) {
		testCorrupt(t, env.client, env.client, true, direct, func(i int) (string, string) {
			return env.on(0, fmt.Sprintf("k%d-", i)), env.on(1, fmt.Sprintf("r%d-", i))
		})
	})
}

// testClusterRoundTrips counts the calls on Cluster.
func testClusterRoundTrips(t *testing.T, env *clusterEnv) {
	client := env.c.Client(t)
	rec := new(calls)
	client.AddHook(rec)
	s := newStore(t, client, redisstore.Prefix("rt:"))
	ctx := t.Context()
	key := env.on(0, "k")
	local := key // a tag named like the key shares its slot
	remote := env.on(1, "remote-tag")
	warm(t, s)
	// Every master knows every script: calls are EVALSHA, never NOSCRIPT.
	if err := env.client.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		for _, src := range redisstore.ScriptSources() {
			if err := c.ScriptLoad(ctx, src).Err(); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rec.take()

	req := store.LookupRequest{Lease: 7, LeaseTTL: time.Minute}
	lk, err := s.Lookup(ctx, key, req)
	if err != nil || !lk.Lease {
		t.Fatalf("miss: %+v, %v", lk, err)
	}
	wantCalls(t, "miss (lease, then the ticket)", rec.take(), "mget", "lookup", "get")

	ok, err := s.Fill(ctx, key, &store.Fill{Value: []byte("v"), Ticket: lk.Ticket, Lease: 7, TTL: time.Minute})
	if err != nil || !ok {
		t.Fatalf("fill: %v, %v", ok, err)
	}
	wantCalls(t, "fill (no tags)", rec.take(), "fill")
	if lk, err = s.Lookup(ctx, key, req); err != nil || lk.State != store.StateFresh {
		t.Fatalf("hit: %+v, %v", lk, err)
	}
	wantCalls(t, "hit (no tags)", rec.take(), "mget")

	// Tags in another slot: the fill checks them first, the hit after.
	key2 := env.on(0, "k2-")
	lk, _ = s.Lookup(ctx, key2, req)
	rec.take()
	ok, err = s.Fill(ctx, key2, &store.Fill{Value: []byte("v"), Ticket: lk.Ticket, Lease: 7, TTL: time.Minute, Tags: []string{remote}})
	if err != nil || !ok {
		t.Fatalf("fill: %v, %v", ok, err)
	}
	wantCalls(t, "fill (1 tag in another slot)", rec.take(), "tagcheck", "fill")
	if lk, err = s.Lookup(ctx, key2, req); err != nil || lk.State != store.StateFresh {
		t.Fatalf("hit: %+v, %v", lk, err)
	}
	wantCalls(t, "hit (1 tag in another slot)", rec.take(), "mget", "tagcheck")

	// A tag in the key's slot is checked inside the scripts.
	key3 := env.on(0, "k3-")
	lk, _ = s.Lookup(ctx, key3, req)
	rec.take()
	ok, err = s.Fill(ctx, key3, &store.Fill{Value: []byte("v"), Ticket: lk.Ticket, Lease: 7, TTL: time.Minute, Tags: []string{key3}})
	if err != nil || !ok {
		t.Fatalf("fill: %v, %v", ok, err)
	}
	wantCalls(t, "fill (1 tag in the key's slot)", rec.take(), "fill")
	if lk, err = s.Lookup(ctx, key3, req); err != nil || lk.State != store.StateFresh {
		t.Fatalf("hit: %+v, %v", lk, err)
	}
	wantCalls(t, "hit (1 tag in the key's slot)", rec.take(), "mget")
	if err := s.Invalidate(ctx, store.Invalidation{Tags: []string{key3}}); err != nil {
		t.Fatal(err)
	}
	rec.take()
	if lk, err = s.Lookup(ctx, key3, req); err != nil || lk.Entry != nil {
		t.Fatalf("after invalidating the tag: %+v, %v", lk, err)
	}
	_ = s.Release(ctx, key3, 7)
	rec.take()

	if err := s.Invalidate(ctx, store.Invalidation{Keys: []string{key}, Tags: []string{remote}}); err != nil {
		t.Fatal(err)
	}
	got := rec.take()
	if len(got) != 2 || got[0] != "seq" || !strings.HasPrefix(got[1], "pipeline(invalidate,invalidate") {
		t.Errorf("invalidate (key and tag on two nodes): calls %q, want seq then one pipeline", got)
	} else {
		t.Logf("invalidate (key and tag on two nodes): 2 round trips: %s", strings.Join(got, ", "))
	}
	_ = local

	// Through a Cache. (The pipeline above may have dialled a
	// connection: the servers are verified again first.)
	l := newLoader(t, newCache(t, s), "art", paddock.Beta(0))
	id := env.on(0, "art:")[len("art:"):] // "art:<id>" lives on master 0
	load := func(context.Context) (string, error) { return "v", nil }
	if err := redisstore.CheckServers(ctx, s); err != nil {
		t.Fatal(err)
	}
	rec.take()
	if _, err := l.Get(ctx, id, load); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "cold Get", rec.take(), "mget", "lookup", "get", "fill")
	if _, err := l.Get(ctx, id, load); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "warm Get", rec.take(), "mget")
}

// testClusterTagsAcrossSlots: a key on one master, its tag on another;
// tickets are comparable because they come from one sequence.
func testClusterTagsAcrossSlots(t *testing.T, env *clusterEnv) {
	s := newStore(t, env.client, redisstore.Prefix("xs:"))
	ctx := t.Context()
	key, tag := env.on(0, "k"), env.on(1, "t")
	req := func(tok uint64) store.LookupRequest { return store.LookupRequest{Lease: tok, LeaseTTL: time.Hour} }
	fill := func(t0 store.Ticket, v string) bool {
		t.Helper()
		ok, err := s.Fill(ctx, key, &store.Fill{Value: []byte(v), Ticket: t0, TTL: time.Hour, Tags: []string{tag}})
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	// ticket, invalidate the tag (other node), fill: refused.
	lk, _ := s.Lookup(ctx, key, req(1))
	if err := s.Invalidate(ctx, store.Invalidation{Tags: []string{tag}}); err != nil {
		t.Fatal(err)
	}
	if fill(lk.Ticket, "old") {
		t.Fatal("fill with a ticket older than the tag's invalidation was accepted")
	}
	// A new ticket fills; a later invalidation of the tag hides the entry
	// (the read-side check), hard or soft.
	lk, _ = s.Lookup(ctx, key, req(2))
	if !fill(lk.Ticket, "new") {
		t.Fatal("fill with a new ticket was refused")
	}
	if h, _ := s.Lookup(ctx, key, store.LookupRequest{}); h.State != store.StateFresh {
		t.Fatalf("after the fill: %v", h.State)
	}
	if err := s.Invalidate(ctx, store.Invalidation{Tags: []string{tag}, Soft: true}); err != nil {
		t.Fatal(err)
	}
	// Soft: servable as stale until its TTL ends, one caller refreshes.
	_, _ = s.Release(ctx, key, 1), s.Release(ctx, key, 2)
	if h, _ := s.Lookup(ctx, key, req(9)); h.State != store.StateStale || !h.Lease {
		t.Fatalf("after a soft invalidation of the tag: %+v", h)
	}
	_ = s.Release(ctx, key, 9)
	if err := s.Invalidate(ctx, store.Invalidation{Tags: []string{tag}}); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.Lookup(ctx, key, req(3)); h.Entry != nil || !h.Lease {
		t.Fatalf("after a hard invalidation of the tag: %+v", h)
	}

	// The race the read-side check exists for: the tag is invalidated
	// between the fill's check of it and the fill's write. Played out by
	// hand: the tag's version is written directly, as the invalidation's
	// second step would, after the fill landed.
	lk, _ = s.Lookup(ctx, key, req(4))
	if !fill(lk.Ticket, "raced") {
		t.Fatal("fill refused")
	}
	seq, err := env.client.Incr(ctx, "xs:{_}:seq").Result()
	if err != nil {
		t.Fatal(err)
	}
	tk := "xs:{" + redisstore.Esc(tag) + "}:t"
	if err := env.client.Set(ctx, tk, fmt.Sprintf("%d:%d", seq, seq), 0).Err(); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.Lookup(ctx, key, store.LookupRequest{}); h.Entry != nil {
		t.Fatalf("an entry filled with ticket %d is served after its tag moved to %d", lk.Ticket.Seq, seq)
	}
}

// testClusterSkewFree: no decision depends on the clock of the process:
// freshness is judged by the TIME of the master that holds the key, and
// fencing by the one sequence, never by time. Two stores whose processes
// disagree on nothing but whose keys sit on different masters agree on
// every verdict.
func testClusterSkewFree(t *testing.T, env *clusterEnv) {
	ctx := t.Context()
	a := newStore(t, env.c.Client(t), redisstore.Prefix("skew:"))
	b := newStore(t, env.c.Client(t), redisstore.Prefix("skew:"))
	for i := range env.c.Addrs {
		key := env.on(i, "k")
		nc := env.node(i)
		before, err := nc.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		lk, err := a.Lookup(ctx, key, store.LookupRequest{Lease: 1, LeaseTTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		after, _ := nc.Time(ctx).Result()
		_ = nc.Close()
		if lk.Now.Before(before.Truncate(time.Microsecond)) || lk.Now.After(after) {
			t.Fatalf("node %d: Lookup.Now %v is not the master's TIME (between %v and %v)", i, lk.Now, before, after)
		}
		// Filled through a, judged through b: the windows are instants
		// of the master's clock.
		if ok, err := a.Fill(ctx, key, &store.Fill{Value: []byte("v"), Ticket: lk.Ticket, Lease: 1, TTL: time.Minute}); !ok || err != nil {
			t.Fatal(ok, err)
		}
		h, err := b.Lookup(ctx, key, store.LookupRequest{})
		if err != nil || h.State != store.StateFresh {
			t.Fatalf("node %d: %+v, %v", i, h, err)
		}
		if d := h.Entry.FreshUntil.Sub(h.Entry.Created); d != time.Minute {
			t.Fatalf("node %d: window %v", i, d)
		}
	}
	// Tickets are sequence numbers, one scale for all masters: a ticket
	// taken on master 0 is older than an invalidation applied on master 2
	// exactly when the sequence says so, whatever the clocks.
	k0, t2 := env.on(0, "fenced"), env.on(2, "tag")
	lk, _ := a.Lookup(ctx, k0, store.LookupRequest{Lease: 1, LeaseTTL: time.Minute})
	if err := b.Invalidate(ctx, store.Invalidation{Tags: []string{t2}}); err != nil {
		t.Fatal(err)
	}
	lk2, _ := b.Lookup(ctx, k0, store.LookupRequest{})
	if lk2.Ticket.Seq <= lk.Ticket.Seq {
		t.Fatalf("ticket after the invalidation %d <= before %d", lk2.Ticket.Seq, lk.Ticket.Seq)
	}
	if ok, _ := a.Fill(ctx, k0, &store.Fill{Value: []byte("old"), Ticket: lk.Ticket, Lease: 1, TTL: time.Minute, Tags: []string{t2}}); ok {
		t.Fatal("fill with a ticket older than the tag's invalidation on another master was accepted")
	}
	if ok, _ := a.Fill(ctx, k0, &store.Fill{Value: []byte("new"), Ticket: lk2.Ticket, TTL: time.Minute, Tags: []string{t2}}); !ok {
		t.Fatal("fill with a new ticket was refused")
	}
}

// testClusterNodeLoss: one master loses its data (a restart without
// persistence). Entries whose tags lived there are not served, and loads
// that took their tickets before the loss cannot fill; the sequence never
// goes back even when its own master is the one that lost it.
func testClusterNodeLoss(t *testing.T, env *clusterEnv) {
	ctx := t.Context()
	s := newStore(t, env.client, redisstore.Prefix("loss:"))
	seqNode := -1
	for i, a := range env.c.Addrs {
		if env.owner[redisstore.SlotOf("_")] == a {
			seqNode = i
		}
	}
	tagNode := (seqNode + 1) % 3
	keyNode := (seqNode + 2) % 3
	key, tag := env.on(keyNode, "k"), env.on(tagNode, "t")
	other := env.on(keyNode, "other")

	lk, _ := s.Lookup(ctx, key, store.LookupRequest{Lease: 1, LeaseTTL: time.Hour})
	if ok, err := s.Fill(ctx, key, &store.Fill{Value: []byte("v"), Ticket: lk.Ticket, Lease: 1, TTL: time.Hour, Tags: []string{tag}}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	inflight, _ := s.Lookup(ctx, other, store.LookupRequest{Lease: 2, LeaseTTL: time.Hour})
	// An invalidation of the tag that the tag's master acknowledges, then
	// loses.
	if err := s.Invalidate(ctx, store.Invalidation{Tags: []string{tag}}); err != nil {
		t.Fatal(err)
	}
	env.c.FlushNode(t, env.c.Addrs[tagNode])

	if h, err := s.Lookup(ctx, key, store.LookupRequest{}); err != nil || h.Entry != nil {
		t.Fatalf("entry tagged on the lost master: %+v, %v", h.Entry, err)
	}
	if ok, _ := s.Fill(ctx, other, &store.Fill{Value: []byte("old"), Ticket: inflight.Ticket, Lease: 2, TTL: time.Hour, Tags: []string{tag}}); ok {
		t.Fatal("a load whose ticket predates the loss filled with a tag of the lost master")
	}
	// New loads work again.
	n, _ := s.Lookup(ctx, other, store.LookupRequest{Lease: 3, LeaseTTL: time.Hour})
	if ok, err := s.Fill(ctx, other, &store.Fill{Value: []byte("new"), Ticket: n.Ticket, Lease: 3, TTL: time.Hour, Tags: []string{tag}}); !ok || err != nil {
		t.Fatalf("a new load was refused: %v, %v", ok, err)
	}

	// The sequence's own master loses its data: the sequence goes on
	// upwards, so old tickets stay older than new invalidations.
	before, _ := s.Lookup(ctx, key, store.LookupRequest{})
	env.c.FlushNode(t, env.c.Addrs[seqNode])
	if err := s.Invalidate(ctx, store.Invalidation{Keys: []string{other}}); err != nil {
		t.Fatal(err)
	}
	after, _ := s.Lookup(ctx, other, store.LookupRequest{})
	if after.Ticket.Seq <= before.Ticket.Seq {
		t.Fatalf("the sequence went back: %d after the loss, %d before", after.Ticket.Seq, before.Ticket.Seq)
	}
	if ok, _ := s.Fill(ctx, other, &store.Fill{Value: []byte("old"), Ticket: n.Ticket, TTL: time.Hour}); ok {
		t.Fatal("a fill older than the invalidation after the sequence's loss was accepted")
	}

	// The key's own master loses its data: its epoch changes.
	env.c.FlushNode(t, env.c.Addrs[keyNode])
	h, err := s.Lookup(ctx, other, store.LookupRequest{})
	if err != nil || h.Entry != nil || h.Ticket.Epoch == after.Ticket.Epoch {
		t.Fatalf("after the key's master lost its data: %+v, %v (epoch was %d)", h, err, after.Ticket.Epoch)
	}
	if ok, _ := s.Fill(ctx, other, &store.Fill{Value: []byte("old"), Ticket: after.Ticket, TTL: time.Hour}); ok {
		t.Fatal("a ticket of the lost epoch filled")
	}
}

// testClusterFleet: several Caches with their own cluster clients, one
// cold key: one load.
func testClusterFleet(t *testing.T, env *clusterEnv) {
	const nodes, callers = 3, 8
	ctx := t.Context()
	type member struct {
		w *watched
		l *paddock.Loader[string]
	}
	fl := make([]member, nodes)
	for i := range fl {
		w := watch(newStore(t, env.c.Client(t), redisstore.Prefix("cfleet:")))
		fl[i] = member{w, newLoader(t, newCache(t, w), "p", paddock.Beta(0))}
	}
	var (
		loads atomic.Int64
		wg    sync.WaitGroup
	)
	for i, m := range fl {
		load := func(ctx context.Context) (string, error) {
			loads.Add(1)
			paddock.Tag(ctx, env.on(2, "tag"))
			for j, o := range fl {
				if j != i {
					if err := gate(o.w.held).wait(ctx); err != nil {
						return "", err
					}
				}
			}
			return "v", nil
		}
		for range callers {
			wg.Go(func() {
				if v, err := m.l.Get(ctx, "home", load); err != nil || v != "v" {
					t.Errorf("%q, %v", v, err)
				}
			})
		}
	}
	wg.Wait()
	if loads.Load() != 1 {
		t.Fatalf("%d loads, want 1", loads.Load())
	}
}
