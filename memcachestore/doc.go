// Package memcachestore is a [store.Store] on memcached 1.6 or later,
// shared by every process that uses the same servers and prefix.
//
// # Use
//
//	s, err := memcachestore.New([]string{"10.0.0.1:11211", "10.0.0.2:11211"})
//	if err != nil { ... }
//	defer s.Close() // the Cache does not own its store
//	c, err := paddock.New(s)
//
// # The client
//
// The store speaks memcached's meta protocol (mg, ms, md, ma) through a
// small pipelined client of its own, written on net and bufio. The
// protocol's flags are what the store is built on: vivify on miss
// ("mg N<ttl>", answered W to one caller and Z to the others), CAS on
// every reply and conditional writes ("ms C<cas>", refused with EX),
// "md I" to mark an item stale and bump its CAS, and the remaining TTL
// ("mg t"). github.com/bradfitz/gomemcache, the well-kept Go client, has
// neither the meta protocol nor contexts. Of the Go clients that speak
// the meta protocol, github.com/jsp-lqk/metapipe-memcached (v0.2) exposes
// plain get and set without the vivify, CAS and stale flags, the
// gomemcache forks (bobrovde, caojen) add only multi-gets, and
// github.com/aisk/go-memcache has the flags but is young (v0.1). What the
// store needs is a pipeline of meta commands per server per call, with
// the call's context as the connection's deadline: a few hundred lines of
// net and bufio (meta.go), with no dependency to keep up.
//
// # How the protocol is kept
//
// Per key there are three items, on the server the key hashes to (by
// rendezvous hashing over the server list): the entry (the [store.Entry]
// envelope), the key's versions (the last invalidation of any kind, and
// the last hard one), and the lease. Each tag has a versions item on the
// server the tag hashes to. One item holds the sequence: its value's top
// 24 bits are an epoch drawn at random when it is created ("ma N0 J"),
// the low 40 bits count invalidations ("ma" increments it), so a flushed,
// restarted or evicted sequence starts a new epoch, and every ticket,
// entry and version carries its epoch. The epoch reported to the Cache
// also carries a hash of the server list: a change of membership is a
// loss of data.
//
//   - [Store.Lookup] reads, in one pipeline, the sequence, the entry with
//     its CAS and remaining TTL, the key's versions and its lease item;
//     the versions of an entry's tags in a second round trip. An entry is
//     a miss if its versions or its tags' versions are missing (evicted),
//     or newer (hard) than its ticket; stale if newer (soft).
//   - The lease is its own item, created by "mg <lease> N<ttl>", which
//     memcached grants (W) to exactly one request and answers Z to the
//     rest; its TTL is the lease TTL. The store remembers, per key, the
//     token it granted and the CAS of the lease item, so that Release and
//     Fill delete the item only if it is still the one granted. The
//     entry's own W/X/Z flags are not the lease: a stale item's W has no
//     expiry and names no holder, and a fresh entry due for early refresh
//     has no flag at all.
//   - [Store.Fill] checks the versions, writes the entry by CAS, and
//     reads the versions again after the write in the same pipeline
//     (see Fill for the interleaving this closes).
//   - [Store.Invalidate] takes s = ++seq, raises the versions by CAS
//     loops (memcached has no atomic "max"), then deletes the entries
//     (hard) or marks them stale with "md I" (soft), and deletes the
//     leases.
//
// Versions are written without a TTL; memcached may still evict them.
// A missing version is never read as "not invalidated": for an existing
// entry it is a miss, and a fill or an invalidation that finds it missing
// recreates it at the current sequence, soft and hard, which is above
// every ticket issued before. So a load older than an invalidation whose
// version was evicted while it ran is refused, and an entry of a tag
// hard-invalidated before the eviction is not served again. The price is
// a spurious refusal: the store cannot tell a version never written from
// one evicted, so a fill whose ticket predates a version it had to
// recreate (a new tag, on a store whose sequence moved during the load)
// is refused once, and the next load fills. A lookup that grants the lease
// of a key without versions writes them at its ticket, so that new keys
// do not pay it.
//
// # Time
//
// memcached counts TTLs in whole seconds, on a clock that ticks once a
// second: an item of TTL n lives between n-1 and n seconds. So every item
// is written a second longer than it must live, and an entry's item
// outlives its last window by up to two seconds; a lookup judges the entry
// at the later of the local clock and the server's countdown (the entry's
// last instant less the remaining TTL, which is never later than the true
// instant), so that a node whose clock is behind keeps an entry at most
// until the server drops its item. A lease lives between its TTL, rounded
// up to seconds, less one second, and that TTL: sub-second lease TTLs are
// not kept precisely. [TimeOffset] moves the store's clock for tests.
//
// # Limits
//
// Keys and tags that are longer than memcached allows, or that hold
// spaces, control or non-ASCII bytes, are replaced by their SHA-256 in
// item names. An envelope near the item size limit ([MaxItemBytes]) is
// [store.ErrTooLarge]. There is no multi-key atomicity: an invalidation
// of several keys is atomic per key only.
//
// # Batches
//
// [Store.LookupMany] and [Store.FillMany] (the [store.Batcher] that the
// Cache's GetMany uses) take for each key the steps Lookup and Fill take
// for it alone (the single calls are batches of one) and send each step
// of all keys as one pipeline per server, the servers in parallel. So a
// GetMany of n keys costs what a Get of one does: warm, one round trip
// (two if the entries have tags); cold, two for the lookups and the
// leases, and two or three for the fills and the leases' release.
package memcachestore
