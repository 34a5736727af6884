package paddock

import (
	"math"
	"testing"
	"time"
)

// TestEarlyLead pins the draw of an entry's early-refresh lead: at least
// the load's duration, beta load durations more on average, nothing with
// Beta(0), and no overflow or NaN from a Rand outside [0, 1).
func TestEarlyLead(t *testing.T) {
	const d = 100 * time.Millisecond
	fixed := func(v float64) func() float64 { return func() float64 { return v } }
	for _, tc := range []struct {
		name string
		beta float64
		d    time.Duration
		rand float64
		want time.Duration
	}{
		{"u=1: one load", 0.1, d, 0, d},
		{"-ln u = 1: 1+beta loads", 0.1, d, 1 - 1/math.E, 110 * time.Millisecond},
		{"-ln u = 1, beta 1", 1, d, 1 - 1/math.E, 200 * time.Millisecond},
		{"beta=0: off", 0, d, 0.9, 0},
		{"no load duration", 0.1, 0, 0.9, 0},
		{"negative load duration", 0.1, -time.Second, 0.9, 0},
		{"Rand = 1: u = 0", 0.1, d, 1, math.MaxInt64},
		{"Rand > 1", 0.1, d, 2, d},
		{"Rand < 0", 0.1, d, -1, d},
		{"Rand NaN", 0.1, d, math.NaN(), d},
		{"huge", 1e300, d, 0.5, math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy{beta: tc.beta}
			got := p.earlyLead(tc.d, expOf(fixed(tc.rand)))
			if diff := got - tc.want; diff < -time.Microsecond || diff > time.Microsecond {
				t.Fatalf("earlyLead(%v) with beta %v, rand %v = %v, want %v", tc.d, tc.beta, tc.rand, got, tc.want)
			}
		})
	}
}
