package redisstore_test

import (
	"context"
	"testing"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// TestSentinel runs a Cache on a Sentinel failover client: the standalone
// layout, one MGET per hit, one pipeline per batch step.
func TestSentinel(t *testing.T) {
	srv := redistest.Start(t)
	sn := redistest.StartSentinel(t, srv.ListenTCP(t))
	client := sn.Client(t)
	rec := new(calls)
	client.AddHook(rec)
	s := newStore(t, client)
	warm(t, s)
	c := newCache(t, s)
	l := newLoader(t, c, "art", paddock.Beta(0))
	ctx := t.Context()
	rec.take()
	load := func(context.Context) (string, error) { return "v1", nil }
	if v, err := l.Get(ctx, "1", load); err != nil || v != "v1" {
		t.Fatal(v, err)
	}
	wantCalls(t, "cold Get", rec.take(), "mget", "lookup", "fill")
	if r, err := l.Fetch(ctx, "1", load); err != nil || r.Status != paddock.StatusHit {
		t.Fatal(r, err)
	}
	wantCalls(t, "warm Get", rec.take(), "mget")
	if err := l.Invalidate(ctx, "1"); err != nil {
		t.Fatal(err)
	}
	if r, err := l.Fetch(ctx, "1", func(context.Context) (string, error) { return "v2", nil }); err != nil || r.Value != "v2" || r.Status != paddock.StatusLoaded {
		t.Fatal(r, err)
	}

	// A batch is one pipeline, cold and warm, as standalone.
	const n = 10
	keys, reqs := batchKeys("sn:", n), leaseReqs(n, 100)
	warmPipelines(t, s, keys)
	if err := redisstore.CheckServers(ctx, s); err != nil {
		t.Fatal(err)
	}
	rec.take()
	lks := mustLookupMany(t, s, keys, reqs)
	got := rec.take()
	if len(got) != 2 {
		t.Fatalf("LookupMany of 10 cold keys: calls %q, want the MGETs, then the lookups", got)
	}
	wantPipeline(t, "LookupMany of 10 cold keys: MGETs", got[:1], "mget", n)
	wantPipeline(t, "LookupMany of 10 cold keys: lookups", got[1:], "lookup", n)
	mustFillMany(t, s, keys, fillsFor(lks, reqs, "v"))
	wantPipeline(t, "FillMany of 10 keys", rec.take(), "fill", n)
	for i, lk := range mustLookupMany(t, s, keys, leaseReqs(n, 200)) {
		if lk.State != store.StateFresh {
			t.Fatalf("warm %q: %+v", keys[i], lk)
		}
	}
	wantPipeline(t, "LookupMany of 10 warm keys", rec.take(), "mget", n)
}
