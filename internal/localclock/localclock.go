// Package localclock lets a store of this module tell the Cache that it
// reads the time from the process's own monotonic clock, as the Cache
// does: the instants it answers with (store.Lookup.Now) are then instants
// of the Cache's clock too, and the Cache uses them rather than read the
// clock again around the store call.
package localclock

// A Store reads its time as the Cache does: an instant of the process's
// monotonic clock (time.Now's monotonic reading), with a wall time that
// follows it.
type Store interface {
	// LocalClock reports whether the store reads the process's clock; it
	// may depend on the store's options (a store given a clock of its own
	// does not).
	LocalClock() bool
}
