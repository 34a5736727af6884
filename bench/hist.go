package main

import (
	"fmt"
	"math"
	"math/bits"
	"sort"
	"time"
)

// hist is a log-linear latency histogram: 32 buckets per power of two
// (about 3% error), cheap enough to record every Get of a closed loop.
// A hist is not safe for concurrent use: each goroutine keeps its own and
// they are merged.
type hist struct {
	counts [64 * 32]uint64
	n      uint64
	max    time.Duration
}

const histSub = 32

func histIndex(d time.Duration) int {
	v := uint64(max(d, 1))
	e := bits.Len64(v) - 1 // v in [2^e, 2^(e+1))
	if e < 5 {
		return int(v) // exact below 32ns
	}
	sub := (v >> (e - 5)) & (histSub - 1)
	return e*histSub + int(sub)
}

// histValue returns the upper middle of bucket i.
func histValue(i int) time.Duration {
	if i < 32 {
		return time.Duration(i)
	}
	e, sub := i/histSub, i%histSub
	lo := (uint64(histSub) + uint64(sub)) << (e - 5)
	w := uint64(1) << (e - 5)
	return time.Duration(lo + w/2)
}

func (h *hist) add(d time.Duration) {
	h.counts[histIndex(d)]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q <= 1).
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(histValue(i), h.max)
		}
	}
	return h.max
}

// countAbove returns how many samples are at least d.
func (h *hist) countAbove(d time.Duration) uint64 {
	var n uint64
	for i, c := range h.counts {
		if c != 0 && histValue(i) >= d {
			n += c
		}
	}
	return n
}

// exact quantiles over a small sample.
func quantiles(ds []time.Duration, qs ...float64) []time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	out := make([]time.Duration, len(qs))
	if len(s) == 0 {
		return out
	}
	for i, q := range qs {
		k := int(math.Ceil(q*float64(len(s)))) - 1
		out[i] = s[max(k, 0)]
	}
	return out
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// fmtDur prints a duration with 3 significant digits in a fixed unit
// choice: ns below 1µs, µs below 1ms, ms otherwise.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%.3gµs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.3gms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.3gs", d.Seconds())
	}
}
