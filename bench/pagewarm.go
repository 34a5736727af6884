package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// Cached-page latency: a real http.Client GETs one cached 4 KiB page from
// an httptest server, serially and from pageWarmConc goroutines. The raw
// row serves the same page with no cache (the handler writes it): the
// floor of net/http on loopback. The same functions back BenchmarkPageHit
// in bench_test.go and this program's table.

// pageWarmConc is the number of concurrent clients of the parallel mode.
const pageWarmConc = 16

// pageRaw is the name of the row with no cache.
const pageRaw = "raw-handler"

// A pageTarget is a node with a warm page.
type pageTarget struct {
	name  string
	redis bool
	n     *node
	path  string
	// renders is the node's render count once the page was warm: a hit
	// renders nothing.
	renders int64
}

// pageWarmTargetNames lists the lib= names of the warm benchmarks: the
// raw handler, then the page caches.
func pageWarmTargetNames(libs []PageLib) []string {
	names := []string{pageRaw}
	for _, l := range libs {
		names = append(names, l.Name)
	}
	return names
}

func isRedisPage(name string) bool {
	l, err := lookupPageLib(name)
	return err == nil && l.Redis
}

// newPageTarget serves the target named name and warms its page; prefix
// makes its path unique.
func newPageTarget(ctx context.Context, name, redisAddr, prefix string) (*pageTarget, error) {
	t := &pageTarget{name: name, path: pagePrefix + prefix + "/warm/" + name}
	if name == pageRaw {
		t.n = startRawNode(pageWarmConc)
	} else {
		lib, err := lookupPageLib(name)
		if err != nil {
			return nil, err
		}
		t.redis = lib.Redis
		t.n, err = startNode(lib, PageConfig{TTL: time.Hour, Redis: redisAddr}, nil, 0, pageWarmConc)
		if err != nil {
			return nil, err
		}
	}
	if err := t.warm(ctx); err != nil {
		t.n.close()
		return nil, err
	}
	if err := t.n.warmConns(ctx, pageWarmConc); err != nil {
		t.n.close()
		return nil, err
	}
	return t, nil
}

// warm renders the page and waits until a GET is served from the cache
// (a page cache may store a page after its first client got it).
func (t *pageTarget) warm(ctx context.Context) error {
	if _, _, err := t.n.getPage(ctx, t.path); err != nil {
		return err
	}
	if t.name == pageRaw {
		return nil
	}
	for range 100 {
		before := t.n.site.renders.Load()
		if _, _, err := t.n.getPage(ctx, t.path); err != nil {
			return err
		}
		if t.n.site.renders.Load() == before {
			t.renders = before
			return nil
		}
	}
	return fmt.Errorf("%s: the page is never served from the cache", t.name)
}

// hit GETs the warm page once.
func (t *pageTarget) hit(ctx context.Context) error {
	v, _, err := t.n.getPage(ctx, t.path)
	if err == nil && v != 1 {
		err = fmt.Errorf("got version %d, want 1", v)
	}
	return err
}

// extraRenders returns the renders since the page was warm (0 for a
// cache that serves every hit; counted only for caches).
func (t *pageTarget) extraRenders() int64 {
	if t.name == pageRaw {
		return 0
	}
	return t.n.site.renders.Load() - t.renders
}

func (t *pageTarget) close() { t.n.close() }

// benchPageHit GETs t's page in b's loop.
func benchPageHit(b *testing.B, t *pageTarget, parallel bool) {
	ctx := context.Background()
	before := t.extraRenders()
	b.ReportAllocs()
	if !parallel {
		for b.Loop() {
			if err := t.hit(ctx); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism(max(1, pageWarmConc/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := t.hit(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	if n := t.extraRenders() - before; n > 0 {
		b.ReportMetric(float64(n)/float64(b.N), "renders/op")
	}
}

// pageWarmStats is what the interleaved rounds collect for one target.
type pageWarmStats struct {
	serial, parallel hist
	rps              []float64 // parallel requests per second, per round
	allocs, bytes    []float64 // per serial request, per round
	err              error
}

func runPageWarm(ctx context.Context, e *env) error {
	rounds := e.pick(2, 7)
	serialN := e.pick(200, 2000)
	parN := e.pick(800, 8000)
	budget := e.pickDur(100*time.Millisecond, 300*time.Millisecond)
	fmt.Fprintf(e.out, "Warm hits on one cached %d B page: a real http.Client GETs it from an httptest server on loopback and reads the body. "+
		"%d interleaved rounds (each round runs every library in turn, in a rotating order); per round %d serial GETs and %d GETs from %d concurrent clients "+
		"(a slower library stops after %v serial and %v parallel, so its samples are fewer). "+
		"Latency is per GET over all rounds; req/s is the median of the rounds; allocs and KiB per serial GET are the whole process's "+
		"(client, server, cache), the median of the rounds. `%s` serves the same page with no cache: the floor of net/http.\n\n",
		pageSize, rounds, serialN, parN, pageWarmConc, budget, 2*budget, pageRaw)
	var libs []PageLib
	for _, l := range e.pages {
		if e.usablePage(l) {
			libs = append(libs, l)
		}
	}
	names := pageWarmTargetNames(libs)
	targets := make(map[string]*pageTarget)
	stats := make(map[string]*pageWarmStats)
	for _, name := range names {
		stats[name] = new(pageWarmStats)
		t, err := newPageTarget(ctx, name, e.redis, e.run)
		if err != nil {
			stats[name].err = err
			continue
		}
		targets[name] = t
		defer t.close()
	}
	for round := range rounds {
		for _, name := range rotate(names, round) {
			t, st := targets[name], stats[name]
			if t == nil || st.err != nil || ctx.Err() != nil {
				continue
			}
			if err := pageWarmRound(ctx, t, st, serialN, parN, budget); err != nil {
				st.err = err
			}
		}
	}
	t := newTable("library", "store", "serial p50", "p99", "× raw", "allocs/GET", "KiB/GET", "parallel p50", "p99", "req/s", "renders")
	var raw time.Duration
	for _, name := range names {
		st := stats[name]
		kind := kind(isRedisPage(name))
		if st.err != nil {
			t.add(name, kind, e.failed(name, st.err), "", "", "", "", "", "", "", "")
			continue
		}
		p50 := st.serial.quantile(0.5)
		if name == pageRaw {
			raw = p50
		}
		ratio := ""
		if raw > 0 {
			ratio = fmt.Sprintf("%.2g", float64(p50)/float64(raw))
		}
		extra := targets[name].extraRenders()
		t.add(name, kind, fmtDur(p50), fmtDur(st.serial.quantile(0.99)), ratio,
			fmt.Sprintf("%.0f", median(st.allocs)), fmt.Sprintf("%.1f", median(st.bytes)/1024),
			fmtDur(st.parallel.quantile(0.5)), fmtDur(st.parallel.quantile(0.99)), fmt.Sprintf("%.0f", median(st.rps)), extra)
		e.logf("   %-22s serial p50 %v p99 %v; parallel p50 %v p99 %v, %.0f req/s; renders during the hits %d",
			name, p50, st.serial.quantile(0.99), st.parallel.quantile(0.5), st.parallel.quantile(0.99), median(st.rps), extra)
	}
	t.print(e.out)
	return nil
}

// pageWarmRound runs one round of serial and parallel GETs on t: serialN
// serial GETs, then parN GETs split over pageWarmConc clients. A budget
// above zero bounds a slow target's round: the serial GETs stop after
// budget (and at least 50), the parallel clients after twice that.
func pageWarmRound(ctx context.Context, t *pageTarget, st *pageWarmStats, serialN, parN int, budget time.Duration) error {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	n := 0
	for n < serialN && (budget == 0 || n < 50 || time.Since(start) < budget) {
		t0 := time.Now()
		if err := t.hit(ctx); err != nil {
			return err
		}
		st.serial.add(time.Since(t0))
		n++
	}
	runtime.ReadMemStats(&m1)
	st.allocs = append(st.allocs, float64(m1.Mallocs-m0.Mallocs)/float64(n))
	st.bytes = append(st.bytes, float64(m1.TotalAlloc-m0.TotalAlloc)/float64(n))

	per := parN / pageWarmConc
	hs := make([]hist, pageWarmConc)
	errs := make([]error, pageWarmConc)
	var wg sync.WaitGroup
	start = time.Now()
	for i := range pageWarmConc {
		wg.Go(func() {
			for range per {
				t0 := time.Now()
				if err := t.hit(ctx); err != nil {
					errs[i] = err
					return
				}
				hs[i].add(time.Since(t0))
				if budget > 0 && time.Since(start) > 2*budget {
					return
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	if i := slices.IndexFunc(errs, func(err error) bool { return err != nil }); i >= 0 {
		return errs[i]
	}
	var got uint64
	for i := range hs {
		got += hs[i].n
		st.parallel.merge(&hs[i])
	}
	st.rps = append(st.rps, float64(got)/wall.Seconds())
	return nil
}
