package paddock

import (
	"errors"
	"fmt"
	"time"
)

// A Recorder is told of the events of a [Cache] that carry a value or
// happen off the hit path: loads and their durations, calls to a remote
// store and their durations, fills and why they were not stored, breaker
// state changes, and the fate of invalidations. Set it with [WithRecorder];
// the exporters in the nested modules github.com/paddockcache/paddock/prometheus
// and github.com/paddockcache/paddock/otel implement it.
//
// Counts the Cache keeps anyway (hits, misses, loads, refreshes, early
// refreshes, evictions, pending invalidations: see [Cache.Stats]) are not
// reported here: an exporter reads them when it is scraped, so that a hit
// costs nothing more with a Recorder set. A hit reports nothing.
//
// Each method is called synchronously on the goroutine that did the work:
// the caller's (a Get that runs its own load, an Invalidate) or one of the
// Cache's (a shared load, a background refresh, the retrier of pending
// invalidations, a breaker probe). Many goroutines call at once: a
// Recorder must be safe for concurrent use, must not block, and must not
// call back into the Cache. Events are passed as values and name a
// namespace, never a key, so that a Recorder can use them as labels.
//
// Embed [NopRecorder] in an implementation: methods added to Recorder
// later then do nothing until it implements them.
type Recorder interface {
	// RecordLoad reports a load function that returned (or panicked).
	RecordLoad(LoadEvent)
	// RecordStoreCall reports a call to a remote store ([store.Remote]).
	// Calls to a store in this process take well under a microsecond and
	// are not timed.
	RecordStoreCall(StoreCallEvent)
	// RecordFill reports the fate of a loaded value or a [Loader.Set]:
	// stored, or why not.
	RecordFill(FillEvent)
	// RecordBreaker reports a change of the breaker's state (see
	// [Breaker]).
	RecordBreaker(BreakerEvent)
	// RecordInvalidation reports the fate of an invalidation: applied by
	// the store, kept pending, applied by a retry, a retry that failed, or
	// dropped.
	RecordInvalidation(InvalidationEvent)
	// RecordAudit reports the verdict of one consistency check: a value
	// the cache served compared with the source of truth.
	RecordAudit(AuditEvent)
}

// NopRecorder is a [Recorder] that does nothing. Embed it in a Recorder to
// implement only some methods.
type NopRecorder struct{}

// RecordLoad does nothing.
func (NopRecorder) RecordLoad(LoadEvent) {}

// RecordStoreCall does nothing.
func (NopRecorder) RecordStoreCall(StoreCallEvent) {}

// RecordFill does nothing.
func (NopRecorder) RecordFill(FillEvent) {}

// RecordBreaker does nothing.
func (NopRecorder) RecordBreaker(BreakerEvent) {}

// RecordInvalidation does nothing.
func (NopRecorder) RecordInvalidation(InvalidationEvent) {}

// RecordAudit does nothing.
func (NopRecorder) RecordAudit(AuditEvent) {}

// WithRecorder sets the Cache's [Recorder]. Default: none, which costs one
// predictable branch where an event would be reported.
func WithRecorder(r Recorder) Option {
	return cacheOption(func(c *config) error {
		if r == nil {
			return invalid("WithRecorder: nil Recorder")
		}
		c.recorder = r
		return nil
	})
}

// A LoadEvent is one load: of one key by a Get, or of many by a
// [Loader.GetMany] batch.
type LoadEvent struct {
	// Namespace is the Loader's.
	Namespace string
	// Result says how the load ended.
	Result LoadResult
	// Duration is how long the load function ran.
	Duration time.Duration
	// Keys is how many keys the load loaded: 1, or the size of a batch.
	Keys int
	// Background reports a background refresh (stale-while-revalidate or
	// early refresh), which no caller waited for.
	Background bool
}

// LoadResult says how a load ended.
type LoadResult uint8

// The results of a load.
const (
	// LoadOK: the load returned a value.
	LoadOK LoadResult = iota
	// LoadNotFound: the load returned [ErrNotFound].
	LoadNotFound
	// LoadError: the load returned another error.
	LoadError
	// LoadPanicked: the load panicked ([PanicError]).
	LoadPanicked
	// LoadTimedOut: the load ran out of its [LoadTimeout] ([ErrLoadTimeout]).
	LoadTimedOut
)

// String returns the result as a label value: "ok", "not_found",
// "error", "panic" or "timeout".
func (r LoadResult) String() string {
	switch r {
	case LoadOK:
		return "ok"
	case LoadNotFound:
		return "not_found"
	case LoadError:
		return "error"
	case LoadPanicked:
		return "panic"
	case LoadTimedOut:
		return "timeout"
	}
	return fmt.Sprintf("LoadResult(%d)", uint8(r))
}

// loadResult classifies a load's error, as loadError returned it.
func loadResult(err error) LoadResult {
	var pe *PanicError
	switch {
	case err == nil:
		return LoadOK
	case errors.Is(err, ErrNotFound):
		return LoadNotFound
	case errors.Is(err, ErrLoadTimeout):
		return LoadTimedOut
	case errors.As(err, &pe):
		return LoadPanicked
	}
	return LoadError
}

// A StoreCallEvent is one call to a remote store.
type StoreCallEvent struct {
	// Namespace is the namespace of the key the call was for; "" for an
	// invalidation, which may cross namespaces.
	Namespace string
	// Op is the call.
	Op StoreOp
	// Keys is how many keys the call was for: more than 1 for a batch
	// ([store.Batcher]).
	Keys int
	// Duration is how long the call took, as its caller saw it.
	Duration time.Duration
	// Err is the call's error, nil if the store answered. The context
	// errors ([context.DeadlineExceeded]: the store timeout) are among
	// them.
	Err error
}

// Result returns the call's outcome as a label value: "ok", or "error"
// when the store did not answer (Err is set).
func (e StoreCallEvent) Result() string {
	if e.Err != nil {
		return "error"
	}
	return "ok"
}

// StoreOp names a store call.
type StoreOp uint8

// The store calls that are reported.
const (
	// StoreLookup: [store.Store.Lookup] (or a batch's LookupMany).
	StoreLookup StoreOp = iota
	// StoreFill: [store.Store.Fill] (or a batch's FillMany).
	StoreFill
	// StoreRelease: [store.Store.Release], giving a lease back.
	StoreRelease
	// StoreInvalidate: [store.Store.Invalidate], first try or retry.
	StoreInvalidate
)

// String returns the call as a label value: "lookup", "fill", "release"
// or "invalidate".
func (op StoreOp) String() string {
	switch op {
	case StoreLookup:
		return "lookup"
	case StoreFill:
		return "fill"
	case StoreRelease:
		return "release"
	case StoreInvalidate:
		return "invalidate"
	}
	return fmt.Sprintf("StoreOp(%d)", uint8(op))
}

// A FillEvent is the fate of one value to be written: a loaded value that
// would have been stored, or a [Loader.Set]. Values kept out of the cache
// by their load ([NoStore], [Private], a failed load) are not reported.
type FillEvent struct {
	// Namespace is the Loader's.
	Namespace string
	// Result says whether the value was stored, and why not.
	Result FillResult
}

// FillResult says whether a fill stored its value, and why not.
type FillResult uint8

// The results of a fill.
const (
	// FillStored: the store accepted the fill.
	FillStored FillResult = iota
	// FillFenced: the store refused it: an invalidation of the key or of
	// one of its tags raced the load (the stale set, prevented).
	FillFenced
	// FillPending: refused in this process: an invalidation the store has
	// not acknowledged yet covers the key or one of its tags.
	FillPending
	// FillTooLarge: the value is too large for the store
	// ([store.ErrTooLarge]).
	FillTooLarge
	// FillStoreError: the store failed, was skipped by the open breaker,
	// or could not be reached for the lookup before the load.
	FillStoreError
	// FillEncodeError: the value did not encode with the Loader's codec.
	FillEncodeError

	numFillResults = iota
)

// String returns the result as a label value: "stored", "fenced",
// "pending", "too_large", "store_error" or "encode_error".
func (r FillResult) String() string {
	switch r {
	case FillStored:
		return "stored"
	case FillFenced:
		return "fenced"
	case FillPending:
		return "pending"
	case FillTooLarge:
		return "too_large"
	case FillStoreError:
		return "store_error"
	case FillEncodeError:
		return "encode_error"
	}
	return fmt.Sprintf("FillResult(%d)", uint8(r))
}

// A BreakerEvent is a change of the breaker's state.
type BreakerEvent struct {
	// State is the state the breaker entered.
	State BreakerState
}

// BreakerState is the state of the Cache's breaker (see [Breaker]).
type BreakerState uint8

// The states of the breaker.
const (
	// BreakerClosed: store calls go through.
	BreakerClosed BreakerState = iota
	// BreakerOpen: store calls are skipped; Gets load without the store.
	BreakerOpen
	// BreakerHalfOpen: the cooldown is over and one call probes the store.
	BreakerHalfOpen
)

// String returns the state as a label value: "closed", "open" or
// "half_open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half_open"
	}
	return fmt.Sprintf("BreakerState(%d)", uint8(s))
}

// BreakerState returns the state of the Cache's breaker now.
func (c *Cache) BreakerState() BreakerState { return c.breaker.state() }

// An InvalidationEvent is the fate of one invalidation (one call of
// [Cache.Invalidate], [Cache.InvalidateTags] or the soft ones, with every
// key and tag it names).
type InvalidationEvent struct {
	// Result says what became of it.
	Result InvalidationResult
	// Names is how many keys and tags it names (a key's dependency tag
	// included).
	Names int
}

// InvalidationResult says what became of an invalidation.
type InvalidationResult uint8

// The results of an invalidation.
const (
	// InvalidationApplied: the store acknowledged it when it was made.
	InvalidationApplied InvalidationResult = iota
	// InvalidationPending: the store did not acknowledge it; the Cache
	// keeps it and retries it.
	InvalidationPending
	// InvalidationRetried: a retry applied a pending invalidation.
	InvalidationRetried
	// InvalidationRetryFailed: a retry of a pending invalidation failed;
	// it stays pending.
	InvalidationRetryFailed
	// InvalidationDropped: a pending invalidation was given up, unapplied
	// (past [MaxPendingInvalidations], or refused by a closed store).
	InvalidationDropped
)

// String returns the result as a label value: "applied", "pending",
// "retried", "retry_failed" or "dropped".
func (r InvalidationResult) String() string {
	switch r {
	case InvalidationApplied:
		return "applied"
	case InvalidationPending:
		return "pending"
	case InvalidationRetried:
		return "retried"
	case InvalidationRetryFailed:
		return "retry_failed"
	case InvalidationDropped:
		return "dropped"
	}
	return fmt.Sprintf("InvalidationResult(%d)", uint8(r))
}

// An AuditEvent is the verdict of one consistency check: a value that the
// cache served, compared with what the source of truth holds.
type AuditEvent struct {
	// Namespace is the Loader's.
	Namespace string
	// Window is the time window after a write that the check falls in
	// (for example 1s, 10s or 60s): consistency is reported per window.
	Window time.Duration
	// Consistent reports that the value served matched the source.
	Consistent bool
}

// Result returns the check's verdict as a label value: "consistent" or
// "inconsistent".
func (e AuditEvent) Result() string {
	if e.Consistent {
		return "consistent"
	}
	return "inconsistent"
}

// recordFill counts a fill's fate and reports it, if a Recorder is set.
func (c *Cache) recordFill(st *counters, r FillResult) {
	if int(r) < len(st.fills) {
		st.fills[r].Add(1)
	}
	if c.rec != nil {
		c.rec.RecordFill(FillEvent{Namespace: st.ns, Result: r})
	}
}

// fillResult classifies a fill's error, as fillDone returned it.
func fillResult(err error) FillResult {
	if errors.Is(err, ErrTooLarge) {
		return FillTooLarge
	}
	return FillStoreError
}

// timed returns the instant a store call begins, if it is to be reported:
// a Recorder is set and the store is remote. Otherwise it returns the zero
// time, and reads no clock.
func (c *Cache) timed() time.Time {
	if c.rec != nil && c.remote {
		return time.Now()
	}
	return time.Time{}
}

// recordCall reports a store call that began at start (from timed), if
// start is not zero.
func (c *Cache) recordCall(start time.Time, ns string, op StoreOp, keys int, err error) {
	if !start.IsZero() {
		c.rec.RecordStoreCall(StoreCallEvent{Namespace: ns, Op: op, Keys: keys, Duration: time.Since(start), Err: err})
	}
}

// recordInvalidation reports an invalidation's fate, if a Recorder is set.
func (c *Cache) recordInvalidation(r InvalidationResult, names int) {
	if c.rec != nil {
		c.rec.RecordInvalidation(InvalidationEvent{Result: r, Names: names})
	}
}
