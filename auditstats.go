package paddock

import (
	"math"
	"time"
)

// The audit's windows: a checked hit falls in the first window that the
// time since the last write it could have seen (an invalidation or Set of
// its key or of one of its tags made through this Cache) is under;
// AuditAtRest when no such write happened in the last minute.
const (
	AuditWindow1s  = time.Second
	AuditWindow10s = 10 * time.Second
	AuditWindow60s = time.Minute
	// AuditAtRest is the window of a check with no write of its key or
	// tags seen in the last AuditWindow60s: a sampled hit of a key at
	// rest.
	AuditAtRest time.Duration = 0
)

// auditWindows lists the windows in the order they are reported.
var auditWindows = [...]time.Duration{AuditWindow1s, AuditWindow10s, AuditWindow60s, AuditAtRest}

// windowIndex returns the index in auditWindows of a check whose last
// write was since ago (negative: none seen).
func windowIndex(since time.Duration) int {
	switch {
	case since < 0 || since >= AuditWindow60s:
		return 3
	case since < AuditWindow1s:
		return 0
	case since < AuditWindow10s:
		return 1
	}
	return 2
}

// AuditWindowLabel returns the label of a window: "1s", "10s", "1m0s"
// (as [time.Duration.String] writes them), and "rest" for [AuditAtRest].
func AuditWindowLabel(w time.Duration) string {
	if w == AuditAtRest {
		return "rest"
	}
	return w.String()
}

// AuditStats is the audit's tally of one namespace in one window (see
// [Audit] for what is checked and counted).
type AuditStats struct {
	// Window is the window: [AuditWindow1s], [AuditWindow10s],
	// [AuditWindow60s] or [AuditAtRest].
	Window time.Duration
	// Checks counts the verdicts: Consistent plus Violations.
	Checks uint64
	// Violations counts the hits that served a value the source did not
	// hold, with no write of the key or of its tags seen from the start
	// of the Get to the end of the check.
	Violations uint64
	// Raced counts the hits that differed from the source while a write
	// of the key or its tags was seen during the check: no verdict, not
	// in Checks.
	Raced uint64
	// Failed counts the checks whose load failed: no verdict, not in
	// Checks.
	Failed uint64
}

// Consistent returns the checks that found the value served equal to the
// source's.
func (s AuditStats) Consistent() uint64 { return s.Checks - s.Violations }

// Nines returns the consistency as nines: -log10(Violations/Checks), so
// 3 is 99.9%. With no violation it returns log10(Checks), the most that
// so many checks can show (lower says true: the nines are at least that),
// and 0 with no checks.
func (s AuditStats) Nines() (nines float64, lowerBound bool) {
	switch {
	case s.Checks == 0:
		return 0, true
	case s.Violations == 0:
		return math.Log10(float64(s.Checks)), true
	}
	return -math.Log10(float64(s.Violations) / float64(s.Checks)), false
}
