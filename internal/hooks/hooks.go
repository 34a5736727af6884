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
	// RetryTakesAny makes a caller's retry take any flight's result, as if
	// every flight found on a retry had begun after the caller (not true of
	// a background refresh started from an older lookup).
	RetryTakesAny atomic.Bool
	// NoLease makes lookups ask for no lease: every process loads a missing
	// key for itself.
	NoLease atomic.Bool
	// HardAsSoft turns hard invalidations into soft ones: invalidated
	// entries stay servable as stale.
	HardAsSoft atomic.Bool
	// IgnoreLoadTags drops the tags a load names with paddock.Tag.
	IgnoreLoadTags atomic.Bool
	// DropFailedInvalidations makes the Cache forget an invalidation the
	// store did not acknowledge, instead of keeping it pending and retrying
	// it.
	DropFailedInvalidations atomic.Bool
	// SetKeepsOld makes a refused Set leave the key's older entry in place.
	SetKeepsOld atomic.Bool
	// FillTagGap makes memstore's Fill release the locks of its tags
	// between the fence check and the write, and memcachestore's Fill
	// skip the versions' second read, after its write, that closes the
	// same gap there.
	FillTagGap atomic.Bool
	// FillFirstTagOnly makes redisstore's fill check only the first of
	// the fill's tags.
	FillFirstTagOnly atomic.Bool
	// NoClusterPreFill makes redisstore on Cluster skip the fill's
	// pre-check of tags kept in other slots.
	NoClusterPreFill atomic.Bool
	// NoDeps makes a Get made inside a load carry nothing to the outer
	// load: the outer entry does not depend on the inner key or its tags.
	NoDeps atomic.Bool
	// WaitDoomed makes an invalidation leave the flights and leases of the
	// keys it names alone: a Get that begins after it waits for the doomed
	// load, as the lease holder, and then loads again.
	WaitDoomed atomic.Bool
	// LeaseOutlivesInvalidation makes the stores' Invalidate leave the
	// leases of the keys it names in place (they break them otherwise).
	LeaseOutlivesInvalidation atomic.Bool
	// PageIgnoresVary makes httpcache serve a page found under a request's
	// key without checking that the request agrees with it on the headers
	// it varies on.
	PageIgnoresVary atomic.Bool
	// PageSharesPrivate makes httpcache treat a response that must not be
	// shared (Set-Cookie, Cache-Control private) as one that is only not
	// stored: the requests coalesced with it get it too.
	PageSharesPrivate atomic.Bool
	// HotIgnoresInvalidation makes invalidations leave the Loaders' hot
	// tiers alone: a decoded copy stays servable until its window ends.
	HotIgnoresInvalidation atomic.Bool
	// FeedDropsChanges makes redisstore's feed drop every other change it
	// receives, without reporting itself down: a subscription that loses
	// messages and does not notice.
	FeedDropsChanges atomic.Bool
	// KeptScopeWrites lets a load's context, kept past the load's end,
	// write to the scope of whichever load reuses its state: the
	// generation check of a scope's writers is off.
	KeptScopeWrites atomic.Bool
)

// All lists every switch, by name.
var All = map[string]*atomic.Bool{
	"NoFence":                   &NoFence,
	"JoinOldFlights":            &JoinOldFlights,
	"RetryTakesAny":             &RetryTakesAny,
	"NoLease":                   &NoLease,
	"HardAsSoft":                &HardAsSoft,
	"IgnoreLoadTags":            &IgnoreLoadTags,
	"DropFailedInvalidations":   &DropFailedInvalidations,
	"SetKeepsOld":               &SetKeepsOld,
	"FillTagGap":                &FillTagGap,
	"FillFirstTagOnly":          &FillFirstTagOnly,
	"NoClusterPreFill":          &NoClusterPreFill,
	"NoDeps":                    &NoDeps,
	"WaitDoomed":                &WaitDoomed,
	"LeaseOutlivesInvalidation": &LeaseOutlivesInvalidation,
	"PageIgnoresVary":           &PageIgnoresVary,
	"PageSharesPrivate":         &PageSharesPrivate,
	"HotIgnoresInvalidation":    &HotIgnoresInvalidation,
	"FeedDropsChanges":          &FeedDropsChanges,
	"KeptScopeWrites":           &KeptScopeWrites,
}

// Reset turns every switch off.
func Reset() {
	FillGap.Store(nil)
	for _, b := range All {
		b.Store(false)
	}
}

// FillGap, when set, is called by memstore's Fill inside the gap that
// FillTagGap opens, with no lock held (memstore releases the key's stripe
// as well around the call, so the callback may make any store call): a
// property test runs the invalidation that races the fill there. It is
// never called while FillTagGap is off. memcachestore's Fill, whose gap
// between its check and its write is always there, calls it there
// whenever it is set, so that a test can show the second read catching
// an invalidation in the gap.
var FillGap atomic.Pointer[func()]
