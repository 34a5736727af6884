package paddock

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddockcache/paddock/store"
)

// The consistency audit measures the promise "never stale after
// invalidate" in production. It is off by default: see [Audit].

// Defaults of the audit's options.
const (
	// DefaultAuditSample is the share of hits of keys at rest that the
	// audit checks (see [AuditSample]).
	DefaultAuditSample = 0.01
	// DefaultAuditSettle is how long a check that found a difference
	// waits for a write to show up before it calls it a violation (see
	// [AuditSettle]).
	DefaultAuditSettle = time.Second
)

// maxAuditWrites bounds the writes the audit remembers; past it, those
// older than the last window are forgotten, and if that is not enough,
// all of them (checks then fall in the rest window, and a racing write is
// still seen through the store: see auditor.verdict).
const maxAuditWrites = 1 << 14

// Audit turns on the consistency audit, which re-reads the source of truth
// in the background for a sample of hits and compares it with what the
// cache served, and spends at most budget loads per second doing it.
//
// What is checked: a [Loader.Get] or [Loader.Fetch] served a fresh hit
// (StatusHit, from the store or the hot tier) of a key. Every such hit of
// a key or tag that this Cache invalidated or Set in the last minute is
// checked, and a share of the other hits ([AuditSample]), as long as the
// budget allows: checks start at least 1/budget apart, however many hits
// ask, and those the budget refuses are not made (a Get never waits for
// one). A check runs, on a goroutine of the Cache, the load function that
// the sampled Get was given, on a context detached from the Get's with the
// Loader's load timeout, and compares its result, passed through the
// Loader's codec, with the value served (reflect.DeepEqual; a cached
// "not found" matches a load that returns [ErrNotFound]).
//
// What is counted, per namespace and per window (the time from the last
// write of the key or of one of its tags, seen by this Cache, to the start
// of the Get: under 1 s, 10 s, 60 s, or none in the last minute, "rest"):
//
//   - consistent: the source's value equals the value served.
//   - violation: it differs, and no write of the key or of its tags was
//     seen from the start of the Get until [AuditSettle] after the re-read
//     ended: neither an invalidation or Set through this Cache, nor a
//     change of the key's entry in the store (another process's
//     invalidation, a refresh, an expiry). The store still holds the
//     entry the value came from, and the source holds something else.
//   - raced: it differs, and such a write was seen. A write that lands
//     while the check reads the source makes the difference expected, so
//     no verdict is given; raced checks are not in the nines.
//   - failed: the re-read returned an error (other than ErrNotFound),
//     panicked, or the store could not be asked. No verdict.
//
// A correct cache, over a source whose every write is followed by an
// invalidation (within AuditSettle of the write), scores no violation.
// The nines of a window are -log10(violations/checks) (see
// [AuditStats.Nines]), reported through [Recorder.RecordAudit] (one event
// per verdict), [Cache.AuditStats] and the admin page
// (github.com/paddockcache/paddock/admin).
//
// The audit never changes what a Get returns and never blocks one: the
// hit is returned first, the check runs on its own. Its re-reads are not
// counted as loads in [Cache.Stats]. Its cost on the hit path: a random
// draw, a look-up of the key and its tags among the recent writes, and,
// for a hit that is checked, a goroutine. A load function that is not a
// pure read of the source (one that counts its calls, or returns the time)
// reads as a violation, and one that writes to its caller's state (an
// http.ResponseWriter) must not be run again once its Get has returned:
// leave such a Loader out with [NoAudit] (httpcache's page Loader is left
// out for that reason). Gets made by a check's load are served as any
// Get, and counted in [Cache.Stats], but not checked in turn.
func Audit(budget float64) Option {
	return cacheOption(func(c *config) error {
		if !(budget > 0) {
			return invalid("Audit: the budget must be a positive number of loads per second, got %v", budget)
		}
		c.audit.budget = budget
		return nil
	})
}

// AuditSample sets the share of the hits of keys at rest (no write seen in
// the last minute) that the audit checks, between 0 and 1; hits of keys
// written in the last minute are all checked, within the budget. Default:
// [DefaultAuditSample]. It does nothing without [Audit].
func AuditSample(share float64) Option {
	return cacheOption(func(c *config) error {
		if !(share >= 0 && share <= 1) {
			return invalid("AuditSample: the share must be between 0 and 1, got %v", share)
		}
		c.audit.sample, c.audit.sampleSet = share, true
		return nil
	})
}

// AuditSettle sets how long a check that found the source different from
// the value served waits before it looks for a write of the key (see
// [Audit]): a writer that changes the source and invalidates the key
// within this delay is not counted against the cache. Default:
// [DefaultAuditSettle]. It does nothing without [Audit].
func AuditSettle(d time.Duration) Option {
	return cacheOption(func(c *config) error {
		if d < 0 {
			return invalid("AuditSettle: negative delay %v", d)
		}
		c.audit.settle, c.audit.settleSet = d, true
		return nil
	})
}

// auditConfig holds the options of the audit; budget 0 means off.
type auditConfig struct {
	budget               float64
	sample               float64
	settle               time.Duration
	sampleSet, settleSet bool
}

// auditor is a Cache's audit.
type auditor struct {
	c        *Cache
	sample   float64
	settle   time.Duration
	interval int64 // nanoseconds between two checks' starts: 1/budget
	maxOut   int32 // checks in flight at most

	// next is the UnixNano instant before which no check may start; the
	// caller that moves it on is the one that starts.
	next atomic.Int64
	out  atomic.Int32 // checks in flight
	// loads counts the checks' loads, for tests of the budget.
	loads atomic.Uint64

	// wmu guards writes: full key or tag -> UnixNano of its last write
	// through this Cache. nwrites mirrors len(writes), so that a hit need
	// not take the lock while there is none.
	wmu     sync.RWMutex
	writes  map[string]int64
	nwrites atomic.Int32

	// mu guards tallies, by namespace.
	mu      sync.Mutex
	tallies map[string]*auditTally
}

// auditTally counts a namespace's verdicts, per window (auditWindows).
type auditTally struct {
	w [len(auditWindows)]struct {
		checks, violations, raced, failed atomic.Uint64
	}
}

func newAuditor(c *Cache, cfg auditConfig) *auditor {
	a := &auditor{c: c, sample: DefaultAuditSample, settle: DefaultAuditSettle,
		writes: make(map[string]int64), tallies: make(map[string]*auditTally)}
	if cfg.sampleSet {
		a.sample = cfg.sample
	}
	if cfg.settleSet {
		a.settle = cfg.settle
	}
	a.interval = int64(float64(time.Second) / cfg.budget)
	a.maxOut = int32(min(16, max(1, cfg.budget)))
	return a
}

// tally returns the tally of namespace ns, creating it.
func (a *auditor) tally(ns string) *auditTally {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tallies[ns]
	if !ok {
		t = new(auditTally)
		a.tallies[ns] = t
	}
	return t
}

// wrote notes a write of keys and tags at now.
func (a *auditor) wrote(keys, tags []string) {
	now := time.Now().UnixNano()
	a.wmu.Lock()
	defer a.wmu.Unlock()
	if len(a.writes)+len(keys)+len(tags) > maxAuditWrites {
		for n, at := range a.writes {
			if now-at >= int64(AuditWindow60s) {
				delete(a.writes, n)
			}
		}
		if len(a.writes)+len(keys)+len(tags) > maxAuditWrites {
			clear(a.writes)
		}
	}
	for _, k := range keys {
		a.writes[k] = now
	}
	for _, t := range tags {
		a.writes[t] = now
	}
	a.nwrites.Store(int32(len(a.writes)))
}

// lastWrite returns the UnixNano instant of the last write of the full
// key prefix+key or of one of tags, 0 if none is remembered.
func (a *auditor) lastWrite(prefix, key string, tags []string) int64 {
	if a.nwrites.Load() == 0 {
		return 0
	}
	a.wmu.RLock()
	defer a.wmu.RUnlock()
	last := a.writes[prefix+key]
	for _, t := range tags {
		last = max(last, a.writes[t])
	}
	return last
}

// take reports whether a check may start now: the hit is sampled (always
// when its key was written in the last minute: recent), and the budget
// allows it. It reads the clock only for a sampled hit.
func (a *auditor) take(recent bool) bool {
	if !recent && (a.sample == 0 || rand.Float64() >= a.sample) {
		return false
	}
	if a.out.Load() >= a.maxOut {
		return false
	}
	now := time.Now().UnixNano()
	n := a.next.Load()
	if now < n || !a.next.CompareAndSwap(n, now+a.interval) {
		return false
	}
	if a.out.Add(1) > a.maxOut {
		a.out.Add(-1)
		return false
	}
	return true
}

// auditKey marks the context of a check's load: the hits of the Gets it
// makes are not checked in turn.
type auditKey struct{}

// A served hit, as a check needs it: the value (or cached absence), the
// entry it came from, and when the Get began.
type auditHit[T any] struct {
	full   string
	val    T
	err    error
	ticket store.Ticket
	tags   []string
	began  time.Time
}

// auditHit considers a hit of key (in the Loader), served val and err
// from the entry of ticket and tags to a Get that began at began, for a
// check: it starts one if the sample and the budget allow. It never
// blocks, and allocates only for a check it starts. A zero began is now
// (a hot hit), read only if needed.
func (l *Loader[T]) auditHit(ctx context.Context, key string, val T, err error, ticket store.Ticket, tags []string, began time.Time, load LoadFunc[T]) {
	a := l.c.audit
	last := a.lastWrite(l.prefix, key, tags)
	if began.IsZero() && last != 0 {
		began = time.Now()
	}
	recent := last != 0 && began.UnixNano()-last < int64(AuditWindow60s)
	if !a.take(recent) {
		return
	}
	if began.IsZero() {
		began = time.Now()
	}
	if ctx.Value(auditKey{}) != nil {
		a.out.Add(-1) // a Get made by a check's load
		return
	}
	since := time.Duration(-1)
	if last != 0 {
		since = max(0, time.Duration(began.UnixNano()-last))
	}
	l.startCheck(auditHit[T]{full: l.prefix + key, val: val, err: err, ticket: ticket, tags: tags, began: began}, load, windowIndex(since))
}

// startCheck runs the check of h on a goroutine of the Cache.
func (l *Loader[T]) startCheck(h auditHit[T], load LoadFunc[T], w int) {
	a := l.c.audit
	if !l.c.spawn(func() {
		defer a.out.Add(-1)
		l.check(&h, load, w)
	}) {
		a.out.Add(-1)
	}
}

// check re-reads the source for hit h and counts the verdict in window w.
func (l *Loader[T]) check(h *auditHit[T], load LoadFunc[T], w int) {
	a, c := l.c.audit, l.c
	t := &l.audit.w[w]
	ctx, cancel := context.WithTimeout(context.WithValue(c.closing, auditKey{}, true), l.policy.loadTimeout)
	defer cancel()
	a.loads.Add(1)
	src, err := auditLoad(ctx, load)
	if err != nil && c.closing.Err() != nil {
		return // cut short by Close: no verdict
	}
	same, ok := l.same(h, src, err)
	switch {
	case !ok:
		t.failed.Add(1)
		return
	case same:
		t.checks.Add(1)
		l.recordAudit(w, true)
		return
	}
	verdict, ok := l.verdict(ctx, h)
	switch {
	case !ok:
		t.failed.Add(1)
	case verdict == auditRaced:
		t.raced.Add(1)
	case verdict == auditViolation:
		t.checks.Add(1)
		t.violations.Add(1)
		l.recordAudit(w, false)
	}
}

func (l *Loader[T]) recordAudit(w int, consistent bool) {
	if l.c.rec != nil {
		l.c.rec.RecordAudit(AuditEvent{Namespace: l.ns, Window: auditWindows[w], Consistent: consistent})
	}
}

// auditLoad runs load, turning a panic into an error.
func auditLoad[T any](ctx context.Context, load LoadFunc[T]) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.New("paddock: audit: the load panicked")
		}
	}()
	return load(ctx)
}

// same compares the source's answer (src, err) with the hit h; ok is false
// when the source gave no answer to compare.
func (l *Loader[T]) same(h *auditHit[T], src T, err error) (same, ok bool) {
	negative := errors.Is(h.err, ErrNotFound)
	switch {
	case errors.Is(err, ErrNotFound):
		return negative, true
	case err != nil:
		return false, false
	case negative:
		return false, true
	}
	b, err := l.vc.encode(src)
	if err != nil {
		return false, false
	}
	norm, err := l.vc.decode(b)
	if err != nil {
		return false, false
	}
	return reflect.DeepEqual(norm, h.val), true
}

const (
	auditViolation = iota
	auditRaced
)

// verdict decides a check whose source differed from hit h: it waits
// AuditSettle (for a writer that invalidates just after it writes), then
// looks for a write of the key or its tags since the Get began, here and
// in the store. ok is false if the store could not be asked.
func (l *Loader[T]) verdict(ctx context.Context, h *auditHit[T]) (v int, ok bool) {
	a, c := l.c.audit, l.c
	if a.settle > 0 {
		tm := time.NewTimer(a.settle)
		select {
		case <-tm.C:
		case <-c.closing.Done():
			tm.Stop()
			return 0, false
		}
	}
	if last := a.lastWrite("", h.full, h.tags); last >= h.began.UnixNano() {
		return auditRaced, true
	}
	sctx, cancel := c.storeContext(context.WithoutCancel(ctx))
	defer cancel()
	lk, err := c.store.Lookup(sctx, h.full, store.LookupRequest{})
	if err != nil {
		return 0, false
	}
	e := lk.Entry
	if lk.State != store.StateFresh || e == nil || e.Ticket != h.ticket {
		return auditRaced, true // dropped, refreshed, expired or replaced
	}
	// The same fill, unless a second one of the same ticket replaced it:
	// compare the value too.
	if e.Negative != errors.Is(h.err, ErrNotFound) {
		return auditRaced, true
	}
	if !e.Negative {
		v, err := l.vc.decode(e.Value)
		if err != nil || !reflect.DeepEqual(v, h.val) {
			return auditRaced, true
		}
	}
	return auditViolation, true
}

// AuditStats returns the audit's tallies by namespace, each with one
// AuditStats per window in the order 1s, 10s, 60s, rest. It returns nil
// when the audit is off (see [Audit]).
func (c *Cache) AuditStats() map[string][]AuditStats {
	a := c.audit
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string][]AuditStats, len(a.tallies))
	for ns, t := range a.tallies {
		s := make([]AuditStats, len(auditWindows))
		for i := range auditWindows {
			w := &t.w[i]
			s[i] = AuditStats{Window: auditWindows[i], Checks: w.checks.Load(), Violations: w.violations.Load(),
				Raced: w.raced.Load(), Failed: w.failed.Load()}
		}
		out[ns] = s
	}
	return out
}
