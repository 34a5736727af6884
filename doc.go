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
// Set up: [New] with a [store.Store] (memstore for one process, redisstore for a
// fleet), then [NewLoader] per kind of value.
//
// Read: [Loader.Get], [Loader.Fetch] (with [Result] metadata),
// [Loader.GetMany], [Loader.Peek]. Inside a load: [Tag], [ModelTag].
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
//     "held" to the others. A fresh entry near expiry is handed out with the
//     lease early, with a probability that grows as expiry nears (XFetch).
//  2. A caller that must wait joins the flight of its process that is
//     loading the key, or, if the load runs in another process, polls the
//     store until the lease holder fills it (up to [WaitTimeout], after which
//     it loads for itself).
//  3. The load runs on a context detached from the callers (each caller
//     returns when its own context ends), with its own timeout. It may name
//     tags with [Tag].
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
package paddock
