package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"
)

// The fleet stampede: fleetProcs real OS processes (this binary re-run
// with -child fleet) each start fleetCallers callers on the same missing
// key at the same instant. Redis libraries share one Redis; in-process
// libraries have nothing to share, so each process loads on its own.

const (
	fleetProcs   = 4
	fleetCallers = 250
	fleetLoad    = 20 * time.Millisecond
)

func runFleet(ctx context.Context, e *env) error {
	rounds := e.pick(2, 5)
	fmt.Fprintf(e.out, "%d processes × %d callers Get one missing key at the same instant; the load sleeps %v. %d rounds. "+
		"Loads are summed over the processes (1 is ideal; in-process libraries share nothing, so %d is their floor); "+
		"latency is each caller's, from the common start.\n\n",
		fleetProcs, fleetCallers, fleetLoad, rounds, fleetProcs)
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	t := newTable("library", "store", "loads/stampede (median)", "max", "p50", "p99", "errors")
	// Where a waiter's time goes, in the rounds with one load: when the
	// holder's load began, and the p50 of the holder's own callers and
	// of the other processes' callers (each from its process's start).
	split := newTable("library", "rounds with 1 load", "holder's load begins (median)", "p50 holder's callers", "p50 other processes' callers")
	for _, lib := range e.libs {
		if !e.reachable(lib) {
			continue
		}
		r, err := fleet(ctx, e, exe, lib, rounds)
		if err != nil {
			t.add(lib.Name, where(lib), e.failed(lib.Name, err), "", "", "", "")
			e.logf("   %s: %v", lib.Name, err)
			continue
		}
		q := quantiles(r.lat, 0.5, 0.99)
		t.add(lib.Name, where(lib), fmt.Sprintf("%g", median(r.loads)), fmt.Sprintf("%g", maxf(r.loads)), fmtDur(q[0]), fmtDur(q[1]), r.errs)
		e.logf("   %-16s loads %v p50 %v p99 %v", lib.Name, r.loads, q[0], q[1])
		if !lib.FleetOnly {
			e.note(lib.Name, "fleet", fmt.Sprintf("%g", median(r.loads)))
		}
		if len(r.loadAt) > 0 {
			split.add(lib.Name, len(r.loadAt), fmtDur(quantiles(r.loadAt, 0.5)[0]),
				fmtDur(quantiles(r.holder, 0.5)[0]), fmtDur(quantiles(r.others, 0.5)[0]))
		}
	}
	t.print(e.out)
	fmt.Fprintf(e.out, "\nWhere the time goes, in the rounds with one load for the fleet:\n\n")
	split.print(e.out)
	return nil
}

// fleetResult is what the rounds of one library measured: loads per
// round, every caller's latency, errors; and, from the rounds with one
// load, when it began and the latencies of the holder's callers and of
// the others.
type fleetResult struct {
	loads                  []float64
	lat                    []time.Duration
	errs                   int
	loadAt, holder, others []time.Duration
}

// child is one process of the fleet, seen from the parent.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// fleetReport is what a child prints after a round.
type fleetReport struct {
	Loads  int64           `json:"loads"`
	Errors int             `json:"errors"`
	Lat    []time.Duration `json:"lat"`
	// LoadAt is when the child's first load began, from the child's
	// start, as Lat is (with Loads > 0).
	LoadAt time.Duration `json:"load_at,omitempty"`
	Err    string        `json:"err,omitempty"`
}

func fleet(ctx context.Context, e *env, exe string, lib Lib, rounds int) (r fleetResult, err error) {
	var kids []*child
	defer func() {
		for _, k := range kids {
			k.in.Close()
		}
		for _, k := range kids {
			waitOrKill(k.cmd, 5*time.Second)
		}
	}()
	for range fleetProcs {
		cmd := exec.CommandContext(ctx, exe, "-child", "fleet", "-lib", lib.Name, "-redis", e.redis, "-memcached", e.memcached)
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return r, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return r, err
		}
		if err := cmd.Start(); err != nil {
			return r, err
		}
		k := &child{cmd: cmd, in: in, out: bufio.NewScanner(out)}
		k.out.Buffer(make([]byte, 1<<20), 16<<20)
		kids = append(kids, k)
	}
	for _, k := range kids {
		if !k.out.Scan() || k.out.Text() != "ready" {
			return r, fmt.Errorf("child did not start: %q %v", k.out.Text(), k.out.Err())
		}
	}
	for round := range rounds {
		key := e.key(lib, "fleet", round)
		// Every child starts its callers at the same wall-clock instant,
		// far enough ahead for all of them to have read the line.
		at := time.Now().Add(50 * time.Millisecond).UnixNano()
		for _, k := range kids {
			fmt.Fprintf(k.in, "go %s %d\n", key, at)
		}
		var (
			total int64
			reps  []fleetReport
		)
		for _, k := range kids {
			if !k.out.Scan() {
				return r, fmt.Errorf("child died: %v", k.out.Err())
			}
			var rep fleetReport
			if err := json.Unmarshal(k.out.Bytes(), &rep); err != nil {
				return r, err
			}
			if rep.Err != "" {
				return r, errors.New(rep.Err)
			}
			total += rep.Loads
			r.errs += rep.Errors
			r.lat = append(r.lat, rep.Lat...)
			reps = append(reps, rep)
		}
		r.loads = append(r.loads, float64(total))
		if total == 1 {
			for _, rep := range reps {
				if rep.Loads == 1 {
					r.loadAt = append(r.loadAt, rep.LoadAt)
					r.holder = append(r.holder, rep.Lat...)
				} else {
					r.others = append(r.others, rep.Lat...)
				}
			}
		}
	}
	return r, nil
}

func waitOrKill(cmd *exec.Cmd, d time.Duration) {
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
	}
}

// runChild is the body of a child process: "-child NAME flags...".
func runChild(name string, args []string) error {
	switch name {
	case "fleet":
		return fleetChild(args)
	case "memory":
		return memoryChild(args)
	case "pagenode":
		return pageNodeChild(args)
	}
	return fmt.Errorf("unknown child %q", name)
}

// fleetChild builds the library's cache, prints "ready", then for each
// line "go KEY UNIXNANO" runs fleetCallers callers at that instant and
// prints a fleetReport as one JSON line. It exits when stdin closes.
func fleetChild(args []string) error {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	libName := fs.String("lib", "", "")
	redis := fs.String("redis", "", "")
	mc := fs.String("memcached", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lib, err := lookupLib(*libName)
	if err != nil {
		return err
	}
	c, err := lib.New(Config{TTL: time.Minute, Stale: time.Minute, Entries: 16, ValueSize: 1024, Redis: *redis, Memcached: *mc})
	if err != nil {
		return err
	}
	defer c.Close()
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	val := value(1024, "v")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) != 3 || f[0] != "go" {
			return fmt.Errorf("bad line %q", in.Text())
		}
		var at int64
		fmt.Sscan(f[2], &at)
		rep := fleetChildRound(c, f[1], time.Unix(0, at), val)
		b, _ := json.Marshal(rep)
		out.Write(b)
		out.WriteByte('\n')
		out.Flush()
	}
	return in.Err()
}

func fleetChildRound(c Cache, key string, at time.Time, val []byte) fleetReport {
	ctx := context.Background()
	var (
		start time.Time    // this process's start, as the latencies' (within ns)
		began atomic.Int64 // the first load's start, from start
	)
	loads, lat, errs := stampedeRound(ctx, c, key, fleetCallers, func(ctx context.Context) ([]byte, error) {
		began.CompareAndSwap(0, int64(max(time.Since(start), 1)))
		time.Sleep(fleetLoad)
		return val, nil
	}, func() {
		// Sleep until just before the instant, then spin on the clock:
		// the processes start within a scheduler tick of each other.
		time.Sleep(time.Until(at) - 2*time.Millisecond)
		for time.Now().Before(at) {
		}
		start = time.Now()
	})
	return fleetReport{Loads: loads, Errors: errs, Lat: lat, LoadAt: time.Duration(began.Load())}
}
