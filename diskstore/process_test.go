package diskstore

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paddockcache/paddock/store"
)

// These tests run copies of the test binary as other processes on one
// database file: TestChildProcess is the child's entry point, and does
// nothing in a plain run.
const (
	childEnv   = "PADDOCK_DISKSTORE_CHILD" // the child's part: fill, set, loop, serve
	childDBEnv = "PADDOCK_DISKSTORE_DB"    // the database file
)

const childLeaseTTL = time.Hour

// startChild runs the child part mode on the database at path, and
// returns it started, with its stdin and stdout.
func startChild(t *testing.T, mode, path string) (*exec.Cmd, io.WriteCloser, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, childDBEnv+"="+path)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, in, bufio.NewScanner(out)
}

// TestChildProcess is the other process of the tests below; it is
// skipped unless one of them started it.
func TestChildProcess(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip("run as a child process only")
	}
	s, err := Open(os.Getenv(childDBEnv))
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(1)
	}
	ctx := context.Background()
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
	}
	must := func(err error) {
		if err != nil {
			say("error %v", err)
			os.Exit(1)
		}
	}
	switch mode {
	case "fill", "set", "loop":
		// Fill keys and invalidate them, telling the parent of each
		// invalidation once it is acknowledged, with the ticket of a
		// load that began before it.
		for i := 0; mode == "loop" || i < 20; i++ {
			key, tag := fmt.Sprint("k", i), fmt.Sprint("t", i)
			lk, err := s.Lookup(ctx, key, store.LookupRequest{Lease: 1, LeaseTTL: childLeaseTTL})
			must(err)
			ok, err := s.Fill(ctx, key, &store.Fill{Value: []byte("old"), Tags: []string{tag}, Ticket: lk.Ticket, Lease: 1, TTL: time.Hour, Stale: time.Hour})
			must(err)
			if !ok {
				must(fmt.Errorf("fill of %s refused", key))
			}
			inv := invalidationOf(i)
			must(s.Invalidate(ctx, inv))
			say("inv %d %d %d", i, lk.Ticket.Epoch, lk.Ticket.Seq)
		}
		// Then stop inside a fill, just before it commits, for the
		// parent to kill.
		testHookCommit = func(op string) {
			if op == "fill" {
				say("filling")
				select {}
			}
		}
		lk, err := s.Lookup(ctx, "half", store.LookupRequest{Lease: 7, LeaseTTL: childLeaseTTL})
		must(err)
		_, err = s.Fill(ctx, "half", &store.Fill{Value: []byte("half"), Ticket: lk.Ticket, Lease: 7, TTL: time.Hour, Set: mode == "set"})
		must(err)
		say("error the fill returned")
	case "serve":
		serve(s, bufio.NewScanner(os.Stdin), say)
	}
	os.Exit(0)
}

// invalidationOf is the i-th invalidation of the killed children: of key
// ki or tag ti, hard or soft.
func invalidationOf(i int) store.Invalidation {
	key, tag := fmt.Sprint("k", i), fmt.Sprint("t", i)
	switch i % 4 {
	case 0:
		return store.Invalidation{Keys: []string{key}}
	case 1:
		return store.Invalidation{Tags: []string{tag}}
	case 2:
		return store.Invalidation{Keys: []string{key}, Soft: true}
	default:
		return store.Invalidation{Tags: []string{tag}, Soft: true}
	}
}

// TestKilledMidFill kills a process that shares the database with
// SIGKILL while it is inside a fill (a plain one, a Set), or at any
// instant of a run of fills and invalidations, then opens the database
// again and checks that every invalidation the process had seen
// acknowledged held (the entries it dropped are gone, the ones it
// softened are stale, the fills of older loads are refused) and that the
// fill it was killed in wrote nothing.
func TestKilledMidFill(t *testing.T) {
	for _, mode := range []string{"fill", "set", "loop"} {
		t.Run("kill="+mode, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cache.db")
			cmd, _, out := startChild(t, mode, path)
			type acked struct {
				i     int
				inv   store.Invalidation
				tk    store.Ticket
				soft  bool
				byKey bool
			}
			var acks []acked
			for out.Scan() {
				line := out.Text()
				if line == "filling" {
					break
				}
				var i int
				var tk store.Ticket
				if _, err := fmt.Sscanf(line, "inv %d %d %d", &i, &tk.Epoch, &tk.Seq); err != nil {
					t.Fatalf("child: %s", line)
				}
				acks = append(acks, acked{i: i, inv: invalidationOf(i), tk: tk})
				if mode == "loop" && len(acks) == 40 {
					break // and kill it wherever it is
				}
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			if len(acks) == 0 {
				t.Fatal("the child acknowledged no invalidation")
			}

			s, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := t.Context()
			for _, a := range acks {
				key, tag := fmt.Sprint("k", a.i), fmt.Sprint("t", a.i)
				lk, err := s.Lookup(ctx, key, store.LookupRequest{})
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case a.inv.Soft && lk.State != store.StateStale:
					t.Errorf("%s after its acknowledged soft invalidation: %v, want stale", key, lk.State)
				case !a.inv.Soft && (lk.State != store.StateMiss || lk.Entry != nil):
					t.Errorf("%s after its acknowledged invalidation: %v with entry %v, want a miss", key, lk.State, lk.Entry != nil)
				}
				ok, err := s.Fill(ctx, key, &store.Fill{Value: []byte("late"), Tags: []string{tag}, Ticket: a.tk, TTL: time.Hour})
				if err != nil || ok {
					t.Errorf("a fill of %s with ticket %+v from before its acknowledged invalidation: %v, %v; want refused", key, a.tk, ok, err)
				}
			}
			if mode == "loop" {
				return
			}
			lk, err := s.Lookup(ctx, "half", store.LookupRequest{Lease: 8, LeaseTTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if lk.Entry != nil || lk.State != store.StateMiss {
				t.Errorf("the fill the child was killed in left %v with entry %v", lk.State, lk.Entry != nil)
			}
			if !lk.Held || lk.Lease {
				t.Errorf("half: Held %v, Lease %v: the dead child's lease should hold until it expires", lk.Held, lk.Lease)
			}
			// Its lease expires, and another caller takes over.
			later, err := Open(path, Clock(func() time.Time { return time.Now().Add(childLeaseTTL + time.Minute) }))
			if err != nil {
				t.Fatal(err)
			}
			defer later.Close()
			if lk, err := later.Lookup(ctx, "half", store.LookupRequest{Lease: 8, LeaseTTL: time.Minute}); err != nil || !lk.Lease {
				t.Errorf("half after the dead child's lease expired: Lease %v, %v; want granted", lk.Lease, err)
			}
		})
	}
}

// serve answers the parent's commands, one a line, until stdin ends:
//
//	lease KEY TOKEN              -> lease=B held=B state=S EPOCH SEQ
//	fill KEY VALUE EPOCH SEQ TOK -> accepted=B
//	inv KEY                      -> ok
//	peek KEY                     -> state=S value=V
//	race N                       -> granted I I I ... (leases of r0..rN-1)
func serve(s *Store, in *bufio.Scanner, say func(string, ...any)) {
	ctx := context.Background()
	for in.Scan() {
		f := strings.Fields(in.Text())
		u := func(i int) uint64 { n, _ := strconv.ParseUint(f[i], 10, 64); return n }
		var err error
		switch f[0] {
		case "lease":
			var lk store.Lookup
			if lk, err = s.Lookup(ctx, f[1], store.LookupRequest{Lease: u(2), LeaseTTL: childLeaseTTL}); err == nil {
				say("lease=%v held=%v state=%v %d %d", lk.Lease, lk.Held, lk.State, lk.Ticket.Epoch, lk.Ticket.Seq)
			}
		case "fill":
			var ok bool
			if ok, err = s.Fill(ctx, f[1], &store.Fill{Value: []byte(f[2]), Ticket: store.Ticket{Epoch: u(3), Seq: u(4)}, Lease: u(5), TTL: time.Hour}); err == nil {
				say("accepted=%v", ok)
			}
		case "inv":
			if err = s.Invalidate(ctx, store.Invalidation{Keys: []string{f[1]}}); err == nil {
				say("ok")
			}
		case "peek":
			var lk store.Lookup
			if lk, err = s.Lookup(ctx, f[1], store.LookupRequest{}); err == nil {
				v := "-"
				if lk.Entry != nil {
					v = string(lk.Entry.Value)
				}
				say("state=%v value=%s", lk.State, v)
			}
		case "race":
			var granted []string
			for i := range int(u(1)) {
				var lk store.Lookup
				if lk, err = s.Lookup(ctx, fmt.Sprint("r", i), store.LookupRequest{Lease: 2, LeaseTTL: childLeaseTTL}); err != nil {
					break
				}
				if lk.Lease {
					granted = append(granted, strconv.Itoa(i))
				}
			}
			if err == nil {
				say("granted %s", strings.Join(granted, " "))
			}
		}
		if err != nil {
			say("error %v", err)
		}
	}
}

// TestTwoProcesses shares one database between this process and a child:
// a lease granted in one is held for the other, an invalidation in one
// fences the other's fill and drops the entry for it at once, and two
// processes racing for the leases of the same keys are never both
// granted one.
func TestTwoProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, in, out := startChild(t, "serve", path)
	ask := func(format string, args ...any) string {
		t.Helper()
		fmt.Fprintf(in, format+"\n", args...)
		if !out.Scan() {
			t.Fatalf("the child ended: %v", out.Err())
		}
		if r := out.Text(); !strings.HasPrefix(r, "error") {
			return r
		} else {
			t.Fatalf("child: %s", r)
			return ""
		}
	}
	ctx := t.Context()
	lease := func(key string, token uint64) store.Lookup {
		t.Helper()
		lk, err := s.Lookup(ctx, key, store.LookupRequest{Lease: token, LeaseTTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return lk
	}

	// A lease here is held there.
	lk := lease("k", 1)
	if !lk.Lease {
		t.Fatalf("first lookup of k: no lease")
	}
	if r := ask("lease k 2"); !strings.HasPrefix(r, "lease=false held=true") {
		t.Fatalf("the child's lookup of k while this process holds its lease: %s", r)
	}
	// An invalidation there fences the load here, and breaks its lease.
	ask("inv k")
	if ok, err := s.Fill(ctx, "k", &store.Fill{Value: []byte("old"), Ticket: lk.Ticket, Lease: 1, TTL: time.Hour}); ok || err != nil {
		t.Fatalf("a fill that began before the child's invalidation: %v, %v; want refused", ok, err)
	}
	lk = lease("k", 3)
	if !lk.Lease {
		t.Fatal("the child's invalidation left the doomed lease of k in place")
	}
	if ok, err := s.Fill(ctx, "k", &store.Fill{Value: []byte("new"), Ticket: lk.Ticket, Lease: 3, TTL: time.Hour}); !ok || err != nil {
		t.Fatalf("fill of k: %v, %v", ok, err)
	}
	// A fill here is a hit there; an invalidation here is a miss there.
	if r := ask("peek k"); r != "state=fresh value=new" {
		t.Fatalf("the child's peek of k after the fill: %s", r)
	}
	if err := s.Invalidate(ctx, store.Invalidation{Keys: []string{"k"}}); err != nil {
		t.Fatal(err)
	}
	if r := ask("peek k"); r != "state=miss value=-" {
		t.Fatalf("the child's peek of k after this process invalidated it: %s", r)
	}
	// And the other way: the child's lease, held here; its fill, a hit here.
	r := ask("lease j 5")
	var tk store.Ticket
	if _, err := fmt.Sscanf(r, "lease=true held=false state=miss %d %d", &tk.Epoch, &tk.Seq); err != nil {
		t.Fatalf("the child's lookup of j: %s", r)
	}
	if lk := lease("j", 6); lk.Lease || !lk.Held {
		t.Fatalf("lookup of j while the child holds its lease: Lease %v, Held %v", lk.Lease, lk.Held)
	}
	if r := ask("fill j fromchild %d %d 5", tk.Epoch, tk.Seq); r != "accepted=true" {
		t.Fatalf("the child's fill of j: %s", r)
	}
	if lk := lease("j", 6); lk.State != store.StateFresh || string(lk.Entry.Value) != "fromchild" || lk.Lease || lk.Held {
		t.Fatalf("lookup of j after the child's fill: %v %+v", lk.State, lk)
	}

	// Both processes race for the leases of the same keys.
	const n = 200
	var (
		wg   sync.WaitGroup
		mine = make(map[int]bool)
	)
	wg.Go(func() {
		for i := range n {
			lk, err := s.Lookup(ctx, fmt.Sprint("r", i), store.LookupRequest{Lease: 1, LeaseTTL: time.Hour})
			if err != nil {
				t.Error(err)
				return
			}
			if lk.Lease {
				mine[i] = true
			}
		}
	})
	theirs := strings.Fields(strings.TrimPrefix(ask("race %d", n), "granted"))
	wg.Wait()
	for _, f := range theirs {
		i, _ := strconv.Atoi(f)
		if mine[i] {
			t.Errorf("lease of r%d granted to both processes", i)
		}
		mine[i] = true
	}
	if len(mine) != n {
		t.Errorf("%d of %d keys granted to one of the processes, want all", len(mine), n)
	}
	t.Logf("the child was granted %d of %d leases, this process %d", len(theirs), n, n-len(theirs))
}
