package fleetstats_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/fleetstats"
	"github.com/paddockcache/paddock/httpcache"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/redis/go-redis/v9"
)

type proc struct {
	cache *paddock.Cache
	pages *httpcache.Cache
	art   *paddock.Loader[string]
	pub   *fleetstats.Publisher
}

func newProc(t *testing.T, client redis.UniversalClient, name string) *proc {
	t.Helper()
	s, err := redisstore.New(client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	c, err := paddock.New(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	pages, err := httpcache.New(c)
	if err != nil {
		t.Fatal(err)
	}
	art, err := paddock.NewLoader[string](c, "art")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := fleetstats.New(c, fleetstats.Pages(pages), fleetstats.Name(name), fleetstats.Interval(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return &proc{cache: c, pages: pages, art: art, pub: pub}
}

func (p *proc) get(t *testing.T, key string) {
	t.Helper()
	if _, err := p.art.Get(context.Background(), key, func(context.Context) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
}

func (p *proc) page(t *testing.T, path string) {
	t.Helper()
	h := p.pages.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
}

func TestPublishAndSum(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	ctx := context.Background()
	a, b := newProc(t, client, "a"), newProc(t, client, "b")
	a.get(t, "1") // miss
	a.get(t, "1") // hit
	b.get(t, "1") // hit
	b.get(t, "2") // miss
	a.page(t, "/x")
	b.page(t, "/x")
	b.page(t, "/y")
	for _, p := range []*proc{a, b} {
		if err := p.pub.Publish(ctx); err != nil {
			t.Fatal(err)
		}
	}
	procs, err := fleetstats.Read(ctx, client, redisstore.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 2 || procs[0].Name != "a" || procs[1].Name != "b" || procs[0].Interval != time.Minute {
		t.Fatalf("processes: %+v", procs)
	}
	sum := fleetstats.Sum(procs)["art"]
	if sum.Hits != 2 || sum.Misses != 2 || sum.Loads != 2 {
		t.Fatalf("art summed: %+v", sum)
	}
	routes := fleetstats.SumRoutes(procs)
	if len(routes) != 3 || routes[0].Route != "/x" || routes[0].Misses+routes[0].Hits != 2 || routes[2].Route != "(total)" || routes[2].Requests() != 3 {
		t.Fatalf("routes: %+v", routes)
	}
	ttl, err := client.PTTL(ctx, redisstore.DefaultPrefix+"{_}:stats:a").Result()
	if err != nil || ttl <= 0 || ttl > 3*time.Minute {
		t.Fatalf("the hash expires in %v (%v), want within three intervals", ttl, err)
	}
	// A process whose hash expired is not read.
	if err := client.Del(ctx, redisstore.DefaultPrefix+"{_}:stats:b").Err(); err != nil {
		t.Fatal(err)
	}
	procs, _ = fleetstats.Read(ctx, client, redisstore.DefaultPrefix)
	if len(procs) != 1 || fleetstats.Sum(procs)["art"].Hits != 1 {
		t.Fatalf("after b expired: %+v", procs)
	}
}

func TestRunRemovesOnExit(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	p := newProc(t, client, "r")
	published := make(chan error, 1)
	fleetstats.AfterPublish(p.pub, func(err error) {
		select {
		case published <- err:
		default:
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.pub.Run(ctx, nil) }()
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if procs, _ := fleetstats.Read(context.Background(), client, redisstore.DefaultPrefix); len(procs) != 1 {
		t.Fatalf("while running: %+v", procs)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	if procs, _ := fleetstats.Read(context.Background(), client, redisstore.DefaultPrefix); len(procs) != 0 {
		t.Fatalf("after Run ended: %+v", procs)
	}
}

func TestNewNeedsRedis(t *testing.T) {
	ms, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	c, err := paddock.New(ms)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fleetstats.New(c); !errors.Is(err, fleetstats.ErrNotRedis) {
		t.Fatalf("New on a memstore: %v", err)
	}
	if _, err := fleetstats.New(c, fleetstats.Interval(time.Millisecond), fleetstats.Client(redis.NewClient(&redis.Options{}), "p:")); err == nil {
		t.Fatal("an interval of 1ms accepted")
	}
}
