package sqlcache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/paddockcache/paddock"
)

// NotFound returns err as a load should return it: [sql.ErrNoRows] becomes
// an error matching [paddock.ErrNotFound] (and still sql.ErrNoRows), so the
// Cache keeps the answer "no such row" for the [paddock.NegativeTTL];
// other errors, and nil, are returned unchanged:
//
//	var a Article
//	err := db.QueryRowContext(ctx, q, id).Scan(&a.ID, &a.Title)
//	return a, sqlcache.NotFound(err)
//
// The fence covers a negative result like any other: a load that found no
// row cannot fill after an invalidation of its key made by a concurrent
// insert's commit.
func NotFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) && !errors.Is(err, paddock.ErrNotFound) {
		return fmt.Errorf("%w: %w", paddock.ErrNotFound, err)
	}
	return err
}

// ReadReplica tells the load of ctx that it reads a replica whose lag is at
// most maxLag: the entry it fills is kept (fresh, stale or stale-if-error)
// at most maxLag from now (see [paddock.KeepAtMost]), and so are the
// entries built from it by nested Gets. Call it inside the load, before the
// query; outside a load it does nothing.
//
// Why: the fence refuses the fills of loads that began before an
// invalidation, but a load that begins after it can still read the old row
// from a replica that has not replayed the commit yet, and nothing in the
// Cache can tell. With ReadReplica, such an old row is kept at most maxLag
// past a read made less than maxLag after the commit: no Get that begins
// 2 × maxLag after the commit returns a row older than it, provided the
// replica's lag really stays below maxLag. A load that must see its own
// writes, or that needs the full guarantee, reads the primary.
func ReadReplica(ctx context.Context, maxLag time.Duration) {
	paddock.KeepAtMost(ctx, maxLag)
}
