package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Renders per cold URL: many real http.Clients GET one URL nobody has
// cached, at the same instant; the handler takes pageColdRender. Counted:
// the handler's calls. In one process (page-cold), and on a fleet
// (page-fleet) of pageFleetNodes OS processes, each a server with its own
// cache: on Redis they share the pages (and, for paddock, the render);
// in-process caches share nothing, so pageFleetNodes renders is their
// floor.

const (
	pageColdCallers = 1000
	pageColdRender  = 20 * time.Millisecond
	pageFleetNodes  = 4
)

// coldResult is what the rounds of one library collect.
type coldResult struct {
	renders []float64
	lat     []time.Duration
	errors  int
	err     error
}

func runPageCold(ctx context.Context, e *env) error {
	callers := e.pick(250, pageColdCallers)
	rounds := e.pick(2, 7)
	fmt.Fprintf(e.out, "%d concurrent GETs of one cold URL from real http.Clients (connections opened beforehand) to one httptest server; "+
		"the handler takes %v. %d interleaved rounds, a new URL each. Renders are the handler's calls per URL (1 is ideal); "+
		"latency is each GET's, from the common start.\n\n", callers, pageColdRender, rounds)
	libs := e.usablePages()
	nodes := make(map[string][]*node)
	res := make(map[string]*coldResult)
	for _, lib := range libs {
		res[lib.Name] = new(coldResult)
		n, err := startNode(lib, e.pageConfig(time.Minute), nil, pageColdRender, callers)
		if err != nil {
			res[lib.Name].err = err
			continue
		}
		defer n.close()
		nodes[lib.Name] = []*node{n}
	}
	e.coldRounds(ctx, libs, nodes, res, "cold", callers, rounds)
	e.printCold(libs, res)
	return nil
}

func runPageFleet(ctx context.Context, e *env) error {
	callers := e.pick(250, pageColdCallers)
	rounds := e.pick(2, 5)
	fmt.Fprintf(e.out, "%d OS processes, each an httptest server with its own page cache (on Redis: its own client and Cache, sharing one Redis), "+
		"get %d concurrent GETs of one cold URL between them (%d each) at the same instant; the handler takes %v. %d interleaved rounds. "+
		"Renders are summed over the processes (1 is ideal; caches that share nothing have %d as their floor).\n\n",
		pageFleetNodes, callers, callers/pageFleetNodes, pageColdRender, rounds, pageFleetNodes)
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	libs := e.usablePages()
	nodes := make(map[string][]*node)
	res := make(map[string]*coldResult)
	for _, lib := range libs {
		res[lib.Name] = new(coldResult)
		f, err := startFleet(ctx, exe, lib, e.redis, pageFleetNodes, callers/pageFleetNodes)
		if err != nil {
			res[lib.Name].err = err
			continue
		}
		defer f.close()
		nodes[lib.Name] = f.nodes
	}
	e.coldRounds(ctx, libs, nodes, res, "fleet", callers, rounds)
	e.printCold(libs, res)
	return nil
}

// usablePages returns the page libraries this run measures.
func (e *env) usablePages() []PageLib {
	var out []PageLib
	for _, l := range e.pages {
		if e.usablePage(l) {
			out = append(out, l)
		}
	}
	return out
}

// coldRounds runs the interleaved rounds: each round, each library in a
// rotating order gets one stampede on a new URL.
func (e *env) coldRounds(ctx context.Context, libs []PageLib, nodes map[string][]*node, res map[string]*coldResult, what string, callers, rounds int) {
	for round := range rounds {
		for _, lib := range rotate(libs, round) {
			r := res[lib.Name]
			if r.err != nil || ctx.Err() != nil {
				continue
			}
			renders, lat, errs, err := coldRound(ctx, nodes[lib.Name], e.pagePath(lib.Name, what, round), callers)
			if err != nil {
				r.err = err
				continue
			}
			r.renders = append(r.renders, float64(renders))
			r.lat = append(r.lat, lat...)
			r.errors += errs
		}
	}
}

func (e *env) printCold(libs []PageLib, res map[string]*coldResult) {
	t := newTable("library", "store", "renders/URL (median)", "max", "p50", "p99", "errors")
	for _, lib := range libs {
		r := res[lib.Name]
		if r.err != nil {
			t.add(lib.Name, wherePage(lib), e.failed(lib.Name, r.err), "", "", "", "")
			continue
		}
		q := quantiles(r.lat, 0.5, 0.99)
		t.add(lib.Name, wherePage(lib), fmt.Sprintf("%g", median(r.renders)), fmt.Sprintf("%g", maxf(r.renders)), fmtDur(q[0]), fmtDur(q[1]), r.errors)
		e.logf("   %-22s renders %v p50 %v p99 %v errors %d", lib.Name, r.renders, q[0], q[1], r.errors)
	}
	t.print(e.out)
}

// coldRound sends callers concurrent GETs of path, spread over nodes, at
// the same instant, and returns the renders they caused (summed over the
// nodes), each GET's latency and the GETs that failed or got no page.
func coldRound(ctx context.Context, nodes []*node, path string, callers int) (int64, []time.Duration, int, error) {
	per := (callers + len(nodes) - 1) / len(nodes)
	before := make([]int64, len(nodes))
	for i, n := range nodes {
		if err := n.warmConns(ctx, per); err != nil {
			return 0, nil, 0, fmt.Errorf("opening connections: %w", err)
		}
		r, err := n.renders(ctx)
		if err != nil {
			return 0, nil, 0, err
		}
		before[i] = r
	}
	var (
		ready, done sync.WaitGroup
		start       = make(chan struct{})
		lat         = make([]time.Duration, callers)
		errs        atomic.Int64
		t0          time.Time
	)
	ready.Add(callers)
	for i := range callers {
		n := nodes[i%len(nodes)]
		done.Go(func() {
			ready.Done()
			<-start
			v, _, err := n.getPage(ctx, path)
			lat[i] = time.Since(t0)
			if err != nil || v < 1 {
				errs.Add(1)
			}
		})
	}
	ready.Wait()
	t0 = time.Now()
	close(start)
	done.Wait()
	var renders int64
	for i, n := range nodes {
		r, err := n.renders(ctx)
		if err != nil {
			return 0, nil, 0, err
		}
		renders += r - before[i]
		n.client.CloseIdleConnections()
	}
	return renders, lat, int(errs.Load()), nil
}

// A pageFleet is pageFleetNodes child processes (this binary re-run with
// -child pagenode), each serving lib on an httptest server.
type pageFleet struct {
	nodes []*node
	kids  []*exec.Cmd
	ins   []io.WriteCloser
}

// startFleet starts n child processes serving lib, each with a client for
// conns concurrent requests.
func startFleet(ctx context.Context, exe string, lib PageLib, redisAddr string, n, conns int) (*pageFleet, error) {
	f := new(pageFleet)
	for range n {
		cmd := exec.CommandContext(ctx, exe, "-child", "pagenode", "-lib", lib.Name, "-redis", redisAddr, "-delay", pageColdRender.String())
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			f.close()
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			f.close()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			f.close()
			return nil, err
		}
		f.kids = append(f.kids, cmd)
		f.ins = append(f.ins, in)
		sc := bufio.NewScanner(out)
		if !sc.Scan() {
			f.close()
			return nil, fmt.Errorf("page node did not start: %v", sc.Err())
		}
		u, ok := strings.CutPrefix(sc.Text(), "ready ")
		if !ok {
			f.close()
			return nil, fmt.Errorf("page node: %q", sc.Text())
		}
		f.nodes = append(f.nodes, &node{url: u, client: newClient(conns)})
	}
	return f, nil
}

// close ends the children (their stdin closes) and waits for them.
func (f *pageFleet) close() {
	for _, in := range f.ins {
		in.Close()
	}
	for _, n := range f.nodes {
		n.client.CloseIdleConnections()
	}
	for _, k := range f.kids {
		waitOrKill(k, 5*time.Second)
	}
}

// pageNodeChild serves one page node: "-child pagenode -lib NAME -redis
// ADDR -delay D". It prints "ready URL" and serves until stdin closes.
func pageNodeChild(args []string) error {
	fs := flag.NewFlagSet("pagenode", flag.ContinueOnError)
	libName := fs.String("lib", "", "")
	redisAddr := fs.String("redis", "", "")
	delay := fs.Duration("delay", pageColdRender, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lib, err := lookupPageLib(*libName)
	if err != nil {
		return err
	}
	n, err := startNode(lib, PageConfig{TTL: time.Minute, Redis: *redisAddr}, nil, *delay, 1)
	if err != nil {
		return err
	}
	defer n.close()
	fmt.Printf("ready %s\n", n.url)
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}
