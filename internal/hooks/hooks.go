// Package hooks holds switches that turn off one of paddock's safety
// mechanisms at a time. They exist for the property tests in proptest,
// which switch each one off and check that the matching invariant is then
// found broken: a property test that cannot fail proves nothing.
//
// Production code never sets them; each costs one atomic load where it is
// read.
package hooks

import "sync/atomic"

var (
	// NoFence makes loads fill with a ticket taken just before the fill,
	// so no invalidation during the load can refuse it.
	NoFence atomic.Bool
	// JoinOldFlights makes a caller take any flight's result, however old
	// the load behind it.
	JoinOldFlights atomic.Bool
	// NoLease makes lookups ask for no lease: every process loads a missing
	// key for itself.
	NoLease atomic.Bool
	// HardAsSoft turns hard invalidations into soft ones: invalidated
	// entries stay servable as stale.
	HardAsSoft atomic.Bool
	// IgnoreLoadTags drops the tags a load names with paddock.Tag.
	IgnoreLoadTags atomic.Bool
)

// Reset turns every switch off.
func Reset() {
	for _, b := range []*atomic.Bool{&NoFence, &JoinOldFlights, &NoLease, &HardAsSoft, &IgnoreLoadTags} {
		b.Store(false)
	}
}
