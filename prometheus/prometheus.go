// Package prometheus exports the metrics of a paddock [paddock.Cache] to
// Prometheus (github.com/prometheus/client_golang).
//
// An [Exporter] is both a [paddock.Recorder], given to the Cache with
// [paddock.WithRecorder], and a [prom.Collector], registered with a
// registry. The counts the Cache keeps ([paddock.Cache.Stats]: hits,
// misses, loads, refreshes, evictions, pending invalidations) and the
// breaker's state are read when the registry is scraped, so that a hit
// costs nothing more; the events that carry a value (load and store call
// durations, fills and why they were refused, breaker changes, the fate
// of invalidations) are counted as they happen:
//
//	exp := paddockprom.New()
//	c, err := paddock.New(store, paddock.WithRecorder(exp))
//	...
//	exp.Watch(c)
//	prometheus.MustRegister(exp)
//
// Labels are the namespace of a Loader and a small set of outcomes, never
// a key. The metrics are listed in the README's Operations section.
package prometheus

import (
	"fmt"
	"slices"
	"sync"

	"github.com/paddockcache/paddock"
	prom "github.com/prometheus/client_golang/prometheus"
)

// Default histogram buckets, in seconds.
var (
	// DefaultLoadBuckets spans loads from half a millisecond (a cached
	// query) to ten seconds (the default load timeout).
	DefaultLoadBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// DefaultStoreBuckets spans store calls from 50 µs (a Redis round
	// trip on loopback) to a quarter second (the default store timeout).
	DefaultStoreBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25}
)

// An Option configures an [Exporter].
type Option func(*config) error

type config struct {
	constLabels  prom.Labels
	loadBuckets  []float64
	storeBuckets []float64
}

// ConstLabels adds labels with fixed values to every metric: use one (for
// example cache="sessions") to export several Caches to one registry.
func ConstLabels(l prom.Labels) Option {
	return func(c *config) error { c.constLabels = l; return nil }
}

// LoadBuckets sets the buckets of paddock_load_duration_seconds, in
// seconds, increasing. Default [DefaultLoadBuckets].
func LoadBuckets(b ...float64) Option {
	return func(c *config) error {
		if err := checkBuckets(b); err != nil {
			return fmt.Errorf("LoadBuckets: %w", err)
		}
		c.loadBuckets = b
		return nil
	}
}

// StoreBuckets sets the buckets of paddock_store_call_duration_seconds,
// in seconds, increasing. Default [DefaultStoreBuckets].
func StoreBuckets(b ...float64) Option {
	return func(c *config) error {
		if err := checkBuckets(b); err != nil {
			return fmt.Errorf("StoreBuckets: %w", err)
		}
		c.storeBuckets = b
		return nil
	}
}

func checkBuckets(b []float64) error {
	if len(b) == 0 {
		return fmt.Errorf("paddock/prometheus: no buckets")
	}
	for i := 1; i < len(b); i++ {
		if !(b[i] > b[i-1]) {
			return fmt.Errorf("paddock/prometheus: buckets must increase, got %v", b)
		}
	}
	return nil
}

// An Exporter is a [paddock.Recorder] and a [prom.Collector] for one
// [paddock.Cache]. Its Record methods are called by the Cache; Collect by
// the registry. It is safe for concurrent use.
type Exporter struct {
	paddock.NopRecorder

	mu    sync.Mutex
	cache *paddock.Cache // read at scrape time; nil until Watch

	loads   *prom.HistogramVec
	calls   *prom.HistogramVec
	fills   *prom.CounterVec
	changes *prom.CounterVec
	invs    *prom.CounterVec
	audits  *prom.CounterVec

	requests, loadsTotal, loadErrors, coalesced, refreshes, early *prom.Desc
	invalidations, decodeErrors, storeErrors, evictions           *prom.Desc
	pending, breaker, entries, bytes                              *prom.Desc
}

var (
	_ paddock.Recorder = (*Exporter)(nil)
	_ prom.Collector   = (*Exporter)(nil)
)

// New returns an Exporter. Give it to [paddock.New] with
// [paddock.WithRecorder], then call [Exporter.Watch] with the Cache and
// register it. A bad option is an error.
func New(opts ...Option) (*Exporter, error) {
	cfg := config{loadBuckets: DefaultLoadBuckets, storeBuckets: DefaultStoreBuckets}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("paddock/prometheus: nil option")
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	cl := cfg.constLabels
	desc := func(name, help string, labels ...string) *prom.Desc {
		return prom.NewDesc(name, help, labels, cl)
	}
	e := &Exporter{
		loads: prom.NewHistogramVec(prom.HistogramOpts{
			Name: "paddock_load_duration_seconds", Help: "How long load functions ran, by result (ok, not_found, error, panic, timeout).",
			Buckets: slices.Clone(cfg.loadBuckets), ConstLabels: cl,
		}, []string{"namespace", "result"}),
		calls: prom.NewHistogramVec(prom.HistogramOpts{
			Name: "paddock_store_call_duration_seconds", Help: "How long calls to a remote store took, by call (lookup, fill, release, invalidate) and result (ok, error).",
			Buckets: slices.Clone(cfg.storeBuckets), ConstLabels: cl,
		}, []string{"namespace", "op", "result"}),
		fills: prom.NewCounterVec(prom.CounterOpts{
			Name: "paddock_fills_total", Help: "Values to be written, by result: stored, or refused (fenced, pending) or failed (too_large, store_error, encode_error).", ConstLabels: cl,
		}, []string{"namespace", "result"}),
		changes: prom.NewCounterVec(prom.CounterOpts{
			Name: "paddock_breaker_changes_total", Help: "Changes of the store breaker's state, by the state entered (closed, open, half_open).", ConstLabels: cl,
		}, []string{"state"}),
		invs: prom.NewCounterVec(prom.CounterOpts{
			Name: "paddock_invalidation_results_total", Help: "Invalidations by fate: applied, pending (not acknowledged, kept), retried (applied by a retry), retry_failed, dropped.", ConstLabels: cl,
		}, []string{"result"}),
		audits: prom.NewCounterVec(prom.CounterOpts{
			Name: "paddock_audit_checks_total", Help: "Consistency checks of served values against the source, by window after a write and result (consistent, inconsistent).", ConstLabels: cl,
		}, []string{"namespace", "window", "result"}),

		requests:      desc("paddock_requests_total", "Gets by result: hit (fresh), stale (served stale), miss (loaded or coalesced).", "namespace", "result"),
		loadsTotal:    desc("paddock_loads_total", "Load functions run, background refreshes included.", "namespace"),
		loadErrors:    desc("paddock_load_errors_total", "Loads that failed (an error other than not found, or a panic).", "namespace"),
		coalesced:     desc("paddock_coalesced_total", "Gets that took the result of a load run for another caller in this process.", "namespace"),
		refreshes:     desc("paddock_refreshes_total", "Background refreshes started (stale-while-revalidate and early refresh).", "namespace"),
		early:         desc("paddock_early_refreshes_total", "Refreshes started while the entry was still fresh (early refresh).", "namespace"),
		invalidations: desc("paddock_invalidations_total", "Keys invalidated; tag invalidations, one per tag, under namespace \"\".", "namespace"),
		decodeErrors:  desc("paddock_decode_errors_total", "Entries whose bytes did not decode, treated as misses.", "namespace"),
		storeErrors:   desc("paddock_store_errors_total", "Store calls that failed and were worked around.", "namespace"),
		evictions:     desc("paddock_evictions_total", "Entries the store dropped for space or age (memstore counts them with its CountEvictions option).", "namespace"),
		pending:       desc("paddock_invalidations_pending", "Invalidations the store has not acknowledged yet; this process serves nothing they cover."),
		breaker:       desc("paddock_breaker_state", "The store breaker's state: 1 for the current state, 0 for the others.", "state"),
		entries:       desc("paddock_memstore_entries", "Entries an in-process store (memstore) holds."),
		bytes:         desc("paddock_memstore_bytes", "Bytes an in-process store (memstore) has allocated for entries."),
	}
	return e, nil
}

// Watch makes the Exporter read c's counts, breaker state and store size
// when it is scraped. Call it once, with the Cache the Exporter records
// for; a later call replaces the Cache.
func (e *Exporter) Watch(c *paddock.Cache) {
	e.mu.Lock()
	e.cache = c
	e.mu.Unlock()
}

// RecordLoad observes the load's duration.
func (e *Exporter) RecordLoad(ev paddock.LoadEvent) {
	e.loads.WithLabelValues(ev.Namespace, ev.Result.String()).Observe(ev.Duration.Seconds())
}

// RecordStoreCall observes the store call's duration.
func (e *Exporter) RecordStoreCall(ev paddock.StoreCallEvent) {
	e.calls.WithLabelValues(ev.Namespace, ev.Op.String(), ev.Result()).Observe(ev.Duration.Seconds())
}

// RecordFill counts the fill by result.
func (e *Exporter) RecordFill(ev paddock.FillEvent) {
	e.fills.WithLabelValues(ev.Namespace, ev.Result.String()).Inc()
}

// RecordBreaker counts the breaker's change of state.
func (e *Exporter) RecordBreaker(ev paddock.BreakerEvent) {
	e.changes.WithLabelValues(ev.State.String()).Inc()
}

// RecordInvalidation counts the invalidation by fate.
func (e *Exporter) RecordInvalidation(ev paddock.InvalidationEvent) {
	e.invs.WithLabelValues(ev.Result.String()).Inc()
}

// RecordAudit counts the consistency check by window and verdict.
func (e *Exporter) RecordAudit(ev paddock.AuditEvent) {
	e.audits.WithLabelValues(ev.Namespace, paddock.AuditWindowLabel(ev.Window), ev.Result()).Inc()
}

// Describe sends the descriptors of every metric of the Exporter.
func (e *Exporter) Describe(ch chan<- *prom.Desc) {
	for _, c := range e.vecs() {
		c.Describe(ch)
	}
	for _, d := range []*prom.Desc{e.requests, e.loadsTotal, e.loadErrors, e.coalesced, e.refreshes, e.early,
		e.invalidations, e.decodeErrors, e.storeErrors, e.evictions, e.pending, e.breaker, e.entries, e.bytes} {
		ch <- d
	}
}

func (e *Exporter) vecs() []prom.Collector {
	return []prom.Collector{e.loads, e.calls, e.fills, e.changes, e.invs, e.audits}
}

// sizer is what memstore tells of its size.
type sizer interface {
	Len() int
	Capacity() int
}

// Collect sends the recorded metrics, and those read from the watched
// Cache now.
func (e *Exporter) Collect(ch chan<- prom.Metric) {
	for _, c := range e.vecs() {
		c.Collect(ch)
	}
	e.mu.Lock()
	c := e.cache
	e.mu.Unlock()
	if c == nil {
		return
	}
	counter := func(d *prom.Desc, v uint64, labels ...string) {
		ch <- prom.MustNewConstMetric(d, prom.CounterValue, float64(v), labels...)
	}
	var pending uint64
	for ns, s := range c.Stats() {
		if ns == "" {
			// Counts of the whole Cache: tag invalidations and the
			// durable invalidations.
			counter(e.invalidations, s.Invalidations, ns)
			pending = s.InvalidationsPending
			continue
		}
		counter(e.requests, s.Hits, ns, "hit")
		counter(e.requests, s.StaleHits, ns, "stale")
		counter(e.requests, s.Misses, ns, "miss")
		counter(e.loadsTotal, s.Loads, ns)
		counter(e.loadErrors, s.LoadErrors, ns)
		counter(e.coalesced, s.Coalesced, ns)
		counter(e.refreshes, s.Refreshes, ns)
		counter(e.early, s.EarlyRefreshes, ns)
		counter(e.invalidations, s.Invalidations, ns)
		counter(e.decodeErrors, s.DecodeErrors, ns)
		counter(e.storeErrors, s.StoreErrors, ns)
		counter(e.evictions, s.Evictions, ns)
	}
	ch <- prom.MustNewConstMetric(e.pending, prom.GaugeValue, float64(pending))
	state := c.BreakerState()
	for _, s := range []paddock.BreakerState{paddock.BreakerClosed, paddock.BreakerOpen, paddock.BreakerHalfOpen} {
		v := 0.0
		if s == state {
			v = 1
		}
		ch <- prom.MustNewConstMetric(e.breaker, prom.GaugeValue, v, s.String())
	}
	if sz, ok := c.Store().(sizer); ok {
		ch <- prom.MustNewConstMetric(e.entries, prom.GaugeValue, float64(sz.Len()))
		ch <- prom.MustNewConstMetric(e.bytes, prom.GaugeValue, float64(sz.Capacity()))
	}
}
