package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Stale pages after a purge that races a render. Each round builds two
// races, each on a new URL:
//
//	A: GET a cold URL; the render reads the database (version v) and blocks
//	writer: version = v+1; purge the URL (the library's way); the purge returns
//	late fill: the render is released; A gets its answer; then one GET per
//	    node (C)
//	joining: one GET per node (B) is sent first, while the render still
//	    blocks (each has reached its node's server, and one round trip to
//	    every node has passed, when the render is released); then the
//	    render is released
//
// A B or C that gets version v got a page the purge should have dropped:
// the news homepage that keeps showing the old article after publishing.
// The late fill is the stale-set race (the old render stores its page
// after the purge); the joining race catches a request that begins after
// the purge and is handed the old render's page. They are separate
// because a request served while the old render runs can also hide a late
// fill: a library that rewrites the entry on every hit (victorspringer's
// frequency counter) may write the new page back over it.
//
// On Redis the site runs on two nodes (servers with their own cache,
// sharing Redis and the database); the purge is sent on the node that
// renders, or on the other one.

// purgeVariant is one row of the purge table.
type purgeVariant struct {
	lib       PageLib
	nodes     int
	purgeNode int // the node the purge is sent to
}

func (v purgeVariant) name() string {
	if v.nodes == 1 {
		return v.lib.Name
	}
	if v.purgeNode == 0 {
		return v.lib.Name + " (purge on the rendering node)"
	}
	return v.lib.Name + " (purge on another node)"
}

// purgeVariants returns the rows for libs: one node in process, two on
// Redis with the purge sent to each.
func purgeVariants(libs []PageLib) []purgeVariant {
	var out []purgeVariant
	for _, l := range libs {
		if !l.Redis {
			out = append(out, purgeVariant{lib: l, nodes: 1})
			continue
		}
		out = append(out, purgeVariant{lib: l, nodes: 2, purgeNode: 0}, purgeVariant{lib: l, nodes: 2, purgeNode: 1})
	}
	return out
}

// purgeResult is what the rounds of one variant collect.
type purgeResult struct {
	rounds, lateFill, joined, either int
	// statusB counts the cache-status headers of the B responses.
	statusB map[string]int
	err     error
}

// purgeSite is one variant's nodes and database.
type purgeSite struct {
	v     purgeVariant
	nodes []*node
	db    *atomic.Int64
}

func newPurgeSite(v purgeVariant, cfg PageConfig) (*purgeSite, error) {
	s := &purgeSite{v: v, db: new(atomic.Int64)}
	s.db.Store(1)
	for range v.nodes {
		n, err := startNode(v.lib, cfg, s.db, 0, 4)
		if err != nil {
			s.close()
			return nil, err
		}
		s.nodes = append(s.nodes, n)
	}
	return s, nil
}

func (s *purgeSite) close() {
	for _, n := range s.nodes {
		n.close()
	}
}

func runPagePurge(ctx context.Context, e *env) error {
	rounds := e.pick(20, 300)
	fmt.Fprintf(e.out, "Each race: a GET of a cold URL starts a render, which reads the database (version v) and blocks; "+
		"the writer sets version v+1 and purges the URL; the purge returns. Late fill: the render is released, then one GET per node. "+
		"Joining: one GET per node is sent while the render still blocks, then the render is released. "+
		"Counted: races in which a GET that began after the purge returned got version v, the page the purge should have dropped. "+
		"%d interleaved rounds of both races. On Redis the site runs on two nodes sharing Redis and the database, with the purge sent to the node that renders or to the other.\n\n",
		rounds)
	variants := purgeVariants(e.usablePages())
	sites := make([]*purgeSite, len(variants))
	res := make([]*purgeResult, len(variants))
	for i, v := range variants {
		res[i] = &purgeResult{statusB: map[string]int{}}
		s, err := newPurgeSite(v, e.pageConfig(time.Minute))
		if err != nil {
			res[i].err = err
			continue
		}
		defer s.close()
		sites[i] = s
	}
	idx := make([]int, len(variants))
	for i := range idx {
		idx[i] = i
	}
	for round := range rounds {
		for _, i := range rotate(idx, round) {
			r := res[i]
			if r.err != nil || ctx.Err() != nil {
				continue
			}
			late, err := purgeRound(ctx, sites[i], e.pagePath(variants[i].lib.Name, "purge", variants[i].purgeNode, round, "late"), false)
			if err != nil {
				r.err = err
				continue
			}
			join, err := purgeRound(ctx, sites[i], e.pagePath(variants[i].lib.Name, "purge", variants[i].purgeNode, round, "join"), true)
			if err != nil {
				r.err = err
				continue
			}
			r.add(late, join)
		}
	}
	t := newTable("library", "store", "purge", "stale: late fill (GETs after the old render)", "stale: GETs sent during the old render", "rounds with a stale page")
	t.left = 3
	for i, v := range variants {
		r := res[i]
		if r.err != nil {
			t.add(v.name(), wherePage(v.lib), v.lib.PurgeHow, e.failed(v.name(), r.err), "", "")
			continue
		}
		frac := func(n int) string { return fmt.Sprintf("%d / %d", n, r.rounds) }
		t.add(v.name(), wherePage(v.lib), v.lib.PurgeHow, frac(r.lateFill), frac(r.joined), frac(r.either))
		e.logf("   %-50s stale: late fill %d, joining %d, either %d of %d; the joining GETs' cache status: %s", v.name(), r.lateFill, r.joined, r.either, r.rounds, fmtCounts(r.statusB))
	}
	t.print(e.out)
	return nil
}

// purgeOutcome is one race's result.
type purgeOutcome struct {
	// stale: a GET that began after the purge returned got the old page.
	stale bool
	// statusB are the cache statuses of the joining GETs.
	statusB []string
}

func (r *purgeResult) add(late, join purgeOutcome) {
	r.rounds++
	if late.stale {
		r.lateFill++
	}
	if join.stale {
		r.joined++
	}
	if late.stale || join.stale {
		r.either++
	}
	for _, s := range join.statusB {
		r.statusB[s]++
	}
}

// cacheStatus returns what a response says about the cache: its
// Cache-Status (RFC 9211) or X-Cache header.
func cacheStatus(h http.Header) string {
	if s := h.Get("Cache-Status"); s != "" {
		// "paddock; fwd=miss; fwd-status=200; stored": the kind of answer.
		f := strings.Split(s, ";")
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		f = slices.DeleteFunc(f[1:], func(p string) bool { return strings.HasPrefix(p, "ttl=") || strings.HasPrefix(p, "fwd-status=") })
		return strings.Join(f, ";")
	}
	if s := h.Get("X-Cache"); s != "" {
		return "x-cache=" + s
	}
	return "(none)"
}

func fmtCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s ×%d", k, m[k])
	}
	return b.String()
}

// purgeRound runs one race on a new path: the late fill, or with
// joining GETs sent while the old render blocks.
func purgeRound(ctx context.Context, s *purgeSite, path string, joining bool) (purgeOutcome, error) {
	var out purgeOutcome
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	render := s.nodes[0]
	old := s.db.Load()

	// A: the first render of the race reads old and blocks.
	read, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func(int64) {
		first := false
		once.Do(func() { first = true })
		if first {
			close(read)
			select {
			case <-release:
			case <-rctx.Done():
			}
		}
	}
	render.site.hook.Store(&hook)
	defer render.site.hook.Store(nil)
	var releaseOnce sync.Once
	releaseRender := func() { releaseOnce.Do(func() { close(release) }) }
	defer releaseRender()
	type got struct {
		v   int64
		h   http.Header
		err error
	}
	aDone := make(chan got, 1)
	go func() {
		v, h, err := render.getPage(rctx, path)
		aDone <- got{v, h, err}
	}()
	select {
	case <-read:
	case <-rctx.Done():
		return out, errors.New("the render never started")
	}

	// The writer: a new version, then the purge.
	s.db.Store(old + 1)
	if err := s.nodes[0].cache.Purge(rctx, s.nodes[s.v.purgeNode], path); err != nil {
		return out, fmt.Errorf("purge: %w", err)
	}

	// B: one GET per node while the old render blocks.
	bDone := make(chan got, len(s.nodes))
	if joining {
		entered := make(chan struct{}, len(s.nodes))
		for _, n := range s.nodes {
			var o sync.Once
			f := func(r *http.Request) {
				if r.URL.Path == path && r.URL.RawQuery == "" {
					o.Do(func() { entered <- struct{}{} })
				}
			}
			n.entered.Store(&f)
		}
		for _, n := range s.nodes {
			go func() {
				v, h, err := n.getPage(rctx, path)
				bDone <- got{v, h, err}
			}()
		}
		for range s.nodes {
			select {
			case <-entered:
			case <-rctx.Done():
				return out, errors.New("a GET after the purge never reached its server")
			}
		}
		for _, n := range s.nodes {
			n.entered.Store(nil)
		}
		for _, n := range s.nodes {
			if _, _, err := n.get(rctx, "/_bench/ping"); err != nil {
				return out, err
			}
		}
	}
	releaseRender()

	a := <-aDone
	if a.err != nil {
		return out, fmt.Errorf("the racing GET: %w", a.err)
	}
	if joining {
		for range s.nodes {
			b := <-bDone
			if b.err != nil {
				return out, fmt.Errorf("a GET during the render: %w", b.err)
			}
			out.statusB = append(out.statusB, cacheStatus(b.h))
			if b.v == old {
				out.stale = true
			}
		}
		return out, nil
	}

	// C: after the render's GET returned.
	for _, n := range s.nodes {
		v, _, err := n.getPage(rctx, path)
		if err != nil {
			return out, fmt.Errorf("a GET after the render: %w", err)
		}
		if v == old {
			out.stale = true
		}
	}
	return out, nil
}
