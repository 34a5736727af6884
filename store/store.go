// Package store is the contract between a paddock Cache and the stores it
// runs on, as database/sql/driver is for database/sql: the [Store]
// interface, the [Entry] a store keeps and its byte layout, and the
// requests and answers that cross it. Programs that use paddock need not
// import it; stores (memstore, redisstore, and any written elsewhere)
// need only it. The conformance suite in storetest checks that a Store
// keeps the contract.
package store

import (
	"context"
	"time"
)

// A Store keeps entries, leases and the version numbers that fence fills.
// Every operation that must be atomic is one method call: a store never
// relies on the Cache to lock around it.
//
// # The version protocol
//
// The store keeps a monotonic invalidation sequence seq (per epoch).
// [Store.Invalidate] does, atomically for each key and tag it names:
// s = ++seq; for each key, version(key) = s and the entry is dropped (hard)
// or marked stale (soft); for each tag, version(tag) = s.
//
// [Store.Lookup] returns a [Ticket]: the sequence at the moment of the
// lookup. A caller that is granted the lease loads with that ticket t0 and
// [Store.Fill] refuses the write if version(key) > t0 or version(tag) > t0
// for any tag of the fill. An entry remembers its ticket and tags, and a
// lookup treats it as missing if any of its tags was hard-invalidated after
// its ticket (and as stale if only soft-invalidated).
//
// Tickets and tag versions of one epoch are on one scale: a fill of any key
// compares its ticket with the versions of tags that other keys share, so a
// store spread over several nodes (Redis Cluster) still needs one sequence.
// A larger Seq in the same Epoch is a later point in the history.
//
// # Time
//
// The store owns the clock that freshness is judged by: Fill takes
// durations and the store turns them into instants with its own clock, and
// Lookup judges freshness and reports that clock's reading. This keeps
// decisions on a shared store (Redis) free of clock skew between nodes.
type Store interface {
	// Lookup reads key and decides, in one atomic step, the caller's role:
	// serve the entry, serve it and refresh it, load it, or wait for the
	// lease holder. It takes the lease only when req.Lease is non-zero. The
	// returned Entry, its Value included, belongs to the caller.
	Lookup(ctx context.Context, key string, req LookupRequest) (Lookup, error)

	// Fill writes f under key unless an invalidation newer than f.Ticket
	// touched key or any of f.Tags (or the epoch changed), and releases the
	// lease f.Lease if it still holds it. It reports whether the write was
	// accepted. A refused fill is not an error. The store does not keep f or
	// f.Value after Fill returns.
	Fill(ctx context.Context, key string, f *Fill) (accepted bool, err error)

	// Release gives up the lease token on key without writing, so that
	// another caller may load at once. Releasing a lease that is no longer
	// held is not an error. A lookup with token that reaches the store
	// after Release (a request delayed past its caller's deadline) must not
	// be granted the lease: a store whose requests can arrive late keeps a
	// released token refused for a while.
	Release(ctx context.Context, key string, lease uint64) error

	// Invalidate applies inv atomically per key and per tag (see the
	// version protocol above). Once it returns, no Fill with an older ticket
	// for those keys or tags is accepted. It also breaks the lease of every
	// key it names, hard or soft: the load that holds it began before the
	// invalidation and can no longer fill, so the next lookup that asks for
	// the lease is granted it at once instead of waiting for a doomed load.
	// (A tag names no lease: loads of a tag's entries keep theirs.)
	Invalidate(ctx context.Context, inv Invalidation) error

	// Close releases the store's resources. The store is unusable after.
	Close() error
}

// A Ticket marks a point in a store's invalidation history.
type Ticket struct {
	// Epoch names the store's version history. A store that loses its
	// versions (a flushed or restarted Redis) starts a new epoch, and
	// tickets and entries of another epoch are never trusted.
	Epoch uint64
	// Seq is the invalidation sequence at the time the ticket was taken.
	Seq uint64
}

// AtLeast reports whether t is in the same epoch as u and not older.
func (t Ticket) AtLeast(u Ticket) bool { return t.Epoch == u.Epoch && t.Seq >= u.Seq }

// LookupRequest says what a caller of [Store.Lookup] wants beside the entry.
type LookupRequest struct {
	// Lease is a non-zero token that identifies the caller. When the entry
	// must be loaded or refreshed and no one holds the key's lease, the
	// store grants it to this token for LeaseTTL. Zero means: read only.
	Lease uint64
	// LeaseTTL is how long a granted lease lasts unless released.
	LeaseTTL time.Duration
	// Early asks for early refresh: a fresh entry that is due for it by
	// the store's clock ([Entry.DueEarly]: its RefreshAt has come) is
	// treated like a stale one, and the lease is granted as for a refresh.
	// The instant belongs to the entry, fixed when it was filled (see
	// [Fill].Early), so every caller in every process agrees on it, and
	// one lease refreshes the entry however many lookups come after it.
	// False: a fresh entry is never due early for this caller.
	Early bool
	// Refresh makes a fresh entry due for refresh: the caller will not
	// serve it (an invalidation of it is pending in the caller's process)
	// and asks for the lease as for a miss.
	Refresh bool
}

// State is the verdict of a [Store.Lookup] on an entry.
type State uint8

const (
	// StateMiss: no servable entry. Entry may still be set, inside its
	// error window, to be served only if the load fails (stale-if-error).
	StateMiss State = iota
	// StateFresh: the entry may be served as it is.
	StateFresh
	// StateStale: the entry is past FreshUntil but inside its stale window
	// (or soft-invalidated); it may be served while one caller refreshes it.
	StateStale
)

// String returns "miss", "fresh" or "stale".
func (s State) String() string {
	switch s {
	case StateFresh:
		return "fresh"
	case StateStale:
		return "stale"
	default:
		return "miss"
	}
}

// Lookup is the answer of [Store.Lookup].
type Lookup struct {
	// Entry is the stored entry, or nil. See [State] for when it may be
	// served.
	Entry *Entry
	// State is the store's verdict on Entry at Now.
	State State
	// Lease reports that the caller was granted the key's lease: it must
	// load and Fill (or Release) with Ticket. A fresh entry comes with a
	// lease only when it was due for early refresh or the request asked
	// for a refresh.
	Lease bool
	// Held reports that another caller holds the key's lease: the value is
	// being loaded elsewhere.
	Held bool
	// Ticket is the store's ticket at the lookup. With Lease it is the
	// ticket the load must fill with. When the lookup serves the entry
	// (StateFresh or StateStale) without granting the lease, a store may
	// report a lower bound instead (never a later ticket): redisstore on
	// Cluster reports the entry's own ticket so that hits need not read the
	// sequence. Epochs may differ between keys (one per Cluster slot); Seq
	// is on one scale for all keys of a store.
	Ticket Ticket
	// Now is the store clock's reading at the lookup.
	Now time.Time
	// Corrupt reports that the store found data of key that did not parse
	// (damaged bytes, fields missing, a value of another type, in the entry
	// or in the key's lease or versions, or its tags' versions) and dropped
	// or repaired it: the lookup is then a miss, which the Cache counts in
	// its statistics (DecodeErrors). A problem with one key is never a
	// store error.
	Corrupt bool
}

// Fill is a conditional write given to [Store.Fill].
type Fill struct {
	// Value is the encoded value; nil for a negative entry.
	Value []byte
	// Negative marks a cached "not found".
	Negative bool
	// Tags are the entry's tags: a later invalidation of any of them
	// invalidates the entry.
	Tags []string
	// Ticket is the ticket the load took before it began reading.
	Ticket Ticket
	// Lease is the token to release, or zero.
	Lease uint64
	// TTL is how long the entry is fresh, from the store's now.
	TTL time.Duration
	// Stale is how long after TTL the entry may be served stale while it
	// is refreshed.
	Stale time.Duration
	// StaleIfError is how long after TTL the entry may be served when its
	// refresh fails.
	StaleIfError time.Duration
	// LoadDuration is how long the load took. The store keeps it in the
	// entry; it decides nothing.
	LoadDuration time.Duration
	// Early is the entry's early-refresh lead: from FreshUntil - Early on,
	// by the store's clock, the entry is due for early refresh (see
	// [LookupRequest].Early). The filler draws it once for the entry; a
	// Cache makes it a little more than LoadDuration, so that a refresh
	// that starts then normally ends before the entry's TTL. Zero or
	// negative: the entry is never due early. A lead of TTL or more makes
	// it due as soon as it is written.
	Early time.Duration
	// Set makes the fill a versioned write: if accepted, the store also
	// advances the key's version (s = ++seq, version(key) = s) and stores
	// the entry with ticket s, so that no load that began earlier can
	// overwrite it. If the fill is refused, the store also drops the key's
	// entry unless it was written by a load that began after Ticket (its
	// load ticket is newer, in the same Epoch); a store that cannot tell
	// drops it: a Set follows a write to the source of truth, so an entry
	// that may predate it holds the value it replaced. If it is accepted but
	// cannot be stored, the store drops the entry and advances the key's
	// version as an invalidation would.
	Set bool
}

// Invalidation names what [Store.Invalidate] drops.
type Invalidation struct {
	// Keys are full store keys.
	Keys []string
	// Tags are tag names; every entry that carries one is invalidated.
	Tags []string
	// Soft marks the entries stale instead of dropping them: they may still
	// be served, until their stale window ends (the end of their original
	// TTL plus the Stale window), while one refresh runs. Fills of older
	// loads are refused either way.
	Soft bool
}

// Stats is optionally implemented by stores that count evictions (entries
// dropped for space or age) per namespace, the part of a key before its
// first ':'. The Cache's Stats report them.
type Stats interface {
	Evictions() map[string]uint64
}

// A Notifier is optionally implemented by stores that can tell each of
// their users, synchronously, of every change that replaces or drops
// entries out of turn: an Invalidate, and a Set fill. A Cache keeps a typed
// hot tier in front of the store only if it can hear of every such change,
// whichever Cache made it, before the call that made it returns.
type Notifier interface {
	// Subscribe calls f with the keys and tags of every Invalidate, and
	// with the key of every Set fill (accepted or not), after the store has
	// applied it and before the call returns. f must be quick and must not
	// call the store. The returned cancel stops the calls.
	Subscribe(f func(keys, tags []string)) (cancel func())
}

// Remote is optionally implemented by stores whose calls cross a network.
// For them the Cache lets concurrent callers of one key in a process share
// one Lookup, so that a stampede asks the store once.
type Remote interface {
	Remote() bool
}

// A Batcher is optionally implemented by stores that can look up or fill
// many keys in one call: one round trip on a network store (one per node
// holding the keys on Redis Cluster, made in parallel). The Cache uses it
// for GetMany. Each key's lookup and fill keeps the contract of
// [Store.Lookup] and [Store.Fill], atomic per key; the batch as a whole is
// not one atomic step.
type Batcher interface {
	// LookupMany does Lookup(ctx, keys[i], reqs[i]) for each i, with
	// distinct keys. It returns one Lookup per key, and either nil errs or
	// one error per key (nil where that key's lookup succeeded); a failure
	// of the whole call is that error for every key.
	LookupMany(ctx context.Context, keys []string, reqs []LookupRequest) (lks []Lookup, errs []error)

	// FillMany does Fill(ctx, keys[i], fills[i]) for each i, with distinct
	// keys, and reports each fill's acceptance and error as LookupMany
	// does.
	FillMany(ctx context.Context, keys []string, fills []*Fill) (accepted []bool, errs []error)
}

// A Waker is optionally implemented by stores that can tell a caller
// waiting for another caller's lease (a Lookup that reported Held) that
// the key's lease may have been given up: the holder filled the key or
// released its lease. The Cache then looks the key up again at once,
// instead of at its next poll. Polling stays: a wake-up is a hint, and a
// lost one costs only the time to the next poll.
type Waker interface {
	// Watch returns a channel that is closed once a Fill or Release of key
	// may have ended a lease of it, after Watch was called (and possibly
	// spuriously), and stop, which the caller calls when it no longer
	// waits. A caller watches before the Lookup that may report Held, so
	// that a fill between the two is not missed.
	Watch(key string) (wake <-chan struct{}, stop func())
}

// A Handoff is optionally implemented by a [Waker] whose wake-ups can
// carry the key's new state: the entry that the fill which ended the lease
// wrote, so that a woken caller need not look the key up again.
type Handoff interface {
	Waker
	// WatchFill is Watch with the wake-up's answer: once wake is closed,
	// handed returns what a Lookup of key asking for no lease would have
	// answered at one instant of the store's history (the atomic step
	// of the fill that woke the caller, say), with Ticket the store's
	// exact sequence at that instant, not a lower bound; ok is false when
	// the wake-up carried none (a release, an invalidation, a refused
	// fill, a lost or spurious wake-up, an entry no longer fresh by the
	// store's clock). The instant may come before a Lookup the caller
	// made since Watch (a wake-up may travel slower than a lookup's
	// reply): a caller takes the answer in place of its last Lookup, one
	// that reported a miss (whose Ticket is exact), only if the answer's
	// Ticket is AtLeast that Lookup's, which proves that no invalidation
	// came between the two. The Entry belongs to the caller. handed may
	// be called any number of times, from any goroutine, and answers
	// nothing before wake is closed.
	WatchFill(key string) (wake <-chan struct{}, handed func() (Lookup, bool), stop func())
}

// A Feed is optionally implemented by shared stores that publish every
// change that replaces or drops entries out of turn (an Invalidate, a Set
// fill), made by any process, to every process that listens, as a channel
// on Redis does. A change reaches a listener after the call that made it
// returned, with a delay, and may be lost while the listener's connection
// is down; the feed says when that may have happened. A Cache keeps a near
// cache (a hot tier) in front of a remote store only if it has a Feed (see
// paddock.NearCache).
type Feed interface {
	// Listen calls changed with the keys and tags of every such change as
	// it arrives, and up(false) when changes may be missed from then on
	// (the subscription was lost, or it is not yet confirmed), up(true)
	// once every change made from then on will be delivered. Listen calls
	// up(false) before it returns, and up(true) when its subscription is
	// confirmed. Calls to changed and up come from one goroutine at a time;
	// they must be quick and must not call the store. cancel stops the
	// calls.
	Listen(changed func(keys, tags []string), up func(bool)) (cancel func())
}
