// Package otel exports the metrics of a paddock [paddock.Cache] through
// the OpenTelemetry metric API (go.opentelemetry.io/otel/metric).
//
// An [Exporter] is a [paddock.Recorder], given to the Cache with
// [paddock.WithRecorder]: load and store call durations, fills by result,
// breaker changes and invalidation results are recorded as they happen.
// [Exporter.Watch] registers a callback that reads the counts the Cache
// keeps ([paddock.Cache.Stats]), the breaker's state and memstore's size
// when the reader collects, so that a hit costs nothing more:
//
//	exp, err := paddockotel.New(otel.GetMeterProvider())
//	c, err := paddock.New(store, paddock.WithRecorder(exp))
//	reg, err := exp.Watch(c)
//	defer reg.Unregister()
//
// The instruments are named as OpenTelemetry names them
// (paddock.requests, paddock.load.duration in seconds); a Prometheus
// exporter of OpenTelemetry turns them into the names of the
// github.com/paddockcache/paddock/prometheus module (paddock_requests_total,
// paddock_load_duration_seconds). Attributes are the namespace of a Loader
// and a small set of outcomes, never a key.
package otel

import (
	"context"
	"errors"

	"github.com/paddockcache/paddock"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ScopeName is the instrumentation scope of the Exporter's meter.
const ScopeName = "github.com/paddockcache/paddock/otel"

// An Exporter records a [paddock.Cache]'s events as OpenTelemetry
// metrics. It is safe for concurrent use.
type Exporter struct {
	paddock.NopRecorder

	meter metric.Meter

	loads, calls                 metric.Float64Histogram
	fills, changes, invs, audits metric.Int64Counter

	requests, loadsTotal, loadErrors, coalesced, refreshes, early metric.Int64ObservableCounter
	invalidations, decodeErrors, storeErrors, evictions           metric.Int64ObservableCounter
	pending, breaker, entries, bytes                              metric.Int64ObservableGauge
}

var _ paddock.Recorder = (*Exporter)(nil)

// New returns an Exporter whose instruments come from a meter of mp. Give
// it to [paddock.New] with [paddock.WithRecorder], then call
// [Exporter.Watch] with the Cache.
func New(mp metric.MeterProvider) (*Exporter, error) {
	if mp == nil {
		return nil, errors.New("paddock/otel: nil MeterProvider")
	}
	m := mp.Meter(ScopeName)
	e := &Exporter{meter: m}
	var errs []error
	hist := func(name, desc string, bounds ...float64) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(bounds...))
		errs = append(errs, err)
		return h
	}
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	observed := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	e.loads = hist("paddock.load.duration", "How long load functions ran, by result (ok, not_found, error, panic, timeout).",
		.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
	e.calls = hist("paddock.store.call.duration", "How long calls to a remote store took, by call (lookup, fill, release, invalidate) and result (ok, error).",
		.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25)
	e.fills = counter("paddock.fills", "{fill}", "Values to be written, by result: stored, or refused (fenced, pending) or failed (too_large, store_error, encode_error).")
	e.changes = counter("paddock.breaker.changes", "{change}", "Changes of the store breaker's state, by the state entered (closed, open, half_open).")
	e.invs = counter("paddock.invalidation.results", "{invalidation}", "Invalidations by fate: applied, pending, retried, retry_failed, dropped.")
	e.audits = counter("paddock.audit.checks", "{check}", "Consistency checks of served values against the source, by window after a write and result (consistent, inconsistent).")

	e.requests = observed("paddock.requests", "{request}", "Gets by result: hit (fresh), stale (served stale), miss (loaded or coalesced).")
	e.loadsTotal = observed("paddock.loads", "{load}", "Load functions run, background refreshes included.")
	e.loadErrors = observed("paddock.load.errors", "{load}", "Loads that failed (an error other than not found, or a panic).")
	e.coalesced = observed("paddock.coalesced", "{request}", "Gets that took the result of a load run for another caller in this process.")
	e.refreshes = observed("paddock.refreshes", "{refresh}", "Background refreshes started (stale-while-revalidate and early refresh).")
	e.early = observed("paddock.early_refreshes", "{refresh}", "Refreshes started while the entry was still fresh (early refresh).")
	e.invalidations = observed("paddock.invalidations", "{key}", "Keys invalidated; tag invalidations, one per tag, under namespace \"\".")
	e.decodeErrors = observed("paddock.decode.errors", "{entry}", "Entries whose bytes did not decode, treated as misses.")
	e.storeErrors = observed("paddock.store.errors", "{call}", "Store calls that failed and were worked around.")
	e.evictions = observed("paddock.evictions", "{entry}", "Entries the store dropped for space or age (memstore counts them with its CountEvictions option).")
	e.pending = gauge("paddock.invalidations.pending", "{invalidation}", "Invalidations the store has not acknowledged yet; this process serves nothing they cover.")
	e.breaker = gauge("paddock.breaker.state", "1", "The store breaker's state: 1 for the current state, 0 for the others.")
	e.entries = gauge("paddock.memstore.entries", "{entry}", "Entries an in-process store (memstore) holds.")
	e.bytes = gauge("paddock.memstore.bytes", "By", "Bytes an in-process store (memstore) has allocated for entries.")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return e, nil
}

func ns(namespace string) attribute.KeyValue { return attribute.String("namespace", namespace) }

// RecordLoad records the load's duration.
func (e *Exporter) RecordLoad(ev paddock.LoadEvent) {
	e.loads.Record(context.Background(), ev.Duration.Seconds(),
		metric.WithAttributes(ns(ev.Namespace), attribute.String("result", ev.Result.String())))
}

// RecordStoreCall records the store call's duration.
func (e *Exporter) RecordStoreCall(ev paddock.StoreCallEvent) {
	e.calls.Record(context.Background(), ev.Duration.Seconds(),
		metric.WithAttributes(ns(ev.Namespace), attribute.String("op", ev.Op.String()), attribute.String("result", ev.Result())))
}

// RecordFill counts the fill by result.
func (e *Exporter) RecordFill(ev paddock.FillEvent) {
	e.fills.Add(context.Background(), 1, metric.WithAttributes(ns(ev.Namespace), attribute.String("result", ev.Result.String())))
}

// RecordBreaker counts the breaker's change of state.
func (e *Exporter) RecordBreaker(ev paddock.BreakerEvent) {
	e.changes.Add(context.Background(), 1, metric.WithAttributes(attribute.String("state", ev.State.String())))
}

// RecordInvalidation counts the invalidation by fate.
func (e *Exporter) RecordInvalidation(ev paddock.InvalidationEvent) {
	e.invs.Add(context.Background(), 1, metric.WithAttributes(attribute.String("result", ev.Result.String())))
}

// RecordAudit counts the consistency check by window and verdict.
func (e *Exporter) RecordAudit(ev paddock.AuditEvent) {
	e.audits.Add(context.Background(), 1, metric.WithAttributes(ns(ev.Namespace),
		attribute.String("window", paddock.AuditWindowLabel(ev.Window)), attribute.String("result", ev.Result())))
}

// sizer is what memstore tells of its size.
type sizer interface {
	Len() int
	Capacity() int
}

// Watch registers a callback that reads c's counts, breaker state and
// store size whenever the meter's readers collect. Unregister the
// returned registration when the Cache is closed.
func (e *Exporter) Watch(c *paddock.Cache) (metric.Registration, error) {
	if c == nil {
		return nil, errors.New("paddock/otel: Watch: nil Cache")
	}
	return e.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		count := func(inst metric.Int64ObservableCounter, v uint64, attrs ...attribute.KeyValue) {
			o.ObserveInt64(inst, int64(v), metric.WithAttributes(attrs...))
		}
		var pending uint64
		for n, s := range c.Stats() {
			a := ns(n)
			if n == "" {
				count(e.invalidations, s.Invalidations, a)
				pending = s.InvalidationsPending
				continue
			}
			count(e.requests, s.Hits, a, attribute.String("result", "hit"))
			count(e.requests, s.StaleHits, a, attribute.String("result", "stale"))
			count(e.requests, s.Misses, a, attribute.String("result", "miss"))
			count(e.loadsTotal, s.Loads, a)
			count(e.loadErrors, s.LoadErrors, a)
			count(e.coalesced, s.Coalesced, a)
			count(e.refreshes, s.Refreshes, a)
			count(e.early, s.EarlyRefreshes, a)
			count(e.invalidations, s.Invalidations, a)
			count(e.decodeErrors, s.DecodeErrors, a)
			count(e.storeErrors, s.StoreErrors, a)
			count(e.evictions, s.Evictions, a)
		}
		o.ObserveInt64(e.pending, int64(pending))
		state := c.BreakerState()
		for _, s := range []paddock.BreakerState{paddock.BreakerClosed, paddock.BreakerOpen, paddock.BreakerHalfOpen} {
			var v int64
			if s == state {
				v = 1
			}
			o.ObserveInt64(e.breaker, v, metric.WithAttributes(attribute.String("state", s.String())))
		}
		if sz, ok := c.Store().(sizer); ok {
			o.ObserveInt64(e.entries, int64(sz.Len()))
			o.ObserveInt64(e.bytes, int64(sz.Capacity()))
		}
		return nil
	}, e.requests, e.loadsTotal, e.loadErrors, e.coalesced, e.refreshes, e.early,
		e.invalidations, e.decodeErrors, e.storeErrors, e.evictions, e.pending, e.breaker, e.entries, e.bytes)
}
