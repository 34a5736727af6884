// Package localclock lets a store of this module tell the Cache that it
// reads the time from the process's own monotonic clock, as the Cache
// does: the instants it answers with (store.Lookup.Now) are then instants
// of the Cache's clock too, and the Cache uses them rather than read the
// clock again around the store call.
package localclock

import (
	"context"
	"time"

	"github.com/paddockcache/paddock/store"
)

// A Store reads its time as the Cache does: an instant of the process's
// monotonic clock (time.Now's monotonic reading), with a wall time that
// follows it.
type Store interface {
	// LocalClock reports whether the store reads the process's clock; it
	// may depend on the store's options (a store given a clock of its own
	// does not).
	LocalClock() bool
}

// An At is an instant of the process's clock that the Cache has just
// read, handed to a Filler. Only this module can make one.
type At struct{ T time.Time }

// A Filler is a Store that can fill at an instant the Cache read, rather
// than read the clock itself: the end of the load whose result the fill
// writes, a moment before. The entry's windows then count from then, as
// they would from an instant the store read a moment later, only shorter.
type Filler interface {
	FillAt(ctx context.Context, key string, f *store.Fill, at At) (accepted bool, err error)
}
