package proptest

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestBubbleClock: Offset is the bubble's time at the last Tick, and a
// Tick that comes late (an older reading) does not move it back.
func TestBubbleClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewBubbleClock()
		if got := c.Offset(); got != 0 {
			t.Fatalf("Offset before a Tick: %v, want 0", got)
		}
		time.Sleep(3 * time.Second) // the bubble's clock: no real wait
		if got := c.Offset(); got != 0 {
			t.Fatalf("Offset without a Tick: %v, want 0", got)
		}
		c.Tick()
		if got := c.Offset(); got != 3*time.Second {
			t.Fatalf("Offset after a Tick at 3s: %v", got)
		}
		c.elapsed.Store(int64(5 * time.Second)) // a later reading, published first
		c.Tick()                                // this one reads 3s
		if got := c.Offset(); got != 5*time.Second {
			t.Fatalf("Offset went back to %v after an older Tick, want 5s", got)
		}
	})
}
