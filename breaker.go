package paddock

import (
	"sync/atomic"
	"time"
)

// A breaker keeps the Cache from waiting on a store that is down. It opens
// after threshold consecutive failures, or at once on a call that used up
// the whole store timeout (one such call is all a caller should pay for a
// dead or frozen store). While open it lets no call through for cooldown;
// then one call probes the store (half-open): a success closes it, a
// failure opens it again.
//
// The probe is the breaker's weak spot: if its outcome is never reported,
// no call is ever let through again. So the probing lookup runs on a
// context detached from its caller (see Cache.probe) and always reports,
// and a probe whose report is overdue (a store that ignores its context)
// is replaced by a new one.
type breaker struct {
	threshold int32
	cooldown  time.Duration
	timeout   time.Duration // the store timeout: how long a probe may take

	// fails counts consecutive failures; any success clears it.
	fails atomic.Int32
	// openUntil is the UnixNano instant until which no call is let
	// through; 0 when closed. Written by failure (open) and success
	// (close).
	openUntil atomic.Int64
	// probeAt is the UnixNano instant at which the current probe was let
	// through, 0 when none is out. The caller that swaps it from 0 (or
	// from an overdue probe) is the probe.
	probeAt atomic.Int64

	// rec, if not nil, is told of every change of state. The changes are
	// found by the swaps below, so each is reported once however many
	// calls race it.
	rec Recorder
}

// allow reports whether a store call may be made, and whether it is the
// half-open probe (which must report its outcome whatever its caller
// does).
func (b *breaker) allow() (ok, probe bool) {
	until := b.openUntil.Load()
	if until == 0 {
		return true, false
	}
	now := time.Now().UnixNano()
	if now < until {
		return false, false
	}
	p := b.probeAt.Load()
	if p != 0 && now-p < int64(2*b.timeout+b.cooldown) {
		return false, false
	}
	if !b.probeAt.CompareAndSwap(p, now) {
		return false, true
	}
	b.report(BreakerHalfOpen)
	return true, true
}

// open reports whether the breaker is open now (no call would be let
// through but a probe).
func (b *breaker) open() bool { return b.openUntil.Load() != 0 }

func (b *breaker) success() {
	if b.fails.Load() != 0 {
		b.fails.Store(0)
	}
	if b.openUntil.Load() != 0 && b.openUntil.Swap(0) != 0 {
		b.probeAt.Store(0)
		b.report(BreakerClosed)
	}
}

// failure counts a failed call; timedOut says it used up the store
// timeout, which opens the breaker at once.
func (b *breaker) failure(timedOut bool) {
	if b.fails.Add(1) >= b.threshold || timedOut {
		was := b.openUntil.Swap(time.Now().Add(b.cooldown).UnixNano())
		// Closed before, or a probe was out: the breaker opens (again).
		// A failure of a call let through before it opened changes
		// nothing.
		if probe := b.probeAt.Swap(0); was == 0 || probe != 0 {
			b.report(BreakerOpen)
		}
	}
}

// state returns the breaker's state now.
func (b *breaker) state() BreakerState {
	switch {
	case b.openUntil.Load() == 0:
		return BreakerClosed
	case b.probeAt.Load() != 0:
		return BreakerHalfOpen
	}
	return BreakerOpen
}

func (b *breaker) report(s BreakerState) {
	if b.rec != nil {
		b.rec.RecordBreaker(BreakerEvent{State: s})
	}
}
