// Package diskstore is a [store.Store] in a SQLite database file on the
// local disk: entries, leases and versions survive a restart, and every
// process of one host that opens the file (a pre-fork server's workers,
// a cron job beside them) shares them, as the processes of a fleet share
// a Redis.
//
// # Use
//
//	s, err := diskstore.Open("/var/cache/myapp/paddock.db", diskstore.MaxBytes(1<<30))
//	if err != nil { ... }
//	defer s.Close() // the Cache does not own its store
//	c, err := paddock.New(s)
//
// Options ([MaxBytes], [MaxEntryBytes], [MaxVersions], [Clock],
// [BusyTimeout]) have the defaults written on each of them. Beside the
// [store.Store] methods, a Store counts evictions per namespace
// ([Store.Evictions], which implements [store.Stats]) and entries that
// failed to decode ([Store.Corrupt]), and implements [store.Batcher]
// ([Store.LookupMany], [Store.FillMany]) with one write transaction per
// batch.
//
// # Why SQLite
//
// Every Store method must be one atomic step: the fence check and the
// write of a fill, the sequence bump and the versions of an invalidation,
// the decision and the grant of a lease. A SQLite transaction is that
// step, and the database's write lock makes it atomic across processes,
// not only goroutines. In WAL mode readers do not wait for the writer, so
// hits (a read that changes nothing) run beside fills; a writer of
// another process that holds the lock is waited for up to [BusyTimeout].
// A killed process leaves no half-written transaction behind: SQLite
// rolls it back when the database is next opened. The driver is
// modernc.org/sqlite, SQLite translated to Go: no cgo, the same binary
// everywhere.
//
// The alternatives: files by hand (one per key, as Django's filesystem
// cache keeps them) have no atomic step over several files, so versions,
// leases and entries would need a lock file and a journal of their own,
// which is what SQLite is. bbolt (a B+tree in one file) has transactions
// but a single writer process that holds the file locked, so the workers
// of a pre-fork server could not share it. Badger and Pebble are faster
// for writes but, like bbolt, lock their directory to one process.
// mattn/go-sqlite3 is the same database behind cgo.
//
// # How the protocol is kept
//
// The tables are meta (one row: the epoch, the sequence seq, the bounds
// of the version tables and the bytes of the entries), entries (the
// envelope of [store.Entry] per key), leases (token and expiry per key),
// and the versions of keys (kver) and of tags (tver: soft and hard). The
// epoch is chosen when the file is created and kept in it: a restart
// loses nothing, so it keeps its epoch; a new file is a new epoch.
//
//   - Lookup reads meta, the entry and the lease in one statement (one
//     snapshot) and then the versions of the entry's tags; if it must
//     grant a lease or drop a dead entry, it decides again in a write
//     transaction.
//   - Fill checks the ticket against the key's and the tags' versions and
//     writes the entry in one write transaction.
//   - Invalidate takes s = ++seq and writes the versions, drops (or
//     softens) the entries and breaks the leases of its keys in one write
//     transaction. It never scans entries: an entry's tags are checked
//     when it is read.
//
// A process runs one write transaction at a time (its writers queue in
// the process rather than in SQLite's busy handler, which sleeps); writes
// of several processes take turns on the database's lock.
//
// # Durability
//
// WAL with two levels. Transactions that record an invalidation
// (Invalidate, and Fill with Set, which advances a version and may drop
// an entry) commit with synchronous=FULL: the log is fsynced before they
// return. The others (lease grants, plain fills, releases, evictions)
// commit with synchronous=NORMAL, without an fsync of their own. A
// process that is killed loses nothing that returned: the log is in the
// operating system's cache. A power loss or an OS crash may lose the
// last NORMAL transactions but never an acknowledged invalidation: the
// log is kept in order, a FULL commit syncs every transaction before it,
// and what survives is a prefix of the history that ends at or after the
// last acknowledged invalidation. A lost fill is a miss; a lost lease is
// granted again. (This holds on a disk that honours fsync.)
//
// # Size and time
//
// [MaxBytes] bounds the bytes of the entries; a fill that passes it
// evicts the entries written longest ago first (first in, first out: a
// hit writes nothing, so there is no recency to keep). Entries past their
// last window are dropped when read, and age out with the oldest
// otherwise. Leases whose holder died without a fill or release expire
// with their TTL and are swept now and then. Versions are bounded by
// [MaxVersions], with memstore's floors.
//
// The store's clock is the host's ([time.Now]), which every process on
// the host reads alike; [Clock] replaces it in tests.
//
// # What it does not do
//
// It implements neither [store.Notifier] nor [store.Waker]: another
// process's invalidations cannot be heard before they return, so a Cache
// on it keeps no hot tier, and each hit is a read of the database (about
// 20 µs). A waiter for another process's lease polls. The file must be on
// a local disk: SQLite's locks and shared memory do not work over NFS.
package diskstore
