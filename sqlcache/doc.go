// Package sqlcache ties a [paddock.Cache] to a database/sql database, so
// that writes invalidate what they change only once they commit.
//
// The guarantee of paddock needs the writer to invalidate after its write
// commits: an invalidation sent before the commit can be overtaken by a
// load that reads the old row after it, and one that is never sent leaves
// the old row cached. A [Tx] collects the keys and tags a transaction's
// writes touch and applies them after a successful commit; a rollback
// drops them.
//
//	db, err := sqlcache.New(sqlDB, cache)
//	err = db.InTx(ctx, nil, func(tx *sqlcache.Tx) error {
//		if _, err := tx.ExecContext(ctx, "UPDATE articles SET title = $1 WHERE id = $2", title, id); err != nil {
//			return err
//		}
//		tx.InvalidateTags(paddock.ModelTag("article", id))
//		return nil
//	})
//
// # Index
//
// Set up: [New], with [WithOutbox] and [Logger]. Write: [DB.InTx],
// [DB.BeginTx], [Tx.Invalidate], [Tx.InvalidateTags], [Tx.Commit],
// [Tx.Rollback]; outside a transaction [DB.Invalidate] and
// [DB.InvalidateTags]. Read, inside a load: [NotFound] (sql.ErrNoRows as
// [paddock.ErrNotFound]) and [ReadReplica]. The outbox: [Outbox],
// [DB.CreateOutbox], [DB.Relay], [Relay.Run], [Relay.RunOnce].
//
// # What a commit does
//
//  1. With an outbox, the transaction's invalidations are inserted into the
//     outbox table, in the transaction.
//  2. The transaction commits. If it fails, [Tx.Commit] returns its error.
//  3. The invalidations are applied through the Cache. If the store does not
//     acknowledge them, Commit returns an error matching [ErrCommitted] (the
//     write is in the database) and [paddock.ErrStoreUnavailable]; the
//     Cache keeps them pending and retries them, and this process serves
//     nothing they cover meanwhile.
//  4. With an outbox, the transaction's row is deleted once the store
//     acknowledged its invalidations (best effort: a [Relay] deletes what
//     is left).
//
// A process that dies between 2 and 3 loses its invalidations unless an
// outbox holds them: a [Relay], in any process, applies every row older
// than its grace period, at least once, and deletes it.
//
// # Reads
//
// A load reads the primary through the [DB] (or the *sql.DB) and may return
// NotFound(row.Scan(...)) to have a missing row cached negatively. A read
// through a [Tx] inside a load sees the transaction's own uncommitted
// writes: such a result is made private to its caller (see
// [paddock.Private]), never cached nor shared, since the transaction may
// still roll back. A load that reads a replica says so with [ReadReplica]:
// the fence needs the primary, so such an entry is kept only as long as
// the replica's lag allows.
//
// What a Tx cannot see: writes made with plain *sql.Tx or *sql.DB calls
// that nobody invalidates, and writes by other programs. Those must call
// [DB.Invalidate] or [DB.InvalidateTags] (or write the outbox table) after
// they commit, or rely on TTLs.
package sqlcache
