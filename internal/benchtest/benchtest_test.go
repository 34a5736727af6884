package benchtest

import (
	"slices"
	"testing"
)

// TestInterleave checks the order of the runs (reversed every other
// iteration, after next) and the count of iterations.
func TestInterleave(t *testing.T) {
	var order []string
	var n int
	res := testing.Benchmark(func(b *testing.B) {
		order = order[:0]
		_, n = Interleave(b,
			func() { order = append(order, "next") },
			func() { order = append(order, "a") },
			func() { order = append(order, "b") },
			func() { order = append(order, "c") },
		)
	})
	if n != res.N || n < 2 {
		t.Fatalf("%d iterations reported, benchmark ran %d", n, res.N)
	}
	want := []string{"next", "a", "b", "c", "next", "c", "b", "a"}
	if !slices.Equal(order[:len(want)], want) {
		t.Fatalf("order %v, want it to begin %v", order[:len(want)], want)
	}
}
