package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/paddockcache/paddock/internal/hooks"
)

// startTestNode serves lib for a test, on the test Redis if it needs one,
// closed when the test ends.
func startTestNode(t *testing.T, lib PageLib, delay time.Duration, conns int) *node {
	t.Helper()
	cfg := PageConfig{TTL: time.Minute}
	if lib.Redis {
		cfg.Redis = requireRedis(t)
	}
	n, err := startNode(lib, cfg, nil, delay, conns)
	if err != nil {
		t.Fatalf("%s: %v", lib.Name, err)
	}
	t.Cleanup(n.close)
	return n
}

func testPath(t *testing.T, parts ...any) string {
	return fmt.Sprintf("%stest/%d/%s%s", pagePrefix, time.Now().UnixNano(), t.Name(), fmt.Sprint(parts...))
}

// TestPageAdapters checks that every page cache serves the page, serves
// it again without rendering, and after its purge serves the new version.
func TestPageAdapters(t *testing.T) {
	for _, lib := range orderedPages() {
		t.Run("lib="+lib.Name, func(t *testing.T) {
			ctx := context.Background()
			n := startTestNode(t, lib, 0, 1)
			path := testPath(t)
			v, _, err := n.getPage(ctx, path)
			if err != nil || v != 1 {
				t.Fatalf("first GET: version %d, %v; want 1", v, err)
			}
			eventually(t, "a GET after the first is served from the cache", func() error {
				before := n.site.renders.Load()
				v, _, err := n.getPage(ctx, path)
				switch {
				case err != nil:
					return err
				case v != 1:
					return fmt.Errorf("version %d, want 1", v)
				case n.site.renders.Load() != before:
					return fmt.Errorf("the GET rendered")
				}
				return nil
			})
			n.site.db.Store(2)
			if v, _, _ := n.getPage(ctx, path); v != 1 {
				t.Fatalf("before the purge: version %d, want the cached 1", v)
			}
			if err := n.cache.Purge(ctx, n, path); err != nil {
				t.Fatalf("Purge: %v", err)
			}
			if v, _, err := n.getPage(ctx, path); err != nil || v != 2 {
				t.Fatalf("after the purge: version %d, %v; want 2", v, err)
			}
		})
	}
}

// TestPageHitTarget checks the warm-hit construction: the page is warm,
// and hits render nothing.
func TestPageHitTarget(t *testing.T) {
	for _, name := range pageWarmTargetNames(orderedPages()) {
		t.Run("lib="+name, func(t *testing.T) {
			addr := ""
			if isRedisPage(name) {
				addr = requireRedis(t)
			}
			tg, err := newPageTarget(context.Background(), name, addr, fmt.Sprintf("test%d", time.Now().UnixNano()))
			if err != nil {
				t.Fatal(err)
			}
			defer tg.close()
			for range 10 {
				if err := tg.hit(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if n := tg.extraRenders(); n != 0 {
				t.Fatalf("10 hits rendered %d times", n)
			}
			var st pageWarmStats
			if err := pageWarmRound(context.Background(), tg, &st, 10, 2*pageWarmConc, 0); err != nil {
				t.Fatal(err)
			}
			if st.serial.n != 10 || st.parallel.n != 2*pageWarmConc || len(st.rps) != 1 {
				t.Fatalf("a round recorded %d serial and %d parallel GETs, %d rates", st.serial.n, st.parallel.n, len(st.rps))
			}
		})
	}
}

// TestPageColdRound checks the cold construction: the libraries that
// coalesce render once, victorspringer (which does not) more than once.
func TestPageColdRound(t *testing.T) {
	for _, lib := range orderedPages() {
		if lib.Redis {
			continue
		}
		t.Run("lib="+lib.Name, func(t *testing.T) {
			const callers = 100
			n := startTestNode(t, lib, 20*time.Millisecond, callers)
			renders, lat, errs, err := coldRound(context.Background(), []*node{n}, testPath(t), callers)
			if err != nil {
				t.Fatal(err)
			}
			if errs != 0 || len(lat) != callers {
				t.Fatalf("%d errors, %d latencies", errs, len(lat))
			}
			if lib.Coalesces && renders != 1 {
				t.Fatalf("%d renders, want 1", renders)
			}
			if !lib.Coalesces && renders < 2 {
				t.Fatalf("%d renders, want several (no coalescing)", renders)
			}
		})
	}
}

// TestPageFleetRound checks the fleet construction on four paddock
// Caches sharing Redis: one render for the fleet.
func TestPageFleetRound(t *testing.T) {
	lib, err := lookupPageLib("httpcache-redis")
	if err != nil {
		t.Fatal(err)
	}
	const callers = 100
	var nodes []*node
	for range pageFleetNodes {
		nodes = append(nodes, startTestNode(t, lib, 20*time.Millisecond, callers/pageFleetNodes))
	}
	renders, _, errs, err := coldRound(context.Background(), nodes, testPath(t), callers)
	if err != nil {
		t.Fatal(err)
	}
	if errs != 0 || renders != 1 {
		t.Fatalf("%d renders, %d errors; want 1 render for the fleet", renders, errs)
	}
}

// TestPagePurgeRace checks the purge construction: paddock's page cache
// never serves the old page after the purge; the peers' late fills store
// it every time.
func TestPagePurgeRace(t *testing.T) {
	for _, v := range purgeVariants(orderedPages()) {
		t.Run("lib="+v.name(), func(t *testing.T) {
			cfg := PageConfig{TTL: time.Minute}
			if v.lib.Redis {
				cfg.Redis = requireRedis(t)
			}
			s, err := newPurgeSite(v, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.close()
			r := &purgeResult{statusB: map[string]int{}}
			const rounds = 5
			for i := range rounds {
				late, err := purgeRound(context.Background(), s, testPath(t, "late", i), false)
				if err != nil {
					t.Fatal(err)
				}
				join, err := purgeRound(context.Background(), s, testPath(t, "join", i), true)
				if err != nil {
					t.Fatal(err)
				}
				r.add(late, join)
			}
			if r.rounds != rounds || len(r.statusB) == 0 {
				t.Fatalf("%d rounds, statuses %v", r.rounds, r.statusB)
			}
			if !v.lib.Peer {
				if r.either != 0 {
					t.Fatalf("stale: late fill %d, joining %d of %d rounds; want none", r.lateFill, r.joined, rounds)
				}
				return
			}
			if r.lateFill != rounds {
				t.Fatalf("late fill stale in %d of %d rounds, want all", r.lateFill, rounds)
			}
		})
	}
}

func TestPageVersion(t *testing.T) {
	p := renderPage(42, "/p/x")
	if len(p) != pageSize || pageVersion(p) != 42 {
		t.Fatalf("renderPage: %d bytes, version %d", len(p), pageVersion(p))
	}
	if pageVersion([]byte("nothing")) != -1 {
		t.Fatal("a page without a version has one")
	}
	if got := rotate([]int{1, 2, 3}, 4); fmt.Sprint(got) != "[2 3 1]" {
		t.Fatalf("rotate = %v", got)
	}
}

// TestPageConstructionsCatchBrokenMechanisms switches off one of
// paddock's mechanisms at a time and checks that the construction that
// measures it then finds the page cache wrong: a benchmark row that
// cannot show a failure proves nothing.
func TestPageConstructionsCatchBrokenMechanisms(t *testing.T) {
	ctx := context.Background()
	t.Run("NoFence/late-fill", func(t *testing.T) {
		hooks.NoFence.Store(true)
		defer hooks.NoFence.Store(false)
		lib, _ := lookupPageLib("httpcache-mem")
		s, err := newPurgeSite(purgeVariant{lib: lib, nodes: 1}, PageConfig{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		stale := 0
		for i := range 5 {
			o, err := purgeRound(ctx, s, testPath(t, i), false)
			if err != nil {
				t.Fatal(err)
			}
			if o.stale {
				stale++
			}
		}
		if stale == 0 {
			t.Fatal("without the fence, no late fill was stale")
		}
	})
	t.Run("JoinOldFlights/joining", func(t *testing.T) {
		hooks.JoinOldFlights.Store(true)
		defer hooks.JoinOldFlights.Store(false)
		lib, _ := lookupPageLib("httpcache-mem")
		s, err := newPurgeSite(purgeVariant{lib: lib, nodes: 1}, PageConfig{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		stale := 0
		for i := range 5 {
			o, err := purgeRound(ctx, s, testPath(t, i), true)
			if err != nil {
				t.Fatal(err)
			}
			if o.stale {
				stale++
			}
		}
		if stale == 0 {
			t.Fatal("with old flights joinable, no joining GET was stale")
		}
	})
	t.Run("NoLease/fleet", func(t *testing.T) {
		hooks.NoLease.Store(true)
		defer hooks.NoLease.Store(false)
		lib, _ := lookupPageLib("httpcache-redis")
		var nodes []*node
		for range pageFleetNodes {
			nodes = append(nodes, startTestNode(t, lib, 20*time.Millisecond, 8))
		}
		renders, _, _, err := coldRound(ctx, nodes, testPath(t), 32)
		if err != nil {
			t.Fatal(err)
		}
		if renders < 2 {
			t.Fatalf("without leases the fleet rendered %d times", renders)
		}
	})
}
