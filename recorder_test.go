package paddock_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/store"
)

// events is a Recorder that keeps every event, in order.
type events struct {
	paddock.NopRecorder
	mu      sync.Mutex
	loads   []paddock.LoadEvent
	calls   []paddock.StoreCallEvent
	fills   []paddock.FillEvent
	breaker []paddock.BreakerState
	invs    []paddock.InvalidationEvent
}

var _ paddock.Recorder = (*events)(nil)

func (e *events) RecordLoad(ev paddock.LoadEvent) {
	e.mu.Lock()
	e.loads = append(e.loads, ev)
	e.mu.Unlock()
}

func (e *events) RecordStoreCall(ev paddock.StoreCallEvent) {
	e.mu.Lock()
	e.calls = append(e.calls, ev)
	e.mu.Unlock()
}

func (e *events) RecordFill(ev paddock.FillEvent) {
	e.mu.Lock()
	e.fills = append(e.fills, ev)
	e.mu.Unlock()
}

func (e *events) RecordBreaker(ev paddock.BreakerEvent) {
	e.mu.Lock()
	e.breaker = append(e.breaker, ev.State)
	e.mu.Unlock()
}

func (e *events) RecordInvalidation(ev paddock.InvalidationEvent) {
	e.mu.Lock()
	e.invs = append(e.invs, ev)
	e.mu.Unlock()
}

// snapshot returns copies of what was recorded so far.
func (e *events) snapshot() events {
	e.mu.Lock()
	defer e.mu.Unlock()
	return events{
		loads: slices.Clone(e.loads), calls: slices.Clone(e.calls), fills: slices.Clone(e.fills),
		breaker: slices.Clone(e.breaker), invs: slices.Clone(e.invs),
	}
}

func (e *events) fillResults() []paddock.FillResult {
	var out []paddock.FillResult
	for _, f := range e.snapshot().fills {
		out = append(out, f.Result)
	}
	return out
}

// remoteFault is a faultStore that says it crosses a network, so that its
// calls are timed and its failures count for the breaker.
type remoteFault struct{ *faultStore }

func (remoteFault) Remote() bool { return true }

func TestWithRecorderNil(t *testing.T) {
	if _, err := paddock.New(newMem(t), paddock.WithRecorder(nil)); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Fatalf("WithRecorder(nil): %v, want ErrInvalidOption", err)
	}
}

func TestRecorderReportsLoadsByResult(t *testing.T) {
	rec := &events{}
	c := newCache(t, nil, paddock.WithRecorder(rec))
	l := newLoader[string](t, c, "art")
	ctx := context.Background()
	boom := errors.New("boom")
	loads := map[string]paddock.LoadFunc[string]{
		"ok":        func(context.Context) (string, error) { return "v", nil },
		"not_found": func(context.Context) (string, error) { return "", paddock.ErrNotFound },
		"error":     func(context.Context) (string, error) { return "", boom },
		"panic":     func(context.Context) (string, error) { panic("oops") },
		"timeout": func(ctx context.Context) (string, error) {
			<-ctx.Done()
			return "", ctx.Err()
		},
	}
	for _, name := range []string{"ok", "not_found", "error", "panic", "timeout"} {
		l.Get(ctx, name, loads[name], paddock.LoadTimeout(time.Millisecond))
	}
	l.Get(ctx, "ok", loads["ok"]) // a hit: no event
	got := rec.snapshot()
	if len(got.loads) != 5 {
		t.Fatalf("loads recorded: %+v, want 5", got.loads)
	}
	for i, name := range []string{"ok", "not_found", "error", "panic", "timeout"} {
		ev := got.loads[i]
		if ev.Result.String() != name || ev.Namespace != "art" || ev.Keys != 1 || ev.Background {
			t.Errorf("load %d: %+v (result %v), want result %s in namespace art, 1 key", i, ev, ev.Result, name)
		}
	}
	// The value and the cached absence were stored; the failures have no
	// fill. A store in this process makes no timed calls.
	if want := []paddock.FillResult{paddock.FillStored, paddock.FillStored}; !slices.Equal(rec.fillResults(), want) {
		t.Errorf("fills: %v, want %v", rec.fillResults(), want)
	}
	if len(got.calls) != 0 {
		t.Errorf("store calls on a memstore: %+v, want none", got.calls)
	}
}

func TestRecorderReportsBatchLoad(t *testing.T) {
	rec := &events{}
	c := newCache(t, nil, paddock.WithRecorder(rec))
	l := newLoader[string](t, c, "art")
	_, err := l.GetMany(context.Background(), []string{"a", "b", "c"}, func(_ context.Context, keys []string) (map[string]string, error) {
		m := make(map[string]string)
		for _, k := range keys {
			m[k] = k
		}
		return m, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := rec.snapshot()
	if len(got.loads) != 1 || got.loads[0].Keys != 3 || got.loads[0].Result != paddock.LoadOK {
		t.Fatalf("loads: %+v, want one of 3 keys", got.loads)
	}
	if want := []paddock.FillResult{paddock.FillStored, paddock.FillStored, paddock.FillStored}; !slices.Equal(rec.fillResults(), want) {
		t.Errorf("fills: %v, want %v", rec.fillResults(), want)
	}
}

func TestRecorderReportsFencedFill(t *testing.T) {
	rec := &events{}
	c := newCache(t, nil, paddock.WithRecorder(rec))
	l := newLoader[string](t, c, "art")
	ctx := context.Background()
	g := &gatedLoad[string]{started: make(chan struct{}, 1), release: make(chan struct{}), value: func(int64) (string, error) { return "old", nil }}
	done := make(chan error, 1)
	go func() {
		_, err := l.Get(ctx, "1", g.load)
		done <- err
	}()
	<-g.started
	if err := l.Invalidate(ctx, "1"); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if want := []paddock.FillResult{paddock.FillFenced}; !slices.Equal(rec.fillResults(), want) {
		t.Errorf("fills: %v, want %v", rec.fillResults(), want)
	}
	invs := rec.snapshot().invs
	// The key and its dependency tag.
	if len(invs) != 1 || invs[0].Result != paddock.InvalidationApplied || invs[0].Names != 2 {
		t.Errorf("invalidations: %+v, want one applied, of 2 names", invs)
	}
	// A Set raced by nothing is stored.
	if err := l.Set(ctx, "1", "new"); err != nil {
		t.Fatal(err)
	}
	if want := []paddock.FillResult{paddock.FillFenced, paddock.FillStored}; !slices.Equal(rec.fillResults(), want) {
		t.Errorf("fills after Set: %v, want %v", rec.fillResults(), want)
	}
}

func TestRecorderReportsTooLargeFill(t *testing.T) {
	rec := &events{}
	c := newCache(t, newMem(t, memstoreMaxEntry(64)), paddock.WithRecorder(rec))
	l := newLoader[string](t, c, "art")
	big := strings.Repeat("x", 1024)
	if _, err := l.Get(context.Background(), "1", func(context.Context) (string, error) { return big, nil }); err != nil {
		t.Fatal(err)
	}
	if want := []paddock.FillResult{paddock.FillTooLarge}; !slices.Equal(rec.fillResults(), want) {
		t.Errorf("fills: %v, want %v", rec.fillResults(), want)
	}
}

// TestRecorderReportsStoreCallsBreakerAndRetries drives a remote store
// through a failure and back: its calls are timed, the breaker opens,
// probes and closes, and the invalidation made while it was down is kept
// and retried.
func TestRecorderReportsStoreCallsBreakerAndRetries(t *testing.T) {
	rec := &events{}
	fs := &faultStore{Store: newMem(t)}
	c := newCache(t, remoteFault{fs}, paddock.WithRecorder(rec), paddock.Breaker(1, time.Millisecond))
	l := newLoader[string](t, c, "art")
	ctx := context.Background()
	load := func(context.Context) (string, error) { return "v", nil }
	if _, err := l.Get(ctx, "1", load); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Get(ctx, "1", load); err != nil { // a hit: one lookup
		t.Fatal(err)
	}
	var ops []string
	for _, ev := range rec.snapshot().calls {
		if ev.Err != nil || ev.Namespace != "art" || ev.Keys != 1 {
			t.Errorf("store call %+v, want a successful one in art, of 1 key", ev)
		}
		ops = append(ops, ev.Op.String())
	}
	// The miss's lookup and fill, the hit's lookup.
	if want := []string{"lookup", "fill", "lookup"}; !slices.Equal(ops, want) {
		t.Errorf("store calls: %v, want %v", ops, want)
	}
	if s := c.BreakerState(); s != paddock.BreakerClosed {
		t.Fatalf("breaker %v before a failure", s)
	}

	fs.setFail(errDown)
	if _, err := l.Get(ctx, "1", load); err != nil { // loads without the store
		t.Fatal(err)
	}
	if s := c.BreakerState(); s != paddock.BreakerOpen {
		t.Fatalf("breaker %v after a failed lookup with threshold 1, want open", s)
	}
	calls := rec.snapshot().calls
	if last := calls[len(calls)-1]; last.Op != paddock.StoreLookup || !errors.Is(last.Err, errDown) {
		t.Errorf("last store call %+v, want the failed lookup", last)
	}
	if err := l.Invalidate(ctx, "1"); err == nil {
		t.Fatal("Invalidate on a failing store: nil error")
	}

	fs.setFail(nil)
	// The breaker's cooldown (1 ms) and the retrier's first delay pass;
	// Gets go on until a probe has closed the breaker and the retry has
	// applied the invalidation.
	deadline := time.Now().Add(10 * time.Second)
	for c.BreakerState() != paddock.BreakerClosed || c.Stats()[""].InvalidationsPending != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("breaker %v, pending %d after 10s", c.BreakerState(), c.Stats()[""].InvalidationsPending)
		}
		l.Get(ctx, "1", load)
	}
	got := rec.snapshot()
	if want := []paddock.BreakerState{paddock.BreakerOpen, paddock.BreakerHalfOpen, paddock.BreakerClosed}; !slices.Equal(got.breaker[:min(3, len(got.breaker))], want) {
		t.Errorf("breaker changes: %v, want %v first", got.breaker, want)
	}
	var invs []paddock.InvalidationResult
	for _, ev := range got.invs {
		invs = append(invs, ev.Result)
	}
	// Once pending, the retrier may fail (the breaker knows nothing of
	// it) until the store is back.
	if len(invs) < 2 || invs[0] != paddock.InvalidationPending || invs[len(invs)-1] != paddock.InvalidationRetried {
		t.Errorf("invalidations: %v, want pending, then retried", invs)
	}
}

// TestRecorderKeepsHitsFree checks that a hit reports nothing and
// allocates no more with a Recorder set than without: nothing from the hot
// tier, and a store hit what it allocates anyway (the decoded value).
func TestRecorderKeepsHitsFree(t *testing.T) {
	rec := &events{}
	ctx := context.Background()
	load := func(context.Context) (string, error) { return "v", nil }
	allocs := func(c *paddock.Cache, opts ...paddock.LoaderOption) float64 {
		l := newLoader[string](t, c, "art", opts...)
		l.Get(ctx, "k", load)
		return testing.AllocsPerRun(100, func() { l.Get(ctx, "k", load) })
	}
	if n := allocs(newCache(t, nil, paddock.WithRecorder(rec))); n != 0 {
		t.Errorf("hot hit with a Recorder: %v allocations, want 0", n)
	}
	without := allocs(newCache(t, nil), paddock.HotSize(0))
	with := allocs(newCache(t, nil, paddock.WithRecorder(rec)), paddock.HotSize(0))
	if with != without {
		t.Errorf("store hit: %v allocations with a Recorder, %v without", with, without)
	}
	got := rec.snapshot()
	if len(got.loads) != 2 || len(got.fills) != 2 || len(got.calls) != 0 {
		t.Errorf("reported %d loads, %d fills, %d store calls; want the 2 first loads and fills only", len(got.loads), len(got.fills), len(got.calls))
	}
}

var _ store.Remote = remoteFault{}

// TestEventResultLabels: the store call's and the audit check's label
// values, which the exporters use as the result label.
func TestEventResultLabels(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{paddock.StoreCallEvent{}.Result(), "ok"},
		{paddock.StoreCallEvent{Err: errors.New("refused")}.Result(), "error"},
		{paddock.AuditEvent{Consistent: true}.Result(), "consistent"},
		{paddock.AuditEvent{}.Result(), "inconsistent"},
	} {
		if c.got != c.want {
			t.Errorf("label %q, want %q", c.got, c.want)
		}
	}
}
