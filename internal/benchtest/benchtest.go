// Package benchtest holds what the benchmarks that time implementations
// side by side in one process share (the root package's, memstore's and
// redisstore's).
package benchtest

import (
	"testing"
	"time"
)

// Interleave runs each of runs once per iteration of b.Loop, in turn, the
// order reversed every other iteration (A B, B A, A B, ...), so that the
// machine's drift and each run's effect on the CPU's caches weigh on all
// of them alike. next, if not nil, runs first in each iteration, untimed.
// It returns each run's total time, in the order of runs, and the number
// of iterations.
func Interleave(b *testing.B, next func(), runs ...func()) (spent []time.Duration, n int) {
	spent = make([]time.Duration, len(runs))
	for b.Loop() {
		if next != nil {
			next()
		}
		for r := range runs {
			if n%2 == 1 {
				r = len(runs) - 1 - r
			}
			t := time.Now()
			runs[r]()
			spent[r] += time.Since(t)
		}
		n++
	}
	return spent, n
}
