package paddock_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/hooks"
)

// source is a source of truth: rows that a writer changes, then
// invalidates.
type source struct {
	mu   sync.Mutex
	rows map[string]string
}

func (s *source) read(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rows[key]
}

func (s *source) write(key, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows[key] = v
}

// auditEvents is a Recorder that keeps the audit's events.
type auditEvents struct {
	paddock.NopRecorder
	mu sync.Mutex
	ev []paddock.AuditEvent
}

func (r *auditEvents) RecordAudit(e paddock.AuditEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ev = append(r.ev, e)
}

// raceRound plays the stale-set race on key: a load reads the old row,
// the writer changes the row and invalidates while it runs, then the load
// returns. It then reads the key three times, as readers do, and returns
// the values they got.
func raceRound(t *testing.T, l *paddock.Loader[string], src *source, key string) []string {
	t.Helper()
	src.write(key, "old")
	read := func(ctx context.Context) (string, error) { return src.read(key), nil }
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Get(ctx, key, func(ctx context.Context) (string, error) {
			v := src.read(key)
			close(started)
			<-release
			return v, nil
		})
	}()
	<-started
	src.write(key, "new")
	if err := l.Invalidate(ctx, key); err != nil {
		t.Fatal(err)
	}
	close(release)
	<-done
	var got []string
	for range 3 {
		v, err := l.Get(ctx, key, read)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	return got
}

// TestAuditFindsBrokenFence runs the stale-set race with the fence on and
// with it broken (hooks.NoFence): the audit reports every check
// consistent on the real fence, and violations, in the 1 s window, on the
// broken one, without changing what the Gets return.
func TestAuditFindsBrokenFence(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(fmt.Sprintf("broken=%v", broken), func(t *testing.T) {
			t.Cleanup(hooks.Reset)
			hooks.NoFence.Store(broken)
			rec := &auditEvents{}
			c, err := paddock.New(newMem(t), paddock.Audit(1e6), paddock.AuditSample(1), paddock.AuditSettle(0), paddock.WithRecorder(rec))
			if err != nil {
				t.Fatal(err)
			}
			l := newLoader[string](t, c, "article")
			src := &source{rows: map[string]string{}}
			const rounds = 20
			for i := range rounds {
				got := raceRound(t, l, src, fmt.Sprint(i))
				// The audit runs at most 16 checks at once and drops a hit
				// beyond them: let this round's checks end before the next.
				for paddock.AuditChecksRunning(c) != 0 {
					runtime.Gosched()
				}
				want := "new"
				if broken {
					want = "old" // the audit reports the stale value, and leaves it
				}
				for _, v := range got[1:] { // the first read after the race loads, or hits
					if v != want {
						t.Fatalf("round %d: Gets returned %q, want %q", i, got, want)
					}
				}
			}
			if err := c.Close(); err != nil { // waits for the checks
				t.Fatal(err)
			}
			stats := c.AuditStats()["article"]
			if len(stats) != 4 {
				t.Fatalf("%d windows, want 4: %+v", len(stats), stats)
			}
			w1 := stats[0]
			if w1.Window != paddock.AuditWindow1s {
				t.Fatalf("first window %v, want 1s", w1.Window)
			}
			for _, s := range stats[1:] {
				if s.Checks != 0 || s.Raced != 0 {
					t.Errorf("window %v has checks %+v: every read was right after a write", s.Window, s)
				}
			}
			if w1.Failed != 0 || w1.Raced != 0 {
				t.Errorf("1s window: %+v, want no failed or raced check", w1)
			}
			nines, atLeast := w1.Nines()
			if !broken {
				// The first read after the race loads; the two others hit.
				if w1.Violations != 0 || w1.Checks < rounds {
					t.Errorf("real fence: %+v, want %d checks or more and no violation", w1, rounds)
				}
				if !atLeast || nines < 1 {
					t.Errorf("real fence: nines %v (at least %v), want at least 1", nines, atLeast)
				}
			} else {
				if w1.Violations < rounds || w1.Consistent() != 0 {
					t.Errorf("broken fence: %+v, want a violation for every hit", w1)
				}
				if atLeast || nines != 0 {
					t.Errorf("broken fence: nines %v (at least %v), want exactly 0", nines, atLeast)
				}
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			var bad uint64
			for _, e := range rec.ev {
				if e.Namespace != "article" || e.Window != paddock.AuditWindow1s {
					t.Errorf("event %+v", e)
				}
				if !e.Consistent {
					bad++
				}
			}
			if uint64(len(rec.ev)) != w1.Checks || bad != w1.Violations {
				t.Errorf("%d events (%d inconsistent), tally %+v", len(rec.ev), bad, w1)
			}
		})
	}
}

// TestAuditRaceIsNoViolation checks that a difference explained by a
// write seen during the check is counted as raced: the source changes
// while the check reads it, and the writer invalidates before the check
// settles.
func TestAuditRaceIsNoViolation(t *testing.T) {
	c, err := paddock.New(newMem(t), paddock.Audit(1e6), paddock.AuditSample(1), paddock.AuditSettle(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l := newLoader[string](t, c, "article")
	src := &source{rows: map[string]string{"k": "v1"}}
	plain := func(ctx context.Context) (string, error) { return src.read("k"), nil }
	if _, err := l.Get(ctx, "k", plain); err != nil { // loads: no check
		t.Fatal(err)
	}
	// The hit's check: the writer changes the row and invalidates while
	// the check's load runs.
	checking := make(chan struct{})
	writerDone := make(chan struct{})
	v, err := l.Get(ctx, "k", func(ctx context.Context) (string, error) {
		close(checking)
		<-writerDone
		return src.read("k"), nil
	})
	if err != nil || v != "v1" {
		t.Fatalf("hit: %q, %v", v, err)
	}
	<-checking
	src.write("k", "v2")
	if err := l.Invalidate(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	close(writerDone)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got := c.AuditStats()["article"]
	var sum paddock.AuditStats
	for _, s := range got {
		sum.Checks += s.Checks
		sum.Violations += s.Violations
		sum.Raced += s.Raced
	}
	if sum.Raced != 1 || sum.Checks != 0 {
		t.Errorf("tallies %+v, want one raced check and no verdict", got)
	}
}

// TestAuditNeverBlocksGet gives the hit a load that never returns on its
// own: the Get returns at once, and Close ends the check (the package's
// TestMain finds any goroutine left).
func TestAuditNeverBlocksGet(t *testing.T) {
	c, err := paddock.New(newMem(t), paddock.Audit(1e6), paddock.AuditSample(1))
	if err != nil {
		t.Fatal(err)
	}
	l := newLoader[string](t, c, "article")
	if _, err := l.Get(ctx, "k", func(context.Context) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	inCheck := make(chan struct{})
	for range 2 { // a store hit, then a hot one
		v, err := l.Get(ctx, "k", func(ctx context.Context) (string, error) {
			select {
			case inCheck <- struct{}{}:
			case <-ctx.Done():
			}
			<-ctx.Done()
			return "", ctx.Err()
		})
		if err != nil || v != "v" {
			t.Fatalf("hit: %q, %v", v, err)
		}
	}
	<-inCheck // a check is running the load
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAuditBudget makes many hits, all sampled, with a budget of 20 loads
// a second: the checks that start are no more than the budget allows over
// the time the hits took (one at once, then one per 50 ms).
func TestAuditBudget(t *testing.T) {
	const budget = 20
	c, err := paddock.New(newMem(t), paddock.Audit(budget), paddock.AuditSample(1), paddock.AuditSettle(0))
	if err != nil {
		t.Fatal(err)
	}
	l := newLoader[string](t, c, "article")
	load := func(context.Context) (string, error) { return "v", nil }
	if _, err := l.Get(ctx, "k", load); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 20_000 {
		l.Get(ctx, "k", load)
	}
	elapsed := time.Since(start)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	var checks uint64
	for _, s := range c.AuditStats()["article"] {
		checks += s.Checks + s.Raced + s.Failed
		if s.Violations != 0 {
			t.Errorf("violations %+v", s)
		}
	}
	allowed := uint64(elapsed.Seconds()*budget) + 1
	if checks == 0 || checks > allowed {
		t.Errorf("%d checks in %v, want between 1 and %d", checks, elapsed, allowed)
	}
}

// TestAuditOff: without Audit, AuditStats is nil and a hot hit allocates
// nothing; with it, a hit that is not checked allocates nothing either.
func TestAuditOff(t *testing.T) {
	load := func(context.Context) (string, error) { return "v", nil }
	allocs := func(opts ...paddock.Option) float64 {
		c := newCache(t, nil, opts...)
		l := newLoader[string](t, c, "art")
		l.Get(ctx, "k", load)
		l.Get(ctx, "k", load)
		return testing.AllocsPerRun(100, func() { l.Get(ctx, "k", load) })
	}
	if n := allocs(); n != 0 {
		t.Errorf("hot hit, audit off: %v allocations", n)
	}
	if n := allocs(paddock.Audit(1), paddock.AuditSample(0)); n != 0 {
		t.Errorf("hot hit, audit on, not sampled: %v allocations", n)
	}
	if s := newCache(t, nil).AuditStats(); s != nil {
		t.Errorf("AuditStats with the audit off: %v", s)
	}
}

func TestAuditOptions(t *testing.T) {
	for name, o := range map[string]paddock.Option{
		"budget 0":        paddock.Audit(0),
		"budget negative": paddock.Audit(-1),
		"sample > 1":      paddock.AuditSample(1.5),
		"sample < 0":      paddock.AuditSample(-0.1),
		"settle < 0":      paddock.AuditSettle(-time.Second),
	} {
		if _, err := paddock.New(newMem(t), o); !errors.Is(err, paddock.ErrInvalidOption) {
			t.Errorf("%s: %v, want ErrInvalidOption", name, err)
		}
	}
}

func TestAuditNines(t *testing.T) {
	for _, tc := range []struct {
		s       paddock.AuditStats
		nines   float64
		atLeast bool
	}{
		{paddock.AuditStats{}, 0, true},
		{paddock.AuditStats{Checks: 1000}, 3, true},
		{paddock.AuditStats{Checks: 1000, Violations: 1}, 3, false},
		{paddock.AuditStats{Checks: 100, Violations: 100}, 0, false},
	} {
		n, a := tc.s.Nines()
		if a != tc.atLeast || n < tc.nines-1e-9 || n > tc.nines+1e-9 {
			t.Errorf("%+v: %v, %v; want %v, %v", tc.s, n, a, tc.nines, tc.atLeast)
		}
	}
	if got := paddock.AuditWindowLabel(paddock.AuditAtRest); got != "rest" {
		t.Errorf("rest label %q", got)
	}
}

// TestNoAudit: a Loader made with NoAudit has no hit checked, and its load
// is never run again after its Get has returned.
func TestNoAudit(t *testing.T) {
	c, err := paddock.New(newMem(t), paddock.Audit(1e9), paddock.AuditSample(1), paddock.AuditSettle(0)) // checks at most 1 ns apart: every hit is checked
	if err != nil {
		t.Fatal(err)
	}
	l := newLoader[string](t, c, "page", paddock.NoAudit())
	audited := newLoader[string](t, c, "article")
	var runs, auditedRuns int
	var mu sync.Mutex
	for range 5 {
		l.Get(ctx, "k", func(context.Context) (string, error) { mu.Lock(); runs++; mu.Unlock(); return "v", nil })
		audited.Get(ctx, "k", func(context.Context) (string, error) { mu.Lock(); auditedRuns++; mu.Unlock(); return "v", nil })
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if runs != 1 || auditedRuns != 5 {
		t.Errorf("loads run: %d with NoAudit, %d audited; want 1 and 5 (one load, four checks)", runs, auditedRuns)
	}
	stats := c.AuditStats()
	if _, ok := stats["page"]; ok {
		t.Errorf("AuditStats has the NoAudit namespace: %v", stats)
	}
	if s := stats["article"][3]; s.Checks != 4 {
		t.Errorf("article at rest: %+v, want 4 checks", s)
	}
}
