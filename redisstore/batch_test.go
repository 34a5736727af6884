package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// batchKeys returns n keys named prefix0, prefix1, ...
func batchKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return keys
}

// leaseReqs returns one lease request per key, with tokens from first.
func leaseReqs(n int, first uint64) []store.LookupRequest {
	reqs := make([]store.LookupRequest, n)
	for i := range reqs {
		reqs[i] = store.LookupRequest{Lease: first + uint64(i), LeaseTTL: time.Minute}
	}
	return reqs
}

// fillsFor returns a fill of value v for each lookup, with its ticket and
// lease, and tags.
func fillsFor(lks []store.Lookup, reqs []store.LookupRequest, v string, tags ...string) []*store.Fill {
	fills := make([]*store.Fill, len(lks))
	for i, lk := range lks {
		fills[i] = &store.Fill{Value: []byte(v), Ticket: lk.Ticket, Lease: reqs[i].Lease, TTL: time.Minute, Tags: tags}
	}
	return fills
}

func mustLookupMany(t *testing.T, s *redisstore.Store, keys []string, reqs []store.LookupRequest) []store.Lookup {
	t.Helper()
	lks, errs := s.LookupMany(t.Context(), keys, reqs)
	if errs != nil {
		t.Fatalf("LookupMany: %v", errs)
	}
	return lks
}

func mustFillMany(t *testing.T, s *redisstore.Store, keys []string, fills []*store.Fill) {
	t.Helper()
	ok, errs := s.FillMany(t.Context(), keys, fills)
	if errs != nil {
		t.Fatalf("FillMany: %v", errs)
	}
	for i := range ok {
		if !ok[i] {
			t.Fatalf("FillMany: %q refused", keys[i])
		}
	}
}

// warmPipelines makes a read-only batch of keys, so that the client has
// dialled its pipeline connection (go-redis keeps a pool of its own for
// pipelines) to every node holding them before calls are counted.
func warmPipelines(t *testing.T, s *redisstore.Store, keys []string) {
	t.Helper()
	mustLookupMany(t, s, keys, make([]store.LookupRequest, len(keys)))
}

// wantPipeline checks that got is one round trip: a pipeline of n calls
// named name (and of the extra calls, in order, after them).
func wantPipeline(t *testing.T, what string, got []string, name string, n int, extra ...string) {
	t.Helper()
	names := make([]string, n, n+len(extra))
	for i := range names {
		names[i] = name
	}
	wantCalls(t, what, got, "pipeline("+strings.Join(append(names, extra...), ",")+")")
}

// TestBatchRoundTrips counts the calls of batches of 50 keys on a
// standalone server: a warm LookupMany is one pipeline of MGETs, a cold
// one that pipeline and one of scripts, and a FillMany one pipeline.
func TestBatchRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	rec := new(calls)
	client.AddHook(rec)
	s := newStore(t, client, redisstore.MaxValueSize(1024))
	warm(t, s)
	const n = 50
	keys, reqs := batchKeys("b:", n), leaseReqs(n, 100)
	warmPipelines(t, s, keys)
	if err := redisstore.CheckServers(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	rec.take()

	lks := mustLookupMany(t, s, keys, reqs)
	got := rec.take()
	if len(got) != 2 {
		t.Fatalf("LookupMany of 50 cold keys: calls %q, want the MGETs, then the scripts", got)
	}
	wantPipeline(t, "LookupMany of 50 cold keys: the hit path", got[:1], "mget", n)
	wantPipeline(t, "LookupMany of 50 cold keys: the scripts", got[1:], "lookup", n)
	for i, lk := range lks {
		if !lk.Lease || lk.State != store.StateMiss {
			t.Fatalf("cold %q: %+v", keys[i], lk)
		}
	}
	mustFillMany(t, s, keys, fillsFor(lks, reqs, "v", "b-tag", "b-other"))
	wantPipeline(t, "FillMany of 50 keys (2 tags each)", rec.take(), "fill", n)

	lks = mustLookupMany(t, s, keys, leaseReqs(n, 200))
	wantPipeline(t, "LookupMany of 50 warm keys", rec.take(), "mget", n)
	for i, lk := range lks {
		if lk.State != store.StateFresh || string(lk.Entry.Value) != "v" || lk.Lease {
			t.Fatalf("warm %q: %+v", keys[i], lk)
		}
	}

	// A value too large is not sent: its lease is given back in the same
	// pipeline.
	keys2, reqs2 := batchKeys("big:", 3), leaseReqs(3, 300)
	lks = mustLookupMany(t, s, keys2, reqs2)
	rec.take()
	fills := fillsFor(lks, reqs2, "v")
	fills[1].Value = make([]byte, 1025)
	ok, errs := s.FillMany(t.Context(), keys2, fills)
	if !ok[0] || ok[1] || !ok[2] || errs[0] != nil || !errors.Is(errs[1], paddock.ErrTooLarge) || errs[2] != nil {
		t.Fatalf("FillMany with a value too large: %v, %v", ok, errs)
	}
	wantCalls(t, "FillMany of 3 keys, one too large", rec.take(), "pipeline(fill,release,fill)")

	// A batch of one key costs what the single call costs.
	if _, errs := s.LookupMany(t.Context(), keys[:1], reqs[:1]); errs != nil {
		t.Fatal(errs)
	}
	wantCalls(t, "LookupMany of 1 key", rec.take(), "mget")
}

// TestBatchScriptFlush: after the server lost its scripts (SCRIPT FLUSH,
// a restart), a batch's calls come back NOSCRIPT and are sent again with
// EVAL, in one more pipeline, as a single call is.
func TestBatchScriptFlush(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	raw := srv.Client(t, nil)
	rec := new(calls)
	client.AddHook(rec)
	s := newStore(t, client)
	ctx := t.Context()
	warm(t, s)
	const n = 10
	keys, reqs := batchKeys("fl:", n), leaseReqs(n, 1)
	warmPipelines(t, s, keys)
	if err := raw.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	rec.take()

	lks := mustLookupMany(t, s, keys, reqs)
	got := rec.take()
	if len(got) != 3 {
		t.Fatalf("LookupMany after SCRIPT FLUSH: calls %q, want the MGETs, the scripts, then EVAL", got)
	}
	wantPipeline(t, "LookupMany after SCRIPT FLUSH, the hit path", got[:1], "mget", n)
	wantPipeline(t, "LookupMany after SCRIPT FLUSH, first", got[1:2], "lookup", n)
	wantPipeline(t, "LookupMany after SCRIPT FLUSH, again", got[2:], "eval", n)
	for i, lk := range lks {
		if !lk.Lease {
			t.Fatalf("%q: %+v", keys[i], lk)
		}
	}
	mustFillMany(t, s, keys, fillsFor(lks, reqs, "v"))
	got = rec.take()
	wantPipeline(t, "FillMany after SCRIPT FLUSH, first", got[:1], "fill", n)
	wantPipeline(t, "FillMany after SCRIPT FLUSH, again", got[1:], "eval", n)
	// Loaded again: one round trip.
	lks = mustLookupMany(t, s, keys, leaseReqs(n, 100))
	wantPipeline(t, "LookupMany after the scripts came back", rec.take(), "mget", n)
	for i, lk := range lks {
		if lk.State != store.StateFresh {
			t.Fatalf("%q: %+v", keys[i], lk)
		}
	}
}

// aclClient returns a client of srv that logs in as a new user allowed
// only the keys matching patterns.
func aclClient(t *testing.T, srv *redistest.Server, user string, patterns ...string) *redis.Client {
	t.Helper()
	admin := srv.Client(t, nil)
	args := []any{"ACL", "SETUSER", user, "on", ">pw", "+@all"}
	for _, p := range patterns {
		args = append(args, "~"+p)
	}
	if err := admin.Do(t.Context(), args...).Err(); err != nil {
		t.Fatal(err)
	}
	return srv.Client(t, func(o *redis.Options) { o.Username, o.Password = user, "pw" })
}

// TestBatchPartialFailure: a call of the batch that fails is the error of
// its key only, with the text of the single call's error; the other keys
// get their answers.
func TestBatchPartialFailure(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	// The user may not touch the names of the key "no".
	lim := aclClient(t, srv, "lim", "p:{_}*", "p:{ok*")
	s := newStore(t, lim, redisstore.Prefix("p:"))
	keys, reqs := []string{"ok1", "no", "ok2"}, leaseReqs(3, 1)
	lks, errs := s.LookupMany(ctx, keys, reqs)
	_, single := s.Lookup(ctx, "no", reqs[1])
	if len(errs) != 3 || errs[0] != nil || errs[2] != nil || errs[1] == nil || errs[1].Error() != single.Error() {
		t.Fatalf("LookupMany: %v; want %q for %q only", errs, single, keys[1])
	}
	if !lks[0].Lease || !lks[2].Lease {
		t.Fatalf("LookupMany: the other keys: %+v, %+v", lks[0], lks[2])
	}
	t.Logf("the failed key: %v", errs[1])
	fills := fillsFor(lks, reqs, "v")
	fills[1].Ticket = lks[0].Ticket
	ok, errs := s.FillMany(ctx, keys, fills)
	_, single = s.Fill(ctx, "no", fills[1])
	if len(errs) != 3 || errs[0] != nil || errs[2] != nil || errs[1] == nil || errs[1].Error() != single.Error() || !ok[0] || ok[1] || !ok[2] {
		t.Fatalf("FillMany: %v, %v; want %q for %q only", ok, errs, single, keys[1])
	}
}

// TestBatchReleasesFailedLeases: a key whose lookup was granted the lease
// and then failed (Cluster layout: the sequence could not be read) gives
// the lease back, as a single lookup does, so that another caller loads
// at once.
func TestBatchReleasesFailedLeases(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	full := newStore(t, srv.Client(t, nil), redisstore.Prefix("p:"), redisstore.ForceCluster())
	// Fence every slot of the prefix with full rights first: the user
	// below may not touch the sequence, which a fence advances.
	if _, err := full.Lookup(ctx, "warm", store.LookupRequest{}); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, aclClient(t, srv, "noseq", "p:{[^_]*"), redisstore.Prefix("p:"), redisstore.ForceCluster())
	keys, reqs := []string{"a", "b", "c"}, leaseReqs(3, 1)
	_, errs := s.LookupMany(ctx, keys, reqs)
	if len(errs) != 3 {
		t.Fatalf("LookupMany without the sequence: %v, want an error per key", errs)
	}
	for i, err := range errs {
		if err == nil || !strings.HasPrefix(err.Error(), fmt.Sprintf("redisstore: lookup %q: ", keys[i])) {
			t.Fatalf("LookupMany: key %q: %v", keys[i], err)
		}
	}
	for i, k := range keys {
		lk, err := full.Lookup(ctx, k, store.LookupRequest{Lease: 99, LeaseTTL: time.Minute})
		if err != nil || !lk.Lease {
			t.Errorf("%q after the failed batch: %+v, %v; want the lease free", k, lk, err)
		}
		// The failed lookup's token stays refused (a tombstone).
		if lk, err := full.Lookup(ctx, k, reqs[i]); err != nil || lk.Lease {
			t.Errorf("%q: the failed lookup's token: %+v, %v; want no lease", k, lk, err)
		}
	}
}

// TestBatchArgs: slices of different lengths are an error for every key,
// and an empty batch is no call.
func TestBatchArgs(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	rec := new(calls)
	client.AddHook(rec)
	s := newStore(t, client)
	ctx := t.Context()
	lks, errs := s.LookupMany(ctx, []string{"a", "b"}, leaseReqs(1, 1))
	if len(lks) != 2 || len(errs) != 2 || !errors.Is(errs[0], paddock.ErrInvalidOption) || !errors.Is(errs[1], paddock.ErrInvalidOption) ||
		!strings.HasPrefix(errs[1].Error(), `redisstore: lookup "b": `) {
		t.Errorf("LookupMany of 2 keys, 1 request: %d lookups, %v", len(lks), errs)
	}
	ok, errs := s.FillMany(ctx, []string{"a"}, nil)
	if len(ok) != 1 || len(errs) != 1 || !errors.Is(errs[0], paddock.ErrInvalidOption) {
		t.Errorf("FillMany of 1 key, no fill: %v, %v", ok, errs)
	}
	if lks, errs := s.LookupMany(ctx, nil, nil); len(lks) != 0 || errs != nil {
		t.Errorf("LookupMany of no keys: %v, %v", lks, errs)
	}
	if ok, errs := s.FillMany(ctx, nil, nil); len(ok) != 0 || errs != nil {
		t.Errorf("FillMany of no keys: %v, %v", ok, errs)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("calls %q, want none", got)
	}
}

// nodeCalls records, per node address, the round trips of a cluster
// client's node clients (the cluster client's own hook sees one pipeline
// for all nodes).
type nodeCalls struct {
	calls
	addr string
}

func (n *nodeCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		n.add(n.addr + " " + cmdName(cmd))
		return next(ctx, cmd)
	}
}

func (n *nodeCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, cmd := range cmds {
			names[i] = cmdName(cmd)
		}
		n.add(n.addr + " pipeline(" + strings.Join(names, ",") + ")")
		return next(ctx, cmds)
	}
}

// perNode counts got (calls of nodeCalls) by node address.
func perNode(got []string) map[string]int {
	m := make(map[string]int)
	for _, c := range got {
		addr, _, _ := strings.Cut(c, " ")
		m[addr]++
	}
	return m
}

// testClusterBatchRoundTrips counts the calls of batches of 50 keys spread
// over the 3 masters: at most one round trip per node for each step (the
// MGETs of the hit path, the scripts, the tag checks), the nodes in
// parallel.
func testClusterBatchRoundTrips(t *testing.T, env *clusterEnv) {
	client := env.c.Client(t)
	rec := new(calls)
	client.AddHook(rec)
	// Each node client records its own round trips.
	var (
		mu     sync.Mutex
		byNode []*nodeCalls
	)
	client.OnNewNode(func(c *redis.Client) {
		nc := &nodeCalls{addr: c.Options().Addr}
		c.AddHook(nc)
		mu.Lock()
		byNode = append(byNode, nc)
		mu.Unlock()
	})
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var all []string
		for _, nc := range byNode {
			all = append(all, nc.take()...)
		}
		return all
	}
	s := newStore(t, client, redisstore.Prefix("brt:"))
	ctx := t.Context()
	warm(t, s)
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
	const n = 50
	keys, reqs := batchKeys("b", n), leaseReqs(n, 100)
	masters := make(map[string]bool)
	for _, k := range keys {
		masters[env.owner[redisstore.SlotOf(k)]] = true
	}
	if len(masters) != 3 {
		t.Fatalf("the 50 keys are on %d masters, want 3", len(masters))
	}
	seqNode := env.owner[redisstore.SlotOf("_")]
	remote := env.on(0, "remote-tag")
	warmPipelines(t, s, keys)
	if err := redisstore.CheckServers(ctx, s); err != nil {
		t.Fatal(err)
	}
	rec.take()
	take()

	// atMostPerNode checks the node calls of steps: one per master holding
	// keys per step, plus, if extra, one call (the sequence's read, a
	// single command) to the sequence's master.
	atMostPerNode := func(what string, got []string, steps int, extra string) {
		t.Helper()
		want := steps * len(masters)
		if extra != "" {
			want++
		}
		counts := perNode(got)
		for addr, c := range counts {
			limit := steps
			if extra != "" && addr == seqNode {
				limit++
			}
			if c > limit {
				t.Errorf("%s: %d round trips to %s, want at most %d: %q", what, c, addr, limit, got)
			}
		}
		if len(got) > want {
			t.Errorf("%s: %d round trips to the nodes, want at most %d: %q", what, len(got), want, got)
		}
		t.Logf("%s: %d round trips to %d nodes", what, len(got), len(counts))
	}

	lks := mustLookupMany(t, s, keys, reqs)
	got := rec.take()
	if len(got) != 3 || !strings.HasPrefix(got[0], "pipeline(mget,") || !strings.HasPrefix(got[1], "pipeline(lookup,") || got[2] != "get" {
		t.Errorf("LookupMany of 50 cold keys: calls %q, want one pipeline of MGETs, one of lookups, then one GET", got)
	}
	atMostPerNode("LookupMany of 50 cold keys", take(), 2, "get")
	for i, lk := range lks {
		if !lk.Lease {
			t.Fatalf("cold %q: %+v", keys[i], lk)
		}
	}

	mustFillMany(t, s, keys, fillsFor(lks, reqs, "v"))
	wantPipeline(t, "FillMany of 50 keys", rec.take(), "fill", n)
	atMostPerNode("FillMany of 50 keys", take(), 1, "")

	lks = mustLookupMany(t, s, keys, leaseReqs(n, 200))
	wantPipeline(t, "LookupMany of 50 warm keys", rec.take(), "mget", n)
	atMostPerNode("LookupMany of 50 warm keys", take(), 1, "")
	for i, lk := range lks {
		if lk.State != store.StateFresh {
			t.Fatalf("warm %q: %+v", keys[i], lk)
		}
	}

	// A tag on master 0, for every key: the fill checks it first (one
	// pipeline, to master 0 only), the hit after.
	keys, reqs = batchKeys("r", n), leaseReqs(n, 300)
	lks = mustLookupMany(t, s, keys, reqs)
	rec.take()
	take()
	mustFillMany(t, s, keys, fillsFor(lks, reqs, "v", remote))
	got = rec.take()
	if len(got) != 2 || !strings.HasPrefix(got[0], "pipeline(tagcheck,") || !strings.HasPrefix(got[1], "pipeline(fill,") {
		t.Errorf("FillMany of 50 keys with a tag in another slot: calls %q, want the tag checks, then the fills", got)
	}
	t.Logf("FillMany of 50 keys with a tag in another slot: %d round trips, %d to the nodes", len(got), len(take()))
	lks = mustLookupMany(t, s, keys, leaseReqs(n, 400))
	got = rec.take()
	if len(got) != 2 || !strings.HasPrefix(got[0], "pipeline(mget,") || !strings.HasPrefix(got[1], "pipeline(tagcheck,") {
		t.Errorf("LookupMany of 50 warm keys with a tag in another slot: calls %q, want the MGETs, then the tag checks", got)
	}
	t.Logf("LookupMany of 50 warm keys with a tag in another slot: %d round trips, %d to the nodes", len(got), len(take()))
	for i, lk := range lks {
		if lk.State != store.StateFresh {
			t.Fatalf("warm %q: %+v", keys[i], lk)
		}
	}
	// The tag invalidated: every entry is found invalidated by the check,
	// dropped by a second script, and its lease granted with a ticket.
	if err := s.Invalidate(ctx, store.Invalidation{Tags: []string{remote}}); err != nil {
		t.Fatal(err)
	}
	rec.take()
	lks = mustLookupMany(t, s, keys, leaseReqs(n, 500))
	got = rec.take()
	if len(got) != 4 || !strings.HasPrefix(got[0], "pipeline(mget,") || !strings.HasPrefix(got[1], "pipeline(tagcheck,") ||
		!strings.HasPrefix(got[2], "pipeline(lookup,") || got[3] != "get" {
		t.Errorf("LookupMany of 50 keys whose tag was invalidated: calls %q, want MGETs, tag checks, lookups, GET", got)
	} else {
		t.Logf("LookupMany of 50 keys whose tag was invalidated: %d round trips (as one key alone)", len(got))
	}
	for i, lk := range lks {
		if lk.Entry != nil || !lk.Lease {
			t.Fatalf("%q after its tag was invalidated: %+v", keys[i], lk)
		}
	}

	// GetMany through a Cache: the lookups, then the fills, each at most
	// one round trip per node.
	c := newCache(t, s)
	l := newLoader(t, c, "g", paddock.Beta(0))
	gkeys, full := make([]string, n), make([]string, n)
	for i := range gkeys {
		gkeys[i] = fmt.Sprint(i)
		full[i] = l.Key(gkeys[i])
	}
	warmPipelines(t, s, full)
	if err := redisstore.CheckServers(ctx, s); err != nil {
		t.Fatal(err)
	}
	rec.take()
	take()
	load := func(ctx context.Context, keys []string) (map[string]string, error) {
		m := make(map[string]string, len(keys))
		for _, k := range keys {
			m[k] = "v" + k
		}
		return m, nil
	}
	if m, err := l.GetMany(ctx, gkeys, load); err != nil || len(m) != n {
		t.Fatalf("cold GetMany: %d values, %v", len(m), err)
	}
	got = rec.take()
	if len(got) != 4 || !strings.HasPrefix(got[0], "pipeline(mget,") || !strings.HasPrefix(got[1], "pipeline(lookup,") ||
		got[2] != "get" || !strings.HasPrefix(got[3], "pipeline(fill,") {
		t.Errorf("cold GetMany of 50 keys on Cluster: calls %q, want the MGETs, the lookups, the sequence read, the fills", got)
	}
	counts := perNode(take())
	for addr, c := range counts {
		if limit := 3 + b2i(addr == seqNode); c > limit {
			t.Errorf("cold GetMany of 50 keys: %d round trips to %s, want at most %d (MGETs, lookups, fills)", c, addr, limit)
		}
	}
	t.Logf("cold GetMany of 50 keys on Cluster: %d pipelines, round trips per node %v", len(got), counts)
	if m, err := l.GetMany(ctx, gkeys, load); err != nil || len(m) != n {
		t.Fatalf("warm GetMany: %d values, %v", len(m), err)
	}
	wantPipeline(t, "warm GetMany of 50 keys on Cluster", rec.take(), "mget", n)
	atMostPerNode("warm GetMany of 50 keys on Cluster", take(), 1, "")
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
