// Package paddock is a stampede-proof read-through cache.
//
// A [Loader] sits in front of a slow read (a database query, a rendered
// page, a remote call) and guarantees three things at once, in one process
// or across a fleet that shares a [store.Store]:
//
//  1. One load per key: however many callers miss the same key at once, the
//     load runs once per process, and once per fleet while the key's lease
//     holds.
//  2. No stale sets: once [Cache.Invalidate] or [Cache.InvalidateTags] has
//     returned, no load that began before it can put its result into the
//     cache, and no Get that begins after it takes a value from such a load.
//     This holds if the writer invalidates after its write commits and the
//     load reads the primary (a load that reads a lagging replica can read
//     old rows after the invalidation).
//  3. No waiting on expiry: inside the stale window a caller gets the
//     previous value at once while exactly one background refresh runs.
//
// # Index
//
// Set up: [New] with a store (memstore for one process, redisstore for a
// fleet), then [NewLoader] per kind of value; [Must] for start-up code.
//
// Read: [Loader.Get], [Loader.Fetch] (with [Result] metadata),
// [Loader.GetMany], [Loader.Peek]. Inside a load: [Tag], [ModelTag],
// [DependencyTag], what the load decides about its result: [SetTTL],
// [SetStale], [SetStaleIfError], [KeepAtMost], [NoStore], [Private], and
// [Refreshing] (whether any caller waits for it).
//
// Write: [Loader.Set], [Loader.Invalidate], [Cache.Invalidate],
// [Cache.InvalidateTags], and the soft forms [Cache.MarkStale] and
// [Cache.MarkStaleTags].
//
// Per-call options ([GetOption]): [TTL], [Stale], [StaleIfError], [Beta],
// [NegativeTTL], [LoadTimeout], [Tags]. Loader options: [WithCodec],
// [Version]. Cache options ([Option]): [LeaseTTL], [WaitTimeout],
// [StoreTimeout], [Breaker], [MaxPendingInvalidations], [Logger], [Rand].
//
// Observe: [Cache.Stats].
//
// # The read path
//
// [Loader.Get] does, for a key:
//
//  1. Look the key up in the store. The store answers in one step: a fresh
//     entry; a stale entry (and, to one caller, the key's lease to refresh
//     it in the background); or a miss, with the lease and a ticket (the
//     store's invalidation sequence now) to the caller that will load, and
//     "held" to the others. A fresh entry whose early-refresh instant has
//     come (drawn once per entry when it was filled, a little more than one
//     load before expiry: see [Beta]) is handed out with the lease too, to
//     one caller, who refreshes it before it expires.
//  2. A caller that must wait joins the flight of its process that is
//     loading the key, or, if the load runs in another process, polls the
//     store until the lease holder fills it (up to [WaitTimeout], after which
//     it loads for itself).
//  3. The load runs on a context detached from the callers (each caller
//     returns when its own context ends), with its own timeout. It may name
//     tags with [Tag], and read other cached values (see Nested Gets).
//  4. The fill is conditional: the store refuses it if the key or any of its
//     tags was invalidated after the load's ticket. A refused load's value is
//     still returned to the callers allowed to take it.
//  5. A caller that joined a flight takes its result only if that result
//     cannot predate an invalidation the caller has seen: the read or load
//     behind it began after the caller began, or its fill was accepted
//     after the caller began, or its ticket is not older than the caller's
//     own (and no invalidation went pending in between). Otherwise the
//     caller looks up again and obeys the same rule on what it finds.
//
// A Get that begins after an invalidation of its key returned does not
// wait for a load of the key that began before it (that load can no longer
// fill): the invalidation breaks the key's lease in the store, and detaches
// the doomed flights of its process (also those known to carry a tag it
// names), so the Get loads at once and the Gets after it share that load.
//
// The store contract that memstore, redisstore and other stores implement
// is package store.
//
// # Nested Gets
//
// A load may read other cached values: a page built from a cached list
// built from cached rows (Russian-doll caching). A Get, Fetch, GetMany or
// Peek made with a context that descends from a load's context on the same
// Cache makes the outer entry depend on what it read:
//
//   - the inner key (through its [DependencyTag]) and the inner entry's tags
//     become tags of the outer entry, however deep the nesting: an
//     [Cache.Invalidate] of the inner key, an [Cache.InvalidateTags] of one
//     of its tags (or their soft forms) invalidates the outer entry too, and
//     one that lands while the outer load runs refuses its fill;
//   - the outer entry is never fresher than its inputs: its fresh, stale and
//     stale-if-error windows end no later than theirs. Built from a value
//     served stale, it is stored already stale, to be served only inside
//     that value's stale window while it is refreshed; built from a
//     stale-if-error value, it is kept only for the outer's own
//     stale-if-error;
//   - an input that was [NoStore] or [Private] makes the outer value so too.
//
// A refresh (a value being served stale while it reloads) needs a fresh
// result: its nested Gets wait for fresh values instead of taking stale
// ones, so that one refresh of the page yields a fresh page.
//
// # Failures
//
// A store that fails or is slow ([StoreTimeout]) is worked around: Get
// loads without it, still coalesced in process, and a breaker ([Breaker])
// stops asking a dead store; its probe runs on its own context, so the
// Cache uses a healed store again within the cooldown plus one store
// timeout. An invalidation the store did not acknowledge returns an error
// wrapping [ErrStoreUnavailable] and is kept and retried in the background
// ([MaxPendingInvalidations]); until then this process serves nothing it
// covers. A load that panics gives each caller a [*PanicError] (matching
// [ErrLoadPanicked]) with the panic value and stack; nothing crashes and
// the key is not stuck. Data that does not decode is a miss, counted in
// [Stats].DecodeErrors. [Cache.Close] cancels loads in flight and waits for
// every goroutine of the Cache.
//
// # On top
//
// Package httpcache caches whole HTTP responses on a Loader (Django's
// cache_page and django-fancy-cache); package fragment caches html/template
// blocks (Django's {% cache %}). Both run their renders as loads, so what a
// render reads through a Loader with its context becomes a dependency.
package paddock
