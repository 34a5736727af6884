package memstore

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/internal/localclock"
	"github.com/paddockcache/paddock/store"
	"github.com/paddockcache/paddock/storetest"
)

func conformanceHarness(t *testing.T) storetest.Harness {
	// An origin far from the wall clock: the suite must read Now.
	clock := storetest.NewClock(time.Date(2041, 7, 3, 11, 22, 33, 444, time.UTC))
	s, err := New(Clock(clock.Now), MaxBytes(16<<20), MaxEntryBytes(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	return storetest.Harness{Store: s, Advance: clock.Advance, Flush: s.flush, TooLarge: 64<<10 + 1}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, conformanceHarness)
}

// TestConformanceBatched runs the suite with every Lookup and Fill made
// through LookupMany and FillMany.
func TestConformanceBatched(t *testing.T) {
	storetest.RunBatched(t, conformanceHarness)
}

// switchEnv names a switch of internal/hooks that TestConformanceSwitched
// turns on. It is set only in the child process that
// TestLeaseOutlivesInvalidation starts: the switches are process-wide.
const switchEnv = "PADDOCK_MEMSTORE_SWITCH"

// TestConformanceSwitched runs the conformance suite with the switch
// named by switchEnv on, and is skipped without it.
func TestConformanceSwitched(t *testing.T) {
	name := os.Getenv(switchEnv)
	if name == "" {
		t.Skip(switchEnv + " is not set")
	}
	sw, ok := hooks.All[name]
	if !ok {
		t.Fatalf("%s=%q names no switch", switchEnv, name)
	}
	sw.Store(true)
	t.Cleanup(hooks.Reset)
	TestConformance(t)
}

// TestLeaseOutlivesInvalidation checks that the conformance suite catches a
// store whose Invalidate leaves the leases of its keys in place
// (hooks.LeaseOutlivesInvalidation): run with the switch on, in a child
// process, its InvalidateBreaksLease case fails, and fails there, while
// the case about tags, which keep their leases, passes.
func TestLeaseOutlivesInvalidation(t *testing.T) {
	if os.Getenv(switchEnv) != "" {
		t.Skip("inside a switched run")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestConformanceSwitched$/^(InvalidateBreaksLease|TagInvalidationKeepsLease)$",
		"-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), switchEnv+"=LeaseOutlivesInvalidation")
	b, err := cmd.CombinedOutput()
	out := string(b)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("with the switch on, the suite passed (or did not run: %v):\n%s", err, out)
	}
	for _, want := range []string{
		"--- FAIL: TestConformanceSwitched/InvalidateBreaksLease",
		"is not granted the lease",
		"--- PASS: TestConformanceSwitched/TagInvalidationKeepsLease",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("with the switch on, the output lacks %q:\n%s", want, out)
		}
	}
}

func newStore(t *testing.T, opts ...Option) *Store {
	t.Helper()
	s, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func leaseOf(t *testing.T, s *Store, key string, token uint64) store.Lookup {
	t.Helper()
	r, err := s.Lookup(t.Context(), key, store.LookupRequest{Lease: token, LeaseTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func fill(t *testing.T, s *Store, key string, f *store.Fill) bool {
	t.Helper()
	ok, err := s.Fill(t.Context(), key, f)
	if err != nil {
		t.Fatalf("Fill(%q): %v", key, err)
	}
	return ok
}

func invalidate(t *testing.T, s *Store, inv store.Invalidation) {
	t.Helper()
	if err := s.Invalidate(t.Context(), inv); err != nil {
		t.Fatal(err)
	}
}

func TestNewOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []Option
	}{
		{"MaxBytes(0)", []Option{MaxBytes(0)}},
		{"MaxBytes(-1)", []Option{MaxBytes(-1)}},
		{"MaxEntryBytes(0)", []Option{MaxEntryBytes(0)}},
		{"MaxEntryBytes(-5)", []Option{MaxEntryBytes(-5)}},
		{"Shards(0)", []Option{Shards(0)}},
		{"Shards(3)", []Option{Shards(3)}},
		{"Shards(-4)", []Option{Shards(-4)}},
		{"LifeWindow(0)", []Option{LifeWindow(0)}},
		{"LifeWindow(500ms)", []Option{LifeWindow(500 * time.Millisecond)}},
		{"Clock(nil)", []Option{Clock(nil)}},
		{"MaxVersions(0)", []Option{MaxVersions(0)}},
		{"nil option", []Option{nil}},
		{"entry as large as the store", []Option{MaxBytes(1 << 20), MaxEntryBytes(1 << 20)}},
		{"entry larger than half a shard", []Option{MaxBytes(1 << 20), Shards(1024), MaxEntryBytes(1 << 10)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(c.opts...)
			if err == nil {
				s.Close()
				t.Fatal("New succeeded, want an error")
			}
			if !errors.Is(err, paddock.ErrInvalidOption) || !strings.HasPrefix(err.Error(), "memstore: ") {
				t.Fatalf("New: %v; want a \"memstore: \" error wrapping ErrInvalidOption", err)
			}
		})
	}

	// Good options, and the default shard counts.
	for _, c := range []struct {
		opts   []Option
		shards int
	}{
		{nil, 64},
		{[]Option{MaxBytes(1 << 30)}, 256},
		{[]Option{MaxBytes(1 << 20), MaxEntryBytes(64 << 10)}, 4},
		{[]Option{MaxBytes(1), MaxEntryBytes(1)}, 1024}, // rounded up to 1 MiB
		{[]Option{MaxBytes(1 << 20), MaxEntryBytes(400 << 10)}, 1},
		{[]Option{Shards(8), LifeWindow(time.Second), MaxVersions(1), Clock(time.Now)}, 8},
	} {
		s := newStore(t, c.opts...)
		if s.shards != c.shards {
			t.Errorf("New(%d options): %d shards, want %d", len(c.opts), s.shards, c.shards)
		}
	}
}

// TestNewSizes: sizes left to their defaults adapt to those that were
// set, and an error about sizes names an option that was set, with fixes
// that work.
func TestNewSizes(t *testing.T) {
	for _, c := range []struct {
		name             string
		opts             []Option
		shards, maxEntry int
	}{
		{"MaxBytes(2 MiB)", []Option{MaxBytes(2 << 20)}, 1, 1<<20 - 281},
		{"MaxBytes(1)", []Option{MaxBytes(1)}, 1, 1<<19 - 281},
		{"MaxBytes(3 MiB)", []Option{MaxBytes(3 << 20)}, 1, 1 << 20},
		{"MaxBytes(1 MiB), Shards(1024)", []Option{MaxBytes(1 << 20), Shards(1024)}, 1024, 1<<9 - 281},
		{"Shards(1)", []Option{Shards(1)}, 1, 1 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A clock that stands still: an entry's encoded size depends
			// on its instants.
			clock := storetest.NewClock(time.Unix(1e9, 0))
			s := newStore(t, append(c.opts, Clock(clock.Now))...)
			if s.shards != c.shards || s.maxEntry != c.maxEntry {
				t.Fatalf("%d shards, MaxEntryBytes %d; want %d, %d", s.shards, s.maxEntry, c.shards, c.maxEntry)
			}
			// An entry of MaxEntryBytes is stored, one byte more is too
			// large.
			r := leaseOf(t, s, "k", 1)
			f := &store.Fill{Value: make([]byte, c.maxEntry-64), Ticket: r.Ticket, TTL: time.Hour}
			b, _ := store.NewEntry(f, r.Ticket, r.Now).MarshalBinary()
			f.Value = make([]byte, len(f.Value)+c.maxEntry-len(b))
			if b, _ := store.NewEntry(f, r.Ticket, r.Now).MarshalBinary(); len(b) != c.maxEntry {
				t.Fatalf("test entry of %d bytes, want %d", len(b), c.maxEntry)
			}
			if !fill(t, s, "k", f) {
				t.Fatal("refused")
			}
			if r := leaseOf(t, s, "k", 2); r.State != store.StateFresh || len(r.Entry.Value) != len(f.Value) {
				t.Fatalf("entry of MaxEntryBytes: %v, want fresh", r.State)
			}
			f.Value = append(f.Value, 0)
			if ok, err := s.Fill(t.Context(), "k", f); ok || !errors.Is(err, paddock.ErrTooLarge) {
				t.Fatalf("Fill of MaxEntryBytes+1 = %v, %v; want ErrTooLarge", ok, err)
			}
		})
	}

	fix := regexp.MustCompile(`^(?:MaxEntryBytes\((\d+)\) or less|Shards\((\d+)\) or fewer|MaxBytes of (\d+) MiB or more)$`)
	for _, c := range []struct {
		name  string
		opts  []Option
		blame string // the option the error is about
	}{
		{"entry as large as the store", []Option{MaxBytes(1 << 20), MaxEntryBytes(1 << 20)}, "MaxEntryBytes(1048576)"},
		{"entry larger than half a shard", []Option{MaxBytes(1 << 20), Shards(1024), MaxEntryBytes(1 << 10)}, "MaxEntryBytes(1024)"},
		{"entry larger than the default store", []Option{MaxEntryBytes(1 << 30)}, "MaxEntryBytes(1073741824)"},
		{"entry too large to count", []Option{MaxEntryBytes(math.MaxInt)}, fmt.Sprintf("MaxEntryBytes(%d)", math.MaxInt)},
		{"shards too small for any entry", []Option{MaxBytes(1 << 20), Shards(4096)}, "Shards(4096)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(c.opts...)
			if err == nil {
				s.Close()
				t.Fatal("New succeeded, want an error")
			}
			msg := err.Error()
			what, fixes, ok := strings.Cut(msg, "; use ")
			if !errors.Is(err, paddock.ErrInvalidOption) || !ok ||
				!strings.HasPrefix(what, "memstore: paddock: invalid option: "+c.blame+" ") {
				t.Fatalf("New: %v; want an error about %s, with fixes", err, c.blame)
			}
			if strings.Contains(what, "MaxEntryBytes") && !strings.HasPrefix(c.blame, "MaxEntryBytes") {
				t.Fatalf("New: %v; names MaxEntryBytes, which was not set", err)
			}
			for _, f := range strings.Split(fixes, ", or ") {
				m := fix.FindStringSubmatch(f)
				if m == nil {
					t.Fatalf("fix %q of %q is none of the three kinds", f, msg)
				}
				n := make([]int, 3)
				for i := range n {
					n[i], _ = strconv.Atoi(m[i+1])
				}
				opts := slices.Clone(c.opts)
				switch {
				case n[0] > 0:
					opts = append(opts, MaxEntryBytes(n[0]))
				case n[1] > 0:
					opts = append(opts, Shards(n[1]))
				default:
					opts = append(opts, MaxBytes(n[2]<<20))
				}
				s, err := New(opts...)
				if err != nil {
					t.Fatalf("with the fix %q: %v", f, err)
				}
				s.Close()
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	s := newStore(t, MaxBytes(1<<20), MaxEntryBytes(1<<10))
	ctx := t.Context()
	k := "big:k"
	r := leaseOf(t, s, k, 1)
	ok, err := s.Fill(ctx, k, &store.Fill{Value: make([]byte, 2<<10), Ticket: r.Ticket, Lease: 1, TTL: time.Hour})
	if ok || !errors.Is(err, paddock.ErrTooLarge) {
		t.Fatalf("Fill of 2 KiB = %v, %v; want false, ErrTooLarge", ok, err)
	}
	// Nothing stored, and the lease was released.
	r = leaseOf(t, s, k, 2)
	if r.Entry != nil || !r.Lease {
		t.Fatalf("after a too-large fill: %+v, want a miss with the lease", r)
	}
	// Tags count towards the size.
	tags := make([]string, 200)
	for i := range tags {
		tags[i] = fmt.Sprintf("tag-%d", i)
	}
	if ok, err := s.Fill(ctx, k, &store.Fill{Value: []byte("v"), Tags: tags, Ticket: r.Ticket, TTL: time.Hour}); ok || !errors.Is(err, paddock.ErrTooLarge) {
		t.Fatalf("Fill with 200 tags = %v, %v; want false, ErrTooLarge", ok, err)
	}
	// Just under the bound is fine.
	if !fill(t, s, k, &store.Fill{Value: make([]byte, 900), Ticket: r.Ticket, Lease: 2, TTL: time.Hour}) {
		t.Fatal("fill refused")
	}
}

// TestSetTooLarge: a Set whose entry is too large to store still replaces
// the key's old entry, as an invalidation of the key would: the old entry
// is gone, and a load that began before the Set cannot fill. (The Set
// followed a write to the source of truth: both would serve the value it
// replaced.) A plain fill too large leaves the old entry.
func TestSetTooLarge(t *testing.T) {
	s := newStore(t, MaxBytes(1<<20), MaxEntryBytes(1<<10))
	ctx := t.Context()
	r := leaseOf(t, s, "k", 1)
	fill(t, s, "k", &store.Fill{Value: []byte("old"), Ticket: r.Ticket, Lease: 1, TTL: time.Hour})
	w := leaseOf(t, s, "k", 0) // the ticket of the Set, and of a load in flight
	big := make([]byte, 2<<10)
	if ok, err := s.Fill(ctx, "k", &store.Fill{Value: big, Ticket: w.Ticket, TTL: time.Hour}); ok || !errors.Is(err, paddock.ErrTooLarge) {
		t.Fatalf("plain Fill of 2 KiB = %v, %v; want false, ErrTooLarge", ok, err)
	}
	if r := leaseOf(t, s, "k", 0); r.State != store.StateFresh {
		t.Fatalf("after a plain fill too large: %v, want the old entry fresh", r.State)
	}
	if ok, err := s.Fill(ctx, "k", &store.Fill{Value: big, Ticket: w.Ticket, TTL: time.Hour, Set: true}); ok || !errors.Is(err, paddock.ErrTooLarge) {
		t.Fatalf("Set of 2 KiB = %v, %v; want false, ErrTooLarge", ok, err)
	}
	if r := leaseOf(t, s, "k", 0); r.Entry != nil {
		t.Fatalf("after a Set too large: %v %q, want no entry", r.State, r.Entry.Value)
	}
	if fill(t, s, "k", &store.Fill{Value: []byte("old"), Ticket: w.Ticket, TTL: time.Hour}) {
		t.Fatal("a load older than the Set too large filled")
	}
	// An encoding error keeps its cause.
	tags := make([]string, 1<<16+1)
	_, err := s.Fill(ctx, "k2", &store.Fill{Tags: tags, Ticket: leaseOf(t, s, "k2", 0).Ticket, TTL: time.Hour})
	if !errors.Is(err, paddock.ErrTooLarge) || !strings.Contains(err.Error(), "65537 tags") {
		t.Fatalf("Fill with 65537 tags: %v, want ErrTooLarge saying why", err)
	}
}

// TestKeyTooLong: a key longer than bigcache can read back is bad input,
// not a value too large, and Fill reports it before it writes anything.
func TestKeyTooLong(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	long := strings.Repeat("k", 65518)
	r := leaseOf(t, s, long, 3)
	if !r.Lease || r.Entry != nil {
		t.Fatalf("Lookup of a 65518-byte key: %+v, want a miss with the lease", r)
	}
	for _, set := range []bool{false, true} {
		ok, err := s.Fill(ctx, long, &store.Fill{Value: []byte("v"), Ticket: r.Ticket, Lease: 3, TTL: time.Hour, Set: set})
		if ok || !errors.Is(err, paddock.ErrInvalidOption) || errors.Is(err, paddock.ErrTooLarge) ||
			err.Error() != "memstore: key of 65518 bytes, more than 65517: paddock: invalid option" {
			t.Fatalf("Fill (Set %v) with a 65518-byte key = %v, %v; want false and a key error wrapping ErrInvalidOption", set, ok, err)
		}
	}
	// Nothing was written: the Set did not take a version, the lease is
	// free.
	if r2 := leaseOf(t, s, long, 4); !r2.Lease || r2.Ticket != r.Ticket {
		t.Fatalf("after the fills: %+v; want the lease released and the ticket %+v unchanged", r2, r.Ticket)
	}
	// Also when the fence would refuse it.
	invalidate(t, s, store.Invalidation{Keys: []string{long}})
	if _, err := s.Fill(ctx, long, &store.Fill{Value: []byte("v"), Ticket: r.Ticket, TTL: time.Hour}); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Fatalf("fenced Fill with a 65518-byte key: %v, want ErrInvalidOption", err)
	}
	// The longest key that bigcache reads back is fine.
	k := long[:65517]
	r = leaseOf(t, s, k, 5)
	if !fill(t, s, k, &store.Fill{Value: []byte("v"), Ticket: r.Ticket, Lease: 5, TTL: time.Hour}) {
		t.Fatal("fill with a 65517-byte key refused")
	}
	if r := leaseOf(t, s, k, 6); r.State != store.StateFresh {
		t.Fatalf("65517-byte key: %v, want fresh", r.State)
	}
}

func TestBadFillAndLookup(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if _, err := s.Lookup(ctx, "k", store.LookupRequest{Lease: 1}); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("Lookup with a lease and no TTL: %v, want ErrInvalidOption", err)
	}
	r := leaseOf(t, s, "k", 1)
	if ok, err := s.Fill(ctx, "k", &store.Fill{Negative: true, Value: []byte("x"), Ticket: r.Ticket, Lease: 1, TTL: time.Hour}); ok || !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("negative Fill with a value = %v, %v; want false, ErrInvalidOption", ok, err)
	}
	if ok, err := s.Fill(ctx, "k", nil); ok || !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("Fill(nil) = %v, %v; want false, ErrInvalidOption", ok, err)
	}
	if r := leaseOf(t, s, "k", 2); !r.Lease {
		t.Error("the bad fill did not release the lease")
	}
}

// TestFutureTicket: a ticket the store never issued is refused.
func TestFutureTicket(t *testing.T) {
	s := newStore(t)
	r := leaseOf(t, s, "k", 1)
	future := store.Ticket{Epoch: r.Ticket.Epoch, Seq: r.Ticket.Seq + 1}
	for _, set := range []bool{false, true} {
		if fill(t, s, "k", &store.Fill{Value: []byte("v"), Ticket: future, TTL: time.Hour, Set: set}) {
			t.Fatalf("fill (Set %v) with a ticket from the future accepted", set)
		}
	}
	if !fill(t, s, "k", &store.Fill{Value: []byte("v"), Ticket: r.Ticket, Lease: 1, TTL: time.Hour}) {
		t.Fatal("fill with the current ticket refused")
	}
}

func TestExpiredFillDropsEntry(t *testing.T) {
	s := newStore(t)
	r := leaseOf(t, s, "k", 1)
	fill(t, s, "k", &store.Fill{Value: []byte("v"), Ticket: r.Ticket, TTL: time.Hour})
	// A fill whose windows are all over already: accepted, stores nothing.
	if !fill(t, s, "k", &store.Fill{Value: []byte("w"), Ticket: r.Ticket, TTL: 0}) {
		t.Fatal("refused")
	}
	if _, err := s.cache.Get("k"); err == nil {
		t.Fatal("entry still in bigcache")
	}
	// A Set fill with no TTL still fences older loads.
	w := leaseOf(t, s, "k", 2)
	if !fill(t, s, "k", &store.Fill{Ticket: w.Ticket, Set: true}) {
		t.Fatal("Set refused")
	}
	if fill(t, s, "k", &store.Fill{Value: []byte("old"), Ticket: w.Ticket, TTL: time.Hour}) {
		t.Fatal("fill older than a Set accepted")
	}
}

// fillPastBound fills s, a store of 1 MiB, with n entries of value under
// "big:0" to "big:<n-1>": more than it holds.
func fillPastBound(t *testing.T, s *Store) (n int, value []byte) {
	t.Helper()
	n, value = 100, bytes.Repeat([]byte("x"), 32<<10)
	for i := range n {
		k := fmt.Sprintf("big:%d", i)
		r := leaseOf(t, s, k, 1)
		if !fill(t, s, k, &store.Fill{Value: value, Ticket: r.Ticket, Lease: 1, TTL: time.Hour}) {
			t.Fatal("refused")
		}
	}
	return n, value
}

func TestMemoryBound(t *testing.T) {
	s := newStore(t, MaxBytes(1<<20), Shards(1), MaxEntryBytes(64<<10), CountEvictions())
	n, value := fillPastBound(t, s)
	ev := s.Evictions()
	if ev["big"] == 0 {
		t.Fatalf("Evictions() = %v, want evictions in namespace big", ev)
	}
	held := s.cache.Len()
	if held*len(value) > 1<<20 || held+int(ev["big"]) != n {
		t.Fatalf("bigcache holds %d entries with %d evicted, of %d; want at most %d", held, ev["big"], n, (1<<20)/len(value))
	}
	// The newest entry is there, the oldest is gone.
	if r := leaseOf(t, s, fmt.Sprintf("big:%d", n-1), 2); r.State != store.StateFresh {
		t.Errorf("newest entry: %v, want fresh", r.State)
	}
	if r := leaseOf(t, s, "big:0", 2); r.Entry != nil || !r.Lease {
		t.Errorf("oldest entry: %+v, want a miss with the lease", r)
	}
	// The map is a copy, and other namespaces are apart.
	ev["big"] = 0
	if s.Evictions()["big"] == 0 {
		t.Error("Evictions() returned the store's own map")
	}
	s.evicted("nocolon")
	s.evicted("a:b:c")
	if ev := s.Evictions(); ev[""] != 1 || ev["a"] != 1 {
		t.Errorf("Evictions() = %v, want \"\" and \"a\" counted once", ev)
	}
}

// TestEvictionsOff: without CountEvictions the store still keeps its
// bound, and counts nothing.
func TestEvictionsOff(t *testing.T) {
	s := newStore(t, MaxBytes(1<<20), Shards(1), MaxEntryBytes(64<<10))
	n, value := fillPastBound(t, s)
	if held := s.cache.Len(); held >= n || held*len(value) > 1<<20 {
		t.Fatalf("bigcache holds %d of %d entries of %d bytes: want some evicted, and the rest within the bound", held, n, len(value))
	}
	if ev := s.Evictions(); len(ev) != 0 {
		t.Fatalf("Evictions() = %v without CountEvictions, want none", ev)
	}
}

func TestLifeWindowEvictions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New(LifeWindow(time.Second), CountEvictions())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		r := leaseOf(t, s, "old:k", 1)
		fill(t, s, "old:k", &store.Fill{Value: []byte("v"), Ticket: r.Ticket, TTL: time.Hour})
		time.Sleep(3 * time.Second) // bigcache's cleanup runs every second
		synctest.Wait()
		if ev := s.Evictions(); ev["old"] != 1 {
			t.Fatalf("Evictions() = %v, want old: 1", ev)
		}
		if r := leaseOf(t, s, "old:k", 2); r.Entry != nil {
			t.Fatalf("entry older than LifeWindow served: %+v", r)
		}
	})
}

// TestDefaultClock runs the windows and leases on the default clock,
// time.Now, inside a synctest bubble.
func TestDefaultClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := t.Context()
		r := leaseOf(t, s, "k", 1)
		if !r.Now.Equal(time.Now()) {
			t.Fatalf("Now = %v, want %v", r.Now, time.Now())
		}
		fill(t, s, "k", &store.Fill{Value: []byte("v"), Ticket: r.Ticket, Lease: 1, TTL: time.Minute, Stale: time.Minute})
		time.Sleep(time.Minute - time.Nanosecond)
		if r := leaseOf(t, s, "k", 2); r.State != store.StateFresh || r.Lease {
			t.Fatalf("1ns before FreshUntil: %v lease %v, want fresh without lease", r.State, r.Lease)
		}
		time.Sleep(time.Nanosecond)
		r = leaseOf(t, s, "k", 2)
		if r.State != store.StateStale || !r.Lease {
			t.Fatalf("at FreshUntil: %v lease %v, want stale with the lease", r.State, r.Lease)
		}
		// The lease lasts its TTL by the store's clock.
		req := store.LookupRequest{Lease: 3, LeaseTTL: time.Hour}
		time.Sleep(59 * time.Second)
		if r, _ := s.Lookup(ctx, "k", req); !r.Held {
			t.Fatal("lease 2 lost before its TTL")
		}
		if r, _ := s.Lookup(ctx, "k", store.LookupRequest{Lease: 2, LeaseTTL: time.Hour}); !r.Lease {
			t.Fatal("the holder's own lookup was not given its lease back")
		}
	})
}

func TestCorrupt(t *testing.T) {
	s := newStore(t)
	r := leaseOf(t, s, "ns:ok", 1)
	fill(t, s, "ns:ok", &store.Fill{Value: []byte("v"), Ticket: r.Ticket, TTL: time.Hour})
	good, err := s.cache.Get("ns:ok")
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range [][]byte{
		[]byte("garbage"),
		{},
		good[:len(good)-1],
		append(append([]byte{}, good...), 0),
	} {
		k := fmt.Sprintf("ns:bad%d", i)
		if err := s.cache.Set(k, b); err != nil {
			t.Fatal(err)
		}
		r := leaseOf(t, s, k, 1)
		if r.State != store.StateMiss || r.Entry != nil || !r.Lease || !r.Corrupt {
			t.Fatalf("corrupt entry %d: %+v, want a miss with the lease, Corrupt", i, r)
		}
		if got := s.Corrupt(); got != uint64(i+1) {
			t.Fatalf("Corrupt() = %d, want %d", got, i+1)
		}
		if _, err := s.cache.Get(k); err == nil {
			t.Fatalf("corrupt entry %d still in bigcache", i)
		}
	}
	// Soft invalidation of a corrupt entry drops it too.
	s.cache.Set("ns:soft", []byte("garbage"))
	invalidate(t, s, store.Invalidation{Keys: []string{"ns:soft"}, Soft: true})
	if _, err := s.cache.Get("ns:soft"); err == nil || s.Corrupt() != 5 {
		t.Fatalf("soft-invalidated corrupt entry: still there %v, Corrupt() = %d", err == nil, s.Corrupt())
	}
	// A read-only lookup counts and drops as well, once.
	s.cache.Set("ns:peek", []byte("garbage"))
	for i := range 2 {
		r, err := s.Lookup(t.Context(), "ns:peek", store.LookupRequest{})
		if err != nil || r.Entry != nil || r.State != store.StateMiss || r.Corrupt != (i == 0) {
			t.Fatalf("peek %d of a corrupt entry: %+v, %v; want a miss, Corrupt only the first time", i, r, err)
		}
	}
	if s.Corrupt() != 6 {
		t.Fatalf("Corrupt() = %d, want 6", s.Corrupt())
	}
}

// TestForeignEpoch: an entry written in another epoch is a miss, dropped,
// and not corrupt.
func TestForeignEpoch(t *testing.T) {
	s := newStore(t)
	r := leaseOf(t, s, "k", 1)
	e := store.NewEntry(&store.Fill{Value: []byte("v"), TTL: time.Hour},
		store.Ticket{Epoch: r.Ticket.Epoch + 1, Seq: r.Ticket.Seq}, r.Now)
	b, _ := e.MarshalBinary()
	s.cache.Set("k", b)
	if r := leaseOf(t, s, "k", 2); r.Entry != nil || r.State != store.StateMiss || r.Corrupt {
		t.Fatalf("foreign entry: %+v, want a miss, not Corrupt", r)
	}
	if s.Corrupt() != 0 {
		t.Fatal("foreign entry counted as corrupt")
	}
	if _, err := s.cache.Get("k"); err == nil {
		t.Fatal("foreign entry kept")
	}
}

func TestVersionOverflow(t *testing.T) {
	s := newStore(t, MaxVersions(1))
	const others = 4000 // far more than 256 stripes of one version each

	// A key: a load in flight, an invalidation, then so many others that
	// every stripe forgets its versions.
	old := leaseOf(t, s, "k", 1)
	invalidate(t, s, store.Invalidation{Keys: []string{"k"}})
	for i := range others {
		invalidate(t, s, store.Invalidation{Keys: []string{fmt.Sprint("other", i)}})
	}
	for i := range s.stripes {
		if n := len(s.stripes[i].versions.m); n > 1 {
			t.Fatalf("stripe %d holds %d versions, bound 1", i, n)
		}
	}
	if fill(t, s, "k", &store.Fill{Value: []byte("old"), Ticket: old.Ticket, Lease: 1, TTL: time.Hour}) {
		t.Fatal("fill older than a forgotten invalidation accepted")
	}
	r := leaseOf(t, s, "k", 2)
	if !fill(t, s, "k", &store.Fill{Value: []byte("new"), Ticket: r.Ticket, Lease: 2, TTL: time.Hour}) {
		t.Fatal("fill newer than every invalidation refused")
	}

	// A tag, the same way.
	old = leaseOf(t, s, "t", 1)
	invalidate(t, s, store.Invalidation{Tags: []string{"tag"}})
	for i := range others {
		invalidate(t, s, store.Invalidation{Tags: []string{fmt.Sprint("othertag", i)}})
	}
	for i := range s.tags {
		if n := len(s.tags[i].soft.m) + len(s.tags[i].hard.m); n > 2 {
			t.Fatalf("tag shard %d holds %d versions, bound 1+1", i, n)
		}
	}
	if fill(t, s, "t", &store.Fill{Value: []byte("old"), Tags: []string{"tag"}, Ticket: old.Ticket, Lease: 1, TTL: time.Hour}) {
		t.Fatal("fill older than a forgotten tag invalidation accepted")
	}
	r = leaseOf(t, s, "t", 2)
	if !fill(t, s, "t", &store.Fill{Value: []byte("new"), Tags: []string{"tag"}, Ticket: r.Ticket, Lease: 2, TTL: time.Hour}) {
		t.Fatal("fill newer than every tag invalidation refused")
	}
	if r := leaseOf(t, s, "t", 3); r.State != store.StateFresh {
		t.Fatalf("entry filled after the overflow: %v, want fresh", r.State)
	}

	// Soft invalidations that overflow make older tagged entries stale,
	// not missing.
	r = leaseOf(t, s, "soft", 1)
	fill(t, s, "soft", &store.Fill{Value: []byte("v"), Tags: []string{"keep"}, Ticket: r.Ticket, Lease: 1, TTL: time.Hour, Stale: time.Hour})
	for i := range others {
		invalidate(t, s, store.Invalidation{Tags: []string{fmt.Sprint("softtag", i)}, Soft: true})
	}
	if r := leaseOf(t, s, "soft", 2); r.State != store.StateStale || r.Entry == nil {
		t.Fatalf("entry with a tag forgotten by soft invalidations: %v, want stale", r.State)
	}
	// And hard ones make them missing: conservative, never stale data.
	for i := range others {
		invalidate(t, s, store.Invalidation{Tags: []string{fmt.Sprint("hardtag", i)}})
	}
	if r := leaseOf(t, s, "soft", 3); r.Entry != nil {
		t.Fatalf("entry with a tag forgotten by hard invalidations: %v, want a miss", r.State)
	}
}

func TestLeaseSweep(t *testing.T) {
	clock := storetest.NewClock(time.Unix(1e9, 0))
	s := newStore(t, Clock(clock.Now))
	ctx := t.Context()
	// Holders that die: leases nobody releases.
	for i := range 10000 {
		if _, err := s.Lookup(ctx, fmt.Sprint("dead", i), store.LookupRequest{Lease: 1, LeaseTTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Hour)
	for i := range 10000 {
		if r := leaseOf(t, s, fmt.Sprint("live", i), 2); !r.Lease {
			t.Fatal("no lease")
		}
	}
	total := 0
	for i := range s.stripes {
		total += s.stripes[i].leases.len()
	}
	if total > 15000 {
		t.Fatalf("%d leases held after 10000 expired and 10000 live, want the expired mostly swept", total)
	}
}

func TestClose(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, paddock.ErrClosed) {
		t.Fatalf("second Close: %v, want ErrClosed", err)
	}
}

// TestConcurrency hammers a few keys and tags from many goroutines with
// every operation, multi-key invalidations in clashing orders included, to
// let -race and the deadlock detector speak.
func TestConcurrency(t *testing.T) {
	s := newStore(t, MaxBytes(4<<20), MaxVersions(64))
	ctx := t.Context()
	keys := []string{"a:1", "a:2", "b:1", "b:2", "c:1", "c:2", "d:1", "d:2"}
	tags := []string{"t1", "t2", "t3", "t4", "t5"}
	pick := func(r *rand.Rand, from []string) []string {
		n := r.IntN(len(from) + 1)
		out := make([]string, n)
		for i := range out {
			out[i] = from[r.IntN(len(from))]
		}
		return out
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 2000 {
				k := keys[r.IntN(len(keys))]
				token := uint64(g*100000 + i + 1)
				switch r.IntN(6) {
				case 0, 1, 2:
					l, err := s.Lookup(ctx, k, store.LookupRequest{Lease: token, LeaseTTL: time.Minute, Early: r.IntN(2) == 0})
					if err != nil {
						t.Error(err)
						return
					}
					if r.IntN(4) == 0 {
						err = s.Release(ctx, k, token)
					} else {
						_, err = s.Fill(ctx, k, &store.Fill{
							Value: []byte(k), Tags: pick(r, tags), Ticket: l.Ticket, Lease: token,
							TTL: time.Duration(r.IntN(3)) * time.Second, Stale: time.Second, Set: r.IntN(8) == 0,
							Early: time.Duration(r.IntN(3)) * time.Second,
						})
					}
					if err != nil {
						t.Error(err)
						return
					}
				case 3, 4:
					if err := s.Invalidate(ctx, store.Invalidation{Keys: pick(r, keys), Tags: pick(r, tags), Soft: r.IntN(2) == 0}); err != nil {
						t.Error(err)
						return
					}
				case 5:
					if _, err := s.Lookup(ctx, k, store.LookupRequest{}); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			s.Evictions()
			s.Corrupt()
		}
	})
	wg.Wait()
}

// TestSetKeepsOld checks the switch that the property tests turn on: with
// it, a refused Set leaves the older entry, served fresh.
func TestSetKeepsOld(t *testing.T) {
	for _, keep := range []bool{false, true} {
		hooks.SetKeepsOld.Store(keep)
		t.Cleanup(func() { hooks.SetKeepsOld.Store(false) })
		s := newStore(t)
		r := leaseOf(t, s, "k", 1)
		fill(t, s, "k", &store.Fill{Value: []byte("old"), Ticket: r.Ticket, Lease: 1, TTL: time.Hour})
		w := leaseOf(t, s, "k", 0)
		invalidate(t, s, store.Invalidation{Tags: []string{"new"}})
		if fill(t, s, "k", &store.Fill{Value: []byte("new"), Tags: []string{"new"}, Ticket: w.Ticket, TTL: time.Hour, Set: true}) {
			t.Fatal("Set accepted after an invalidation of its tag")
		}
		if r := leaseOf(t, s, "k", 0); (r.State == store.StateFresh) != keep {
			t.Fatalf("SetKeepsOld %v: after the refused Set, %v; want fresh only with the switch on", keep, r.State)
		}
	}
}

// TestFillTagGap checks the switch that reopens the race written out in
// Fill (hooks.FillTagGap): an invalidation of a fill's tag that lands
// between the fill's check and its write. hooks.FillGap runs the
// invalidation there.
func TestFillTagGap(t *testing.T) {
	t.Cleanup(hooks.Reset)
	ctx := t.Context()
	setFill := func(tag string, w store.Ticket, set bool) *store.Fill {
		return &store.Fill{Value: []byte("v"), Tags: []string{tag}, Ticket: w, TTL: time.Hour, Set: set}
	}

	t.Run("on", func(t *testing.T) {
		hooks.FillTagGap.Store(true)
		t.Cleanup(hooks.Reset)
		s := newStore(t)
		for _, set := range []bool{true, false} {
			k, tag := fmt.Sprint("k", set), fmt.Sprint("t", set)
			w := leaseOf(t, s, k, 0)
			acked := false
			gap := func() {
				if err := s.Invalidate(ctx, store.Invalidation{Tags: []string{tag}}); err != nil {
					t.Error(err)
				}
				acked = true
			}
			hooks.FillGap.Store(&gap)
			ok := fill(t, s, k, setFill(tag, w.Ticket, set))
			hooks.FillGap.Store(nil)
			if !acked {
				t.Fatal("FillGap not called with FillTagGap on")
			}
			// Both break the promise of Invalidate: a fill with an older
			// ticket is accepted after it returned, and a Set's entry
			// outlives it, fresh.
			if !ok {
				t.Fatalf("Set %v: fill refused; want accepted, its check passed before the invalidation", set)
			}
			if r := leaseOf(t, s, k, 0); (r.State == store.StateFresh) != set {
				t.Fatalf("Set %v: after the fill, %v; want fresh for a Set (its ticket is newer than the invalidation), else a miss", set, r.State)
			}
		}
	})

	t.Run("panic", func(t *testing.T) {
		// A callback that panics leaves the store usable: Fill's locks
		// are released, its lease too.
		hooks.FillTagGap.Store(true)
		t.Cleanup(hooks.Reset)
		s := newStore(t)
		gap := func() { panic("in the gap") }
		hooks.FillGap.Store(&gap)
		r := leaseOf(t, s, "k", 1)
		func() {
			defer func() {
				if p := recover(); p != "in the gap" {
					t.Fatalf("recovered %v, want the callback's panic", p)
				}
			}()
			s.Fill(ctx, "k", &store.Fill{Value: []byte("v"), Tags: []string{"t"}, Ticket: r.Ticket, Lease: 1, TTL: time.Hour})
		}()
		hooks.Reset()
		invalidate(t, s, store.Invalidation{Tags: []string{"t"}})
		if r := leaseOf(t, s, "k", 2); !r.Lease {
			t.Fatalf("after the panic: %+v, want the lease free", r)
		}
	})

	t.Run("off", func(t *testing.T) {
		s := newStore(t)
		gap := func() { t.Error("FillGap called with FillTagGap off") }
		hooks.FillGap.Store(&gap)
		t.Cleanup(hooks.Reset)
		// A Set and an invalidation of its tag, started together: the
		// invalidation lands before the check (the Set is refused) or
		// after the write (the entry is hidden), never between.
		var before, after int
		for i := range 1000 {
			k, tag := fmt.Sprint("k", i), fmt.Sprint("t", i)
			w := leaseOf(t, s, k, 0)
			var (
				ok    bool
				wg    sync.WaitGroup
				start = make(chan struct{})
			)
			wg.Go(func() {
				<-start
				var err error
				if ok, err = s.Fill(ctx, k, setFill(tag, w.Ticket, true)); err != nil {
					t.Error(err)
				}
			})
			wg.Go(func() {
				<-start
				if err := s.Invalidate(ctx, store.Invalidation{Tags: []string{tag}}); err != nil {
					t.Error(err)
				}
			})
			close(start)
			wg.Wait()
			r := leaseOf(t, s, k, 0)
			switch {
			case !ok:
				before++
			case r.State == store.StateMiss:
				after++
			default:
				t.Fatalf("round %d: the Set's entry is %v after an invalidation of its tag returned", i, r.State)
			}
		}
		t.Logf("invalidation before the check: %d, after the write: %d", before, after)
	})
}

// Watch: a waiter's channel is closed by the key's next fill, release or
// invalidation, and by nothing of another key; stop unregisters it.
func TestWatch(t *testing.T) {
	s := newStore(t)
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	for _, tc := range []struct {
		name string
		end  func(key string, lk store.Lookup)
	}{
		{"fill", func(key string, lk store.Lookup) {
			fill(t, s, key, &store.Fill{Value: []byte("v"), TTL: time.Hour, Ticket: lk.Ticket, Lease: 1})
		}},
		{"release", func(key string, _ store.Lookup) {
			if err := s.Release(t.Context(), key, 1); err != nil {
				t.Fatal(err)
			}
		}},
		{"invalidate", func(key string, _ store.Lookup) { invalidate(t, s, store.Invalidation{Keys: []string{key}}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "ns:" + tc.name
			lk := leaseOf(t, s, key, 1)
			if !lk.Lease {
				t.Fatal("no lease")
			}
			wake, stop := s.Watch(key)
			defer stop()
			other, stopOther := s.Watch("ns:other-" + tc.name)
			defer stopOther()
			if waiter := leaseOf(t, s, key, 3); !waiter.Held {
				t.Fatal("a second lookup was not told the lease is held")
			}
			if closed(wake) {
				t.Fatal("woken before the lease ended")
			}
			tc.end(key, lk)
			if !closed(wake) {
				t.Fatalf("a %s of the key did not wake its watcher", tc.name)
			}
			if closed(other) {
				t.Fatalf("a %s of the key woke a watcher of another key", tc.name)
			}
		})
	}
	t.Run("stop", func(t *testing.T) {
		wake, stop := s.Watch("ns:stopped")
		stop()
		stop() // twice is harmless
		lk := leaseOf(t, s, "ns:stopped", 1)
		fill(t, s, "ns:stopped", &store.Fill{Value: []byte("v"), TTL: time.Hour, Ticket: lk.Ticket, Lease: 1})
		if closed(wake) {
			t.Fatal("a stopped watch was woken")
		}
	})
}

func TestLenAndCapacity(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if n := s.Len(); n != 0 {
		t.Fatalf("Len of a new store: %d", n)
	}
	before := s.Capacity()
	for i := range 3 {
		k := fmt.Sprintf("ns:%d", i)
		r, err := s.Lookup(ctx, k, store.LookupRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Fill(ctx, k, &store.Fill{Value: make([]byte, 1<<10), Ticket: r.Ticket, TTL: time.Hour}); !ok || err != nil {
			t.Fatalf("Fill: %v, %v", ok, err)
		}
	}
	if n := s.Len(); n != 3 {
		t.Errorf("Len after 3 fills: %d", n)
	}
	if c := s.Capacity(); c <= 0 || c < before {
		t.Errorf("Capacity: %d after fills, %d before", c, before)
	}
	if err := s.Invalidate(ctx, store.Invalidation{Keys: []string{"ns:0"}}); err != nil {
		t.Fatal(err)
	}
	if n := s.Len(); n != 2 {
		t.Errorf("Len after an invalidation: %d, want 2", n)
	}
}

// FillAt writes the entry as of the instant it is given, an instant of
// the store's own clock that the Cache has just read; a store with a
// Clock of its own, or a Set, reads the clock as Fill does. The store
// says whether its clock is the Cache's.
func TestFillAt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if !s.LocalClock() {
			t.Fatal("a store with the default clock does not say it reads the process's clock")
		}
		ctx := t.Context()
		r := leaseOf(t, s, "k", 1)
		at := time.Now()
		time.Sleep(time.Second)
		ok, err := s.FillAt(ctx, "k", &store.Fill{Value: []byte("v"), Ticket: r.Ticket, Lease: 1, TTL: time.Minute}, localclock.At{T: at})
		if !ok || err != nil {
			t.Fatalf("FillAt = %v, %v", ok, err)
		}
		r, _ = s.Lookup(ctx, "k", store.LookupRequest{})
		if r.Entry == nil || !r.Entry.Created.Equal(at) || !r.Entry.FreshUntil.Equal(at.Add(time.Minute)) {
			t.Fatalf("entry %+v, want one created at %v", r.Entry, at)
		}
		if r, _ := s.Lookup(ctx, "k", store.LookupRequest{Lease: 2, LeaseTTL: time.Hour}); r.Held {
			t.Fatal("FillAt left its lease held")
		}

		fake := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		own, err := New(Clock(func() time.Time { return fake }))
		if err != nil {
			t.Fatal(err)
		}
		defer own.Close()
		if own.LocalClock() {
			t.Fatal("a store with a Clock of its own says it reads the process's clock")
		}
		r = leaseOf(t, own, "k", 1)
		if ok, err := own.FillAt(ctx, "k", &store.Fill{Value: []byte("v"), Ticket: r.Ticket, Lease: 1, TTL: time.Minute}, localclock.At{T: at}); !ok || err != nil {
			t.Fatalf("FillAt = %v, %v", ok, err)
		}
		if r, _ := own.Lookup(ctx, "k", store.LookupRequest{}); r.Entry == nil || !r.Entry.Created.Equal(fake) {
			t.Fatalf("entry %+v of a store with a Clock of its own, want one created at %v", r.Entry, fake)
		}
	})
}
