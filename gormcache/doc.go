// Package gormcache is a GORM plugin that caches reads in a paddock Loader,
// tags them by model, and invalidates them after the writes that change them
// commit.
//
//	db.Use(gormcache.New(cache, gormcache.Options{Loader: []paddock.LoaderOption{paddock.TTL(10 * time.Minute)}}))
//
//	var a Article
//	db.WithContext(ctx).Scopes(gormcache.Cached()).First(&a, 42)  // tagged "articles:42"
//	db.WithContext(ctx).Scopes(gormcache.Cached()).Where("author_id = ?", 7).Find(&list) // tagged "articles"
//	db.Model(&a).Update("title", "New")  // invalidates "articles" and "articles:42" once committed
//
// # Reads
//
// A query made with the Cached scope (Find, First, Take, Last, Count, Pluck,
// and the queries its Preload runs) goes through the plugin's Loader:
//
//  1. Its key is a hash of the SQL GORM built and of its values: identical
//     queries share one entry, and one load, per process and, on a shared
//     store, per fleet.
//  2. On a hit, the rows the database returned when the entry was loaded are
//     scanned into Statement.Dest by GORM's own Scan: Dest, RowsAffected,
//     ErrRecordNotFound and AfterFind hooks are as the database's rows would
//     make them, without a query.
//  3. On a miss, the load tags the entry, runs the query, and keeps its rows.
//     The tags are the table's name for every table the query reads (its own,
//     its joins', its subqueries'), except that when its WHERE clause
//     restricts the primary key to known values (First(&a, 42),
//     Where("id IN ?", ids), a model with its key set) its own table is
//     tagged by row instead: paddock.ModelTag(table, pk) for each key, and
//     RowsTag(table). Preload's queries are statements of their own, tagged
//     the same way.
//  4. The tags are named with paddock.Tag inside the load, so a load that
//     runs the query (a page being rendered under httpcache, an outer
//     Loader.Get) depends on them too; so does one that runs a query
//     without the Cached scope, which is not cached itself.
//
// Not cached, and run on the database: queries inside a transaction (they
// can see its uncommitted rows), raw queries (db.Raw, Row, Rows, Scan), and
// queries with SQL the plugin cannot attribute to tables (a subquery or a
// join written in a raw string: every SELECT and JOIN in the built SQL must be
// one the plugin accounted for).
//
// Caching is opt-in per query, not per model: a cached query can serve rows
// as old as its TTL after a write the plugin does not see (below), and only
// the query's author knows whether that is acceptable there.
//
// # Writes
//
// After each successful Create, Update, Save or Delete (and the statements
// GORM runs for associations), the plugin invalidates the table's tag and the
// tags of the rows written: ModelTag(table, pk) when it can name every row
// the statement could change (the keys of the created values, a WHERE clause
// that restricts the primary key), and otherwise RowsTag(table), which every
// row-tagged entry of the table carries: a bulk Where(...).Updates or Delete
// drops every cached row of the table, with no extra query and no race with
// a concurrent insert that a key read first would miss.
//
// The invalidation waits for the commit. The plugin wraps the DB's
// connection pool so that a transaction begun on it (db.Transaction,
// db.Begin, and the transaction GORM opens around each write) holds the
// invalidations of its writes until Commit, applies them once the database
// has committed, and drops them on Rollback. A write made without a
// transaction (SkipDefaultTransaction) is invalidated at once after it ran.
// So a read between the write and the commit, which still sees the old rows,
// cannot keep them in the cache past the commit: the invalidation after the
// commit drops its entry, or refuses its fill if it is still loading
// (the fence of paddock's Cache.InvalidateTags).
//
// # What the plugin cannot see
//
// It sees the statements GORM builds through the DB it is installed on.
// It does not see:
//
//   - raw SQL run with db.Exec, or through the *sql.DB (db.DB());
//   - writes by other programs, or by other DBs without the plugin;
//   - triggers, ON DELETE CASCADE and other changes the database makes itself;
//   - writes in a transaction it did not begin (db.Connection, a ConnPool set
//     by hand): those are invalidated before their commit, and logged.
//
// After such a write, invalidate by hand once it has committed:
//
//	cache.InvalidateTags(ctx, "articles", paddock.ModelTag("articles", 42))
//	cache.InvalidateTags(ctx, "articles", gormcache.RowsTag("articles")) // rows unknown
//
// or, for writes that must not lose their invalidation if the process dies
// after the commit, write them to the outbox of package sqlcache in the same
// transaction.
package gormcache
