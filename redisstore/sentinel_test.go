package redisstore_test

import (
	"context"
	"testing"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
)

// TestSentinel runs a Cache on a Sentinel failover client: the standalone
// layout, one script per hit.
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
	wantCalls(t, "cold Get", rec.take(), "lookup", "fill")
	if r, err := l.Fetch(ctx, "1", load); err != nil || r.Status != paddock.StatusHit {
		t.Fatal(r, err)
	}
	wantCalls(t, "warm Get", rec.take(), "lookup")
	if err := l.Invalidate(ctx, "1"); err != nil {
		t.Fatal(err)
	}
	if r, err := l.Fetch(ctx, "1", func(context.Context) (string, error) { return "v2", nil }); err != nil || r.Value != "v2" || r.Status != paddock.StatusLoaded {
		t.Fatal(r, err)
	}
}
