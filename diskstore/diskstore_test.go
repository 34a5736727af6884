package diskstore

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/paddockcache/paddock/storetest"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newClock() *fakeClock {
	// An origin far from the wall clock: the suite must read Now.
	return &fakeClock{now: time.Date(2041, 7, 3, 11, 22, 33, 444, time.UTC)}
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
