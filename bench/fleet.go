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
	for _, lib := range e.libs {
		if !e.usable(lib) {
			continue
		}
		loads, lat, errs, err := fleet(ctx, e, exe, lib, rounds)
		if err != nil {
			t.add(lib.Name, where(lib), e.failed(lib.Name, err), "", "", "", "")
			e.logf("   %s: %v", lib.Name, err)
			continue
		}
		q := quantiles(lat, 0.5, 0.99)
		t.add(lib.Name, where(lib), fmt.Sprintf("%g", median(loads)), fmt.Sprintf("%g", maxf(loads)), fmtDur(q[0]), fmtDur(q[1]), errs)
		e.logf("   %-16s loads %v p50 %v p99 %v", lib.Name, loads, q[0], q[1])
		e.note(lib.Name, "fleet", fmt.Sprintf("%g", median(loads)))
	}
	t.print(e.out)
	return nil
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
	Err    string          `json:"err,omitempty"`
}

func fleet(ctx context.Context, e *env, exe string, lib Lib, rounds int) (loads []float64, lat []time.Duration, errs int, err error) {
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
		cmd := exec.CommandContext(ctx, exe, "-child", "fleet", "-lib", lib.Name, "-redis", e.redis)
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, nil, 0, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, nil, 0, err
		}
		if err := cmd.Start(); err != nil {
			return nil, nil, 0, err
		}
		k := &child{cmd: cmd, in: in, out: bufio.NewScanner(out)}
		k.out.Buffer(make([]byte, 1<<20), 16<<20)
		kids = append(kids, k)
	}
	for _, k := range kids {
		if !k.out.Scan() || k.out.Text() != "ready" {
			return nil, nil, 0, fmt.Errorf("child did not start: %q %v", k.out.Text(), k.out.Err())
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
		var total int64
		for _, k := range kids {
			if !k.out.Scan() {
				return nil, nil, 0, fmt.Errorf("child died: %v", k.out.Err())
			}
			var rep fleetReport
			if err := json.Unmarshal(k.out.Bytes(), &rep); err != nil {
				return nil, nil, 0, err
			}
			if rep.Err != "" {
				return nil, nil, 0, errors.New(rep.Err)
			}
			total += rep.Loads
			errs += rep.Errors
			lat = append(lat, rep.Lat...)
		}
		loads = append(loads, float64(total))
	}
	return loads, lat, errs, nil
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	lib, err := lookupLib(*libName)
	if err != nil {
		return err
	}
	c, err := lib.New(Config{TTL: time.Minute, Stale: time.Minute, Entries: 16, ValueSize: 1024, Redis: *redis})
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
	loads, lat, errs := stampedeRound(ctx, c, key, fleetCallers, func(ctx context.Context) ([]byte, error) {
		time.Sleep(fleetLoad)
		return val, nil
	}, func() {
		// Sleep until just before the instant, then spin on the clock:
		// the processes start within a scheduler tick of each other.
		time.Sleep(time.Until(at) - 2*time.Millisecond)
		for time.Now().Before(at) {
		}
	})
	return fleetReport{Loads: loads, Errors: errs, Lat: lat}
}
