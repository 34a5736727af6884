package diskstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/paddockcache/paddock/store"
	"github.com/paddockcache/paddock/storetest"
)

func newClock() *storetest.Clock {
	// An origin far from the wall clock: the suite must read Now.
	return storetest.NewClock(time.Date(2041, 7, 3, 11, 22, 33, 444, time.UTC))
}

func conformanceHarness(t *testing.T) storetest.Harness {
	clock := newClock()
	s, err := Open(filepath.Join(t.TempDir(), "cache.db"), Clock(clock.Now), MaxBytes(16<<20), MaxEntryBytes(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	return storetest.Harness{
		Store:   s,
		Advance: clock.Advance,
		Flush: func() {
			if err := s.flush(t.Context()); err != nil {
				t.Fatalf("flush: %v", err)
			}
		},
		TooLarge: 64<<10 + 1,
	}
}

func TestConformance(t *testing.T) { storetest.Run(t, conformanceHarness) }

// TestConformanceBatched runs the suite with every Lookup and Fill made
// through LookupMany and FillMany.
func TestConformanceBatched(t *testing.T) { storetest.RunBatched(t, conformanceHarness) }

func openTest(t *testing.T, opts ...Option) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "cache.db"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func fillKey(t *testing.T, s *Store, key string, value []byte) {
	t.Helper()
	lk, err := s.Lookup(t.Context(), key, store.LookupRequest{Lease: 1, LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Fill(t.Context(), key, &store.Fill{Value: value, Ticket: lk.Ticket, Lease: 1, TTL: time.Hour}); !ok || err != nil {
		t.Fatalf("fill of %s: %v, %v", key, ok, err)
	}
}

// TestCorruptEntry damages an entry's bytes in the database: the lookup
// is a miss that reports Corrupt, counts it, drops the bytes, and grants
// the lease; the next lookup is a plain miss.
func TestCorruptEntry(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	fillKey(t, s, "ns:k", []byte("v"))
	if _, err := s.wdb.ExecContext(ctx, `UPDATE entries SET env = ? WHERE key = ?`, []byte("pd\x09garbage"), []byte("ns:k")); err != nil {
		t.Fatal(err)
	}
	lk, err := s.Lookup(ctx, "ns:k", store.LookupRequest{Lease: 2, LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !lk.Corrupt || lk.Entry != nil || lk.State != store.StateMiss || !lk.Lease {
		t.Fatalf("lookup of damaged bytes: %+v; want a corrupt miss with the lease", lk)
	}
	if s.Corrupt() != 1 {
		t.Fatalf("Corrupt() = %d, want 1", s.Corrupt())
	}
	if lk, err := s.Lookup(ctx, "ns:k", store.LookupRequest{}); err != nil || lk.Corrupt || lk.Entry != nil {
		t.Fatalf("second lookup: %+v, %v; want a plain miss", lk, err)
	}
}

// TestEvictsOldestFirst fills past MaxBytes: the entries written first
// go, are counted per namespace, and the bytes stay within the bound.
func TestEvictsOldestFirst(t *testing.T) {
	s := openTest(t, MaxBytes(8<<10), MaxEntryBytes(2<<10))
	ctx := t.Context()
	value := make([]byte, 1000)
	for i := range 20 {
		fillKey(t, s, fmt.Sprintf("ns:%02d", i), value)
	}
	// A hit does not save an entry: the order is the order of writing.
	var present []int
	for i := range 20 {
		lk, err := s.Lookup(ctx, fmt.Sprintf("ns:%02d", i), store.LookupRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if lk.Entry != nil {
			present = append(present, i)
		}
	}
	if len(present) == 0 || present[len(present)-1] != 19 || present[0] != 20-len(present) {
		t.Fatalf("entries left after filling past MaxBytes: %v; want the newest ones", present)
	}
	if n := s.Evictions()["ns"]; n != uint64(20-len(present)) {
		t.Fatalf("Evictions()[ns] = %d, want %d", n, 20-len(present))
	}
	var bytes int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT bytes FROM meta`).Scan(&bytes); err != nil {
		t.Fatal(err)
	}
	var sum int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT coalesce(sum(size), 0) FROM entries`).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	if bytes != sum || bytes > 8<<10 {
		t.Fatalf("meta bytes %d, entries' sizes %d, MaxBytes %d", bytes, sum, 8<<10)
	}
}

// TestMaxVersionsFloor overflows the key and tag versions: the tables
// are cleared, and fills with tickets from before the forgotten
// invalidations are still refused.
func TestMaxVersionsFloor(t *testing.T) {
	s := openTest(t, MaxVersions(4))
	ctx := t.Context()
	old, err := s.Lookup(ctx, "k0", store.LookupRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := s.Invalidate(ctx, store.Invalidation{Keys: []string{fmt.Sprint("k", i)}, Tags: []string{fmt.Sprint("t", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	var kn, tn int
	s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM kver`).Scan(&kn)
	s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM tver`).Scan(&tn)
	if kn > 4 || tn > 4 {
		t.Fatalf("%d key versions, %d tag versions kept; MaxVersions is 4", kn, tn)
	}
	for i := range 10 {
		for _, f := range []*store.Fill{
			{Value: []byte("old"), Ticket: old.Ticket, TTL: time.Hour},
		} {
			if ok, err := s.Fill(ctx, fmt.Sprint("k", i), f); ok || err != nil {
				t.Errorf("fill of k%d with a ticket from before its invalidation: %v, %v", i, ok, err)
			}
			f.Tags = []string{fmt.Sprint("t", i)}
			if ok, err := s.Fill(ctx, fmt.Sprint("other", i), f); ok || err != nil {
				t.Errorf("fill tagged t%d with a ticket from before its invalidation: %v, %v", i, ok, err)
			}
		}
	}
}

// TestEntryBoundOptions checks MaxEntryBytes against MaxBytes: the default
// shrinks to a smaller MaxBytes, a MaxEntryBytes given beyond it is an
// error, even one equal to the default.
func TestEntryBoundOptions(t *testing.T) {
	open := func(opts ...Option) (*Store, error) {
		s, err := Open(filepath.Join(t.TempDir(), "cache.db"), opts...)
		if err == nil {
			t.Cleanup(func() { s.Close() })
		}
		return s, err
	}
	s, err := open(MaxBytes(64 << 10))
	if err != nil {
		t.Fatal(err)
	}
	if s.maxEntry != 64<<10 {
		t.Errorf("MaxBytes(64<<10) alone: entry bound %d, want %d", s.maxEntry, 64<<10)
	}
	if s, err = open(); err != nil {
		t.Fatal(err)
	} else if s.maxEntry != defaultMaxEntryBytes {
		t.Errorf("no options: entry bound %d, want %d", s.maxEntry, defaultMaxEntryBytes)
	}
	for _, n := range []int{64<<10 + 1, defaultMaxEntryBytes} {
		if _, err := open(MaxBytes(64<<10), MaxEntryBytes(n)); !errors.Is(err, store.ErrInvalidOption) {
			t.Errorf("MaxBytes(64<<10), MaxEntryBytes(%d): %v, want ErrInvalidOption", n, err)
		}
	}
}
