// Package redisstore is a [store.Store] on Redis
// (github.com/redis/go-redis/v9): every process of an application that
// shares one Redis and one [Prefix] shares the cache, with the guarantees
// of one process.
//
//   - One load per key for the fleet. Callers of one process share one
//     lookup (the Store is [store.Remote]); the processes share a lease
//     in Redis. The others wait for the holder's fill, woken by it through
//     Redis (see "Wake-ups and the feed"), or serve the stale value when
//     the entry has one; a holder that dies is replaced when its lease
//     expires, and a caller that reaches its wait bound loads for itself.
//   - A near cache for the fleet, with paddock.NearCache: every
//     invalidation and Set, from any process, reaches every process that
//     listens ([Store.Listen]).
//   - No stale fill, ever. Fills are fenced by the version protocol of
//     [store.Store], in Lua, atomic on the server.
//   - No waiting for a doomed load. An invalidation of a key, hard or
//     soft, breaks the key's lease in the same script that writes the
//     key's version: the load that held it can no longer fill, and the
//     next lookup is granted the lease at once. The tombstone a release
//     leaves, which keeps a lookup with the released token that reaches
//     Redis late from taking the lease, survives it.
//   - One background refresh per key for the fleet in the stale window.
//   - Freshness is judged by the server's clock (TIME), never by the
//     process's: clock skew between application nodes changes nothing.
//
// Create one with [New] on a *redis.Client (standalone, or a Sentinel
// failover client) or a *redis.ClusterClient, then give it to [paddock.New].
//
// # Round trips
//
// Standalone and Sentinel:
//
//   - A warm hit is one script call that returns the entry after checking
//     it against the versions of its tags.
//   - A miss is one script call that answers "miss: you hold the lease,
//     here is your ticket", "wait: the lease is held", or "here is the
//     stale value" (with the lease for one background refresh).
//   - A fill is one conditional script call; an invalidation is one script
//     call for all its keys and tags.
//
// Cluster adds calls only where a step spans slots (see below): a hit is
// one call, plus one call per other node holding some of the entry's tags
// (sent in parallel); a miss that loads is two (the lookup, then the
// sequence); a fill is one, plus one per other node holding its tags (in
// parallel, before); an invalidation is two (the sequence, then one
// pipeline to the nodes named, in parallel).
//
// [Store.LookupMany] and [Store.FillMany] (the [store.Batcher] that the
// Cache's GetMany uses) take, for each key, the steps that Lookup and Fill
// take for it alone, and make the steps of all keys together: each round
// is one pipeline, which go-redis sends to every node holding some of its
// keys, in parallel. A batch takes as many rounds as its slowest key
// would alone, whatever its size. Round trips, for one key and for a
// batch of n keys:
//
//	                          standalone, Sentinel   Cluster
//	Lookup: hit               1                      1, +1 for tags in other slots
//	Lookup: miss              1                      2 (the lookup, the sequence)
//	Fill                      1                      1, +1 for tags in other slots or a Set
//	LookupMany: n hits        1                      1 per node, in parallel, +1 as above
//	LookupMany: n misses      1                      1 per node, in parallel, then 1 (the sequence)
//	FillMany                  1                      1 per node, in parallel, +1 as above
//	Invalidate                1                      2 (the sequence, then 1 per node)
//
// So a GetMany of n keys costs one round trip warm and two cold
// (LookupMany, then FillMany of the loaded keys) on a standalone server.
// On Cluster a lookup whose read-side check finds an entry invalidated by
// a tag in another slot runs its script again and then reads the
// sequence: two more rounds, for one key or for every such key of a
// batch. A value larger than [MaxValueSize] is not sent: its key's lease
// is given back in the same pipeline. After a server lost its scripts
// (SCRIPT FLUSH, a restart) a pipeline's calls come back NOSCRIPT and are
// sent again with EVAL, in one more pipeline.
//
// A caller waiting for another process's lease makes no calls of its
// own beyond its lookups: it is woken by a message on the Store's
// subscription (below), and polls only as a fallback.
//
// # Wake-ups and the feed
//
// A Store keeps one subscription (one connection; on Cluster, to one
// node), started by the first [Store.Watch] or [Store.Listen], on two
// channels of its prefix:
//
//	<prefix>{_}:wake  a key whose lease a waiting lookup marked has been
//	                  filled, released or broken by an invalidation
//	<prefix>{_}:feed  the keys and tags of every invalidation, and the key
//	                  of every Set fill
//
// [Store.Watch] ([store.Waker]) wakes the callers waiting for a key's
// lease: a lookup that asks for the lease and finds it held marks it (the
// key "<prefix>{K}:w", which expires with it), and the script that ends
// the lease publishes the key if it finds the mark. [Store.Listen]
// ([store.Feed]) hands the feed to a Cache's near cache, and reports the
// feed up once its SUBSCRIBE is confirmed and down as soon as the
// connection fails or has been silent for [FeedTimeout] (it sends a PING
// after half of it). The Store subscribes to the feed channel only once a
// Cache listens: a process that only waits hears only wake-ups. Messages
// are runs of length-prefixed items ('k' a key, 't' a tag, 'w' a woken
// key, each with its name as the key names escape it): "k6:page:1t3:art".
//
// What it costs: no round trip. Inside the scripts, measured as Redis's
// time per script call on one key: a fill or release that no lookup
// waited for deletes a mark that is not there (about 1-2 µs more); a
// lookup that asks for the lease and finds it held sets the mark (PTTL,
// SET); the end of a lease that was waited for publishes one message,
// which every subscribed process receives; an invalidation publishes its
// change (about 4 µs more: 17.6 → 21.9 µs), as does a Set. A PING goes
// out on an idle subscription every FeedTimeout/2.
//
// Classic pub/sub rather than sharded (SPUBLISH): with sharded channels a
// message would stay on the shard that ran the script, sparing the cluster
// bus, but a subscriber would need a connection to every master and a
// channel per slot (a script may publish only to a shard channel of its own
// slot: 16384 of them, followed as slots move). Classic channels need one
// connection per process whatever the size of the cluster, and scripts
// that publish without knowing the topology. The cost is that Redis
// Cluster carries every message over its bus to every node (measured from
// the invalidation's return to a listener across three masters on
// loopback: p50 under 30 µs, p99 40 to 330 µs, with a tail of up to 44 ms
// in some runs; standalone p50 under 10 µs, p99 under 130 µs), and that a
// message a bus link loses when it drops is not resent: docs/guarantees.md
// says what that means for a near cache.
//
// # Layout and epochs
//
// Everything about one key lives under one hash tag, "{key}": the entry (a
// hash of value, ticket, windows in µs of server time, tags and the last
// load's duration), the key's version, its lease, and while a lookup waits
// for the lease, the mark that asks for a wake-up. A tag's versions live
// under "{tag}". Braces and '%' in keys and tags are escaped. The
// invalidation sequence is one key, "{_}:seq"; it never goes back, even if
// it is lost: it restarts a day ahead of the server's clock and each step
// is at least that clock.
//
// An epoch marker names the history of the versions. Every script checks
// it first: if it is missing (FLUSHALL, a restart without persistence, an
// eviction) or was written under another replication ID (a failover: the
// promoted replica has a new one, and may lack the last writes of the old
// master), a new epoch starts. Entries and tickets of another epoch are
// never trusted, so an invalidation that the old master acknowledged and
// lost cannot bring back the entry it dropped. (A master also takes a new
// replication ID when its first replica attaches: one new epoch then, a
// cache that starts cold.) The check costs the server an INFO per script;
// [SkipFailoverCheck] turns it off where failovers cannot lose writes.
//
// # Cluster
//
// Entries live in their key's slot and tag versions in their tag's slot,
// so the atomic steps of the standalone scripts are split, ordered so that
// the version protocol still holds. What it costs and why:
//
//   - One sequence for the whole cluster, in the slot of "{_}". Tickets and
//     versions of all slots are on its scale, so a ticket taken for a key
//     on one master compares with a tag version on another without any
//     clock. Its master serves one GET per load and one call per
//     invalidation (not per hit).
//   - A miss reads the sequence in a second call, after the lease was
//     granted: the extra round trip of Cluster. A lookup that serves an
//     entry without a load reports the entry's ticket (a lower bound of
//     the sequence) instead, so hits do not touch the sequence's master.
//     The Cache takes a ticket from such a lookup only to fill, where a
//     lower bound can refuse a good fill but never accept a stale one.
//   - An invalidation first advances the sequence (s), then writes s to
//     the versions of every key and tag named, one script per slot; the
//     write also drops (or marks stale) every entry of the slot's keys
//     whose ticket is below s, and breaks their leases. A fill that lands
//     between the two steps is dropped by the second. A lease granted
//     between them may go with a ticket of at least s and is broken all
//     the same: one more load, never a stale fill.
//   - A fill checks the versions of its tags in other slots before its
//     conditional write (one call per node, in parallel). An invalidation
//     of such a tag can land between the check and the write: the read-side
//     check catches it, because a hit compares the entry's ticket with the
//     current versions of its tags in other slots (one more call per node,
//     in parallel) before serving it. Tags in the key's own slot are
//     checked inside the scripts. Naming a tag like the key (or choosing
//     keys and tags that share a hash slot) keeps hits at one call.
//   - Every slot has its own epoch marker (under a hash tag chosen to hash
//     to that slot). A node that loses its data (or fails over, or a slot
//     that moves to another node) makes its slots' markers missing or
//     foreign; the first call that finds one fences every such slot: a new
//     epoch, and a floor, a sequence number taken after the loss was seen.
//     Tickets and entries of the old epoch are not trusted in the slot, and
//     a tag in a fenced slot refuses every fill, and hides every entry,
//     whose ticket is below the floor, since the versions it lost could
//     have fenced them. Fencing writes 16384 small markers (once per
//     prefix, then once per loss); the fill that saw the loss is refused.
//   - The sequence's own master losing its data is covered by the
//     sequence restarting ahead: this assumes that master's clock does not
//     go back across the loss by more than a day, the only place where a
//     clock enters the fencing.
//
// # Corrupt data
//
// Whatever is found under the store's key names (damaged fields, a
// missing field, a key of another Redis type), no call fails because of
// it, and nothing old is served because of it:
//
//   - An entry that does not parse (any field malformed or missing, the
//     negative flag set beside a value, a tag list that does not decode or
//     does not match the entry's tags) is deleted: the lookup is a miss
//     with [store.Lookup].Corrupt set, and the next fill replaces it.
//   - A lease that does not parse is deleted: nobody holds it.
//   - A key's or a tag's version that does not parse is repaired as "very
//     high", never as zero, since the invalidation it recorded is unknown:
//     standalone it becomes a new sequence number (above every ticket
//     issued, so every load and entry older than the repair is fenced, and
//     no later one); on Cluster the slot is fenced as if its node had lost
//     its data. Entries carrying the tag are then misses, and at most one
//     load per key that began before the repair is refused.
//   - An epoch marker that does not parse starts a new epoch, as a missing
//     one does; a sequence that does not parse restarts ahead, as a lost
//     one does.
//
// The checks run inside the scripts: a hit costs no extra round trip.
//
// # Client options that matter
//
// The Cache bounds every store call with its StoreTimeout, and a failing
// call costs a Get that time before it loads. go-redis's defaults retry a
// lot, which is right for a database client and wrong for a cache in front
// of one: against a refused port every call uses its whole timeout in dial
// and command retries. For a StoreTimeout of 250 ms:
//
//	redis.UniversalOptions{
//		Addrs:                 addrs,
//		ContextTimeoutEnabled: true,
//		DialTimeout:           250 * time.Millisecond,
//		DialerRetries:         1,
//		MaxRetries:            -1,
//		MinRetryBackoff:       -1,
//		MaxRetryBackoff:       -1,
//		PoolTimeout:           250 * time.Millisecond,
//		ReadTimeout:           time.Second,
//		WriteTimeout:          time.Second,
//	}
//
// Why each:
//
//   - ContextTimeoutEnabled: socket reads and writes, and waits for a
//     connection, end at the context's deadline, so a frozen Redis (stopped
//     process, full network buffers) costs a call the StoreTimeout and not
//     ReadTimeout; without it a call on a frozen server took 5 s (the
//     default ReadTimeout). [New] refuses a client without it.
//   - DialerRetries 1: the pool dials once per connection it needs. The
//     default is 5 attempts 100 ms apart (DialerRetryTimeout), which on a
//     refused port fills the whole StoreTimeout of every call.
//   - MaxRetries -1: no command retries. The default (3, with backoff up to
//     MaxRetryBackoff) runs the dial attempts again per retry. go-redis
//     checks a pooled connection before it uses it, so a restarted Redis
//     costs no failed call without retries; a call that does fail falls back
//     to a load, and the Cache's breaker takes it from there. Every script
//     is safe to run twice, so retries are allowed, but they only spend the
//     StoreTimeout that the load then lacks.
//   - MinRetryBackoff, MaxRetryBackoff -1: no sleep between retries. On
//     Cluster they also pace the client's own retries across nodes
//     (MaxRedirects, default 3, which MOVED and ASK redirects need): with
//     the defaults a call to a killed master took about 120 ms of sleep.
//   - DialTimeout: bounds a connect that is never answered (a host that is
//     gone, packets dropped), in calls without a deadline and in the pool's
//     background probe of a dead address. Keep it at or below the
//     StoreTimeout; the default is 5 s.
//   - PoolTimeout: how long a call waits for a free connection when all
//     PoolSize are busy (all stuck on a frozen server). The context's
//     deadline ends the wait sooner; this bounds calls without one. Default
//     ReadTimeout + 1 s.
//   - ReadTimeout, WriteTimeout: bound calls that have no deadline (the
//     store's own background steps, such as giving back a lease or fencing
//     Cluster slots); with ContextTimeoutEnabled an earlier deadline of the
//     context wins. Default 5 s.
//   - PoolSize: leave the default (10 connections per CPU, 5 per CPU per
//     Cluster node). While Redis is frozen each call in flight holds a
//     connection until its deadline, and after PoolSize failed dials in a
//     row the pool fails dials at once and probes the address in the
//     background, once a second, until it answers.
//
// With these options, one call with a 250 ms deadline took, measured
// against a local redis-server 7.0 (go-redis defaults with
// ContextTimeoutEnabled in brackets): a refused port, or a server killed
// under pooled connections, under 2 ms (the whole 250 ms for the first
// 30 calls or so, then about 100 ms of retry backoff, once the pool fails
// dials at once); a killed Cluster master under 1 ms (250 ms, then about
// 120 ms); a frozen server 250 ms (250 ms): nothing but the deadline tells
// a frozen server from a slow one, and it is the Cache's breaker that
// stops asking it.
//
// # Operating notes
//
//   - Redis 7.0 or later (the Cluster fence uses a script flag from 7.0).
//   - Give the client ContextTimeoutEnabled (see the client options
//     above). [New] refuses a client without it unless told
//     [AllowNoContextTimeout].
//   - Use maxmemory-policy noeviction or a volatile-* policy: entries and
//     leases expire and may be evicted; versions, markers and the sequence
//     have no TTL and must not be. (An evicted marker only starts a new
//     epoch; an evicted version could let a stale fill in.)
//   - Versions are kept without expiry: one small key per key or tag ever
//     invalidated.
//   - Values larger than [MaxValueSize] are not stored (an error wrapping
//     [paddock.ErrTooLarge]).
//   - With ACLs, the user needs PUBLISH and SUBSCRIBE on the channels
//     "<prefix>{_}:wake" and "<prefix>{_}:feed": the fill, release and
//     invalidation scripts publish on them, and fail without the right.
//   - A subscription that falls behind Redis's pub/sub output buffer limit
//     (client-output-buffer-limit pubsub) is disconnected by Redis: its
//     feed reports down and subscribes again, no message is lost unseen.
//   - A *redis.Ring is not supported: its shards have no common atomic
//     step and no common sequence.
package redisstore
