package sqltest

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/sqlcache"
	"github.com/paddockcache/paddock/store"
)

// A commit invalidates what its transaction named, by key or by tag, and
// the next Get shows the new row.
func TestCommitInvalidates(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		for _, by := range []string{"key", "tag"} {
			t.Run("by="+by, func(t *testing.T) {
				e := newEnv(t, b, nil)
				e.exec("INSERT INTO articles (id, title) VALUES (1, 'old')")
				e.want(1, "old", "before")
				err := e.db.InTx(t.Context(), nil, func(tx *sqlcache.Tx) error {
					if _, err := tx.ExecContext(t.Context(), b.q("UPDATE articles SET title = ? WHERE id = ?"), "new", 1); err != nil {
						return err
					}
					if by == "key" {
						tx.Invalidate(e.key(1))
					} else {
						tx.InvalidateTags(tag(1))
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				e.want(1, "new", "after the commit")
				if n := e.loads.Load(); n != 2 {
					t.Fatalf("%d loads, want 2", n)
				}
			})
		}
	})
}

// A rollback drops the invalidations: nothing was written, and the cached
// row stays cached. InTx rolls back when its function fails or panics.
func TestRollbackDrops(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.exec("INSERT INTO articles (id, title) VALUES (1, 'old')")
		e.want(1, "old", "before")
		update := func(tx *sqlcache.Tx) {
			if _, err := tx.ExecContext(t.Context(), b.q("UPDATE articles SET title = ? WHERE id = ?"), "new", 1); err != nil {
				t.Fatal(err)
			}
			tx.InvalidateTags(tag(1))
		}

		tx, err := e.db.BeginTx(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		update(tx)
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); !errors.Is(err, sql.ErrTxDone) {
			t.Fatalf("Commit after Rollback: %v, want sql.ErrTxDone", err)
		}

		if err := e.db.InTx(t.Context(), nil, func(tx *sqlcache.Tx) error { update(tx); return errBoom }); err != errBoom {
			t.Fatalf("InTx returned %v, want its function's error", err)
		}

		func() {
			defer func() {
				if r := recover(); r != errBoom {
					t.Fatalf("InTx's panic: %v, want the function's", r)
				}
			}()
			_ = e.db.InTx(t.Context(), nil, func(tx *sqlcache.Tx) error { update(tx); panic(errBoom) })
		}()

		e.want(1, "old", "after three rollbacks")
		if n := e.loads.Load(); n != 1 {
			t.Fatalf("%d loads, want 1: a rollback invalidated", n)
		}
	})
}

// Outside a transaction, DB.Invalidate and DB.InvalidateTags apply at once.
func TestInvalidateOutsideTx(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.exec("INSERT INTO articles (id, title) VALUES (1, 'one'), (2, 'two')")
		e.want(1, "one", "before")
		e.want(2, "two", "before")
		e.exec("UPDATE articles SET title = title || '!'")
		if err := e.db.Invalidate(t.Context(), e.key(1)); err != nil {
			t.Fatal(err)
		}
		if err := e.db.InvalidateTags(t.Context(), tag(2)); err != nil {
			t.Fatal(err)
		}
		e.want(1, "one!", "after Invalidate")
		e.want(2, "two!", "after InvalidateTags")
	})
}

// A load that reads through the transaction sees its uncommitted write; its
// result is not cached, so after a rollback the next Get reads the row as
// it is. Through the plain *sql.Tx (the subtest "raw"), the uncommitted
// title would be cached and served after the rollback.
func TestReadInTxNotCached(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		for _, raw := range []bool{false, true} {
			name := "through=Tx"
			if raw {
				name = "through=sql.Tx"
			}
			t.Run(name, func(t *testing.T) {
				e := newEnv(t, b, nil)
				e.exec("INSERT INTO articles (id, title) VALUES (1, 'old')")
				tx, err := e.db.BeginTx(t.Context(), nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.ExecContext(t.Context(), b.q("UPDATE articles SET title = ? WHERE id = ?"), "draft", 1); err != nil {
					t.Fatal(err)
				}
				tx.InvalidateTags(tag(1))
				var read paddock.LoadFunc[string]
				if raw {
					read = e.read(tx.Tx, 1)
				} else {
					read = e.read(tx, 1)
				}
				r, err := e.articles.Fetch(t.Context(), "1", read)
				if err != nil || r.Value != "draft" {
					t.Fatalf("read in the transaction: %+v, %v; want its own write", r, err)
				}
				if err := tx.Rollback(); err != nil {
					t.Fatal(err)
				}
				got, err := e.get(1)
				switch {
				case err != nil:
					t.Fatal(err)
				case raw && got != "draft":
					t.Fatalf("through *sql.Tx: %q after the rollback; the uncommitted row was expected to stay cached", got)
				case !raw && (got != "old" || r.Stored):
					t.Fatalf("after the rollback: %q (the read in the transaction stored: %v); want %q, not the rolled-back write", got, r.Stored, "old")
				}
			})
		}
	})
}

// cacheops#478: a load finds no row and is about to cache that; a
// concurrent insert commits and invalidates the key; the negative result
// must not be cached. With the fence switched off (hooks.NoFence) it is,
// which shows the test can fail.
func TestNegativeResultFenced(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		for _, fence := range []bool{true, false} {
			name := "fence=on"
			if !fence {
				name = "fence=off"
			}
			t.Run(name, func(t *testing.T) {
				if !fence {
					hooks.NoFence.Store(true)
					t.Cleanup(func() { hooks.NoFence.Store(false) })
				}
				e := newEnv(t, b, nil)
				empty, resume := make(chan struct{}), make(chan struct{})
				done := make(chan error, 1)
				go func() {
					_, err := e.articles.Get(context.Background(), "1", func(ctx context.Context) (string, error) {
						title, err := e.read(e.db, 1)(ctx)
						close(empty) // found no row: about to return ErrNotFound
						<-resume
						return title, err
					})
					done <- err
				}()
				<-empty
				err := e.db.InTx(t.Context(), nil, func(tx *sqlcache.Tx) error {
					if _, err := tx.ExecContext(t.Context(), b.q("INSERT INTO articles (id, title) VALUES (?, ?)"), 1, "created"); err != nil {
						return err
					}
					tx.Invalidate(e.key(1))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				close(resume)
				if err := <-done; !errors.Is(err, paddock.ErrNotFound) {
					t.Fatalf("the racing load: %v, want ErrNotFound", err)
				}
				got, err := e.get(1)
				if fence && (err != nil || got != "created") {
					t.Fatalf("after the insert committed: %q, %v; want the new row", got, err)
				}
				if !fence && !errors.Is(err, paddock.ErrNotFound) {
					t.Fatalf("without the fence: %q, %v; the negative result was expected to be served", got, err)
				}
			})
		}
	})
}

// gorm#7367's sequence: a write in an explicit transaction, a read (through
// the cache, from the primary) before the commit, then the commit: the next
// read shows the write. The read before the commit caches the old row; the
// invalidation after the commit drops it.
func TestReadBeforeCommit(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.exec("INSERT INTO articles (id, title) VALUES (1, 'old')")
		tx, err := e.db.BeginTx(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(t.Context(), b.q("UPDATE articles SET title = ? WHERE id = ?"), "new", 1); err != nil {
			t.Fatal(err)
		}
		tx.InvalidateTags(tag(1))
		e.want(1, "old", "read before the commit") // not committed yet: others see the old row
		if r, _, _ := e.articles.Peek(t.Context(), "1"); r.Value != "old" {
			t.Fatalf("the read before the commit was not cached (%q): the test shows nothing", r.Value)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		e.want(1, "new", "read after the commit")
	})
}

// NotFound makes a missing row ErrNotFound, cached negatively: a second Get
// does not load. An insert that invalidates the key ends it.
func TestNotFoundCached(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		for range 2 {
			if _, err := e.get(5); !errors.Is(err, paddock.ErrNotFound) {
				t.Fatalf("missing row: %v, want ErrNotFound", err)
			}
		}
		if n := e.loads.Load(); n != 1 {
			t.Fatalf("%d loads, want 1: the missing row was not cached", n)
		}
		err := e.db.InTx(t.Context(), nil, func(tx *sqlcache.Tx) error {
			_, err := tx.ExecContext(t.Context(), b.q("INSERT INTO articles (id, title) VALUES (?, ?)"), 5, "five")
			tx.Invalidate(e.key(5))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		e.want(5, "five", "after the insert")
	})
}

// A load that reads a replica marks it with ReadReplica: it may read the
// old row after the invalidation (the replica has not replayed the
// commit), and its entry is kept at most maxLag. A load from the primary,
// for comparison, keeps the Get's TTL.
func TestReadReplicaBound(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		driver, dsn := b.open(t)
		replica := openSQL(t, driver, dsn)
		for _, db := range []*sql.DB{e.sql, replica} {
			if _, err := db.Exec("CREATE TABLE IF NOT EXISTS articles (id INTEGER PRIMARY KEY, title TEXT NOT NULL)"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec("INSERT INTO articles (id, title) VALUES (1, 'old')"); err != nil {
				t.Fatal(err)
			}
		}
		err := e.db.InTx(t.Context(), nil, func(tx *sqlcache.Tx) error {
			_, err := tx.ExecContext(t.Context(), "UPDATE articles SET title = 'new'")
			tx.InvalidateTags(tag(1))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// The replica lags: it still has the old row.
		const maxLag = 2 * time.Second
		fromReplica := func(ctx context.Context) (string, error) {
			sqlcache.ReadReplica(ctx, maxLag)
			return e.read(replica, 1)(ctx)
		}
		r, err := e.articles.Fetch(t.Context(), "1", fromReplica, paddock.TTL(time.Hour), paddock.Stale(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if r.Value != "old" || !r.Stored || r.TTL <= 0 || r.TTL > maxLag {
			t.Fatalf("replica read: %q stored %v for %v; want the old row kept at most %v", r.Value, r.Stored, r.TTL, maxLag)
		}
		if err := e.db.Invalidate(t.Context(), e.key(1)); err != nil {
			t.Fatal(err)
		}
		r, err = e.articles.Fetch(t.Context(), "1", e.read(e.db, 1), paddock.TTL(time.Hour))
		if err != nil || r.Value != "new" || r.TTL != time.Hour {
			t.Fatalf("primary read: %q for %v, %v; want the new row for the Get's TTL", r.Value, r.TTL, err)
		}
	})
}

// A key without a namespace makes Commit roll back: the Cache would refuse
// it only after the write had committed.
func TestCommitBadName(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.exec("INSERT INTO articles (id, title) VALUES (1, 'old')")
		for _, bad := range []func(*sqlcache.Tx){
			func(tx *sqlcache.Tx) { tx.Invalidate("no-namespace") },
			func(tx *sqlcache.Tx) { tx.InvalidateTags("") },
		} {
			err := e.db.InTx(t.Context(), nil, func(tx *sqlcache.Tx) error {
				_, err := tx.ExecContext(t.Context(), "UPDATE articles SET title = 'new'")
				bad(tx)
				return err
			})
			if !errors.Is(err, paddock.ErrInvalidOption) {
				t.Fatalf("Commit: %v, want ErrInvalidOption", err)
			}
		}
		e.want(1, "old", "after the refused commits")
	})
}

// failingStore acknowledges no invalidation, as a store that is down.
type failingStore struct{ store.Store }

func (failingStore) Invalidate(context.Context, store.Invalidation) error { return errBoom }

// A commit whose invalidations the store does not acknowledge returns an
// error that tells the commit happened; the Cache keeps them pending (this
// process does not serve the old row), and the outbox row stays for the
// relays.
func TestCommitStoreDown(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		mem := newCountingStore(t)
		e := newEnv(t, b, failingStore{mem}).withOutbox()
		e.exec("INSERT INTO articles (id, title) VALUES (1, 'old')")
		e.want(1, "old", "before")
		err := e.db.InTx(t.Context(), nil, func(tx *sqlcache.Tx) error {
			_, err := tx.ExecContext(t.Context(), "UPDATE articles SET title = 'new'")
			tx.InvalidateTags(tag(1))
			return err
		})
		if !errors.Is(err, sqlcache.ErrCommitted) || !errors.Is(err, paddock.ErrStoreUnavailable) {
			t.Fatalf("Commit: %v, want ErrCommitted and ErrStoreUnavailable", err)
		}
		var title string
		if err := e.sql.QueryRow("SELECT title FROM articles WHERE id = 1").Scan(&title); err != nil || title != "new" {
			t.Fatalf("row: %q, %v; want the committed write", title, err)
		}
		e.want(1, "new", "in the process whose invalidation is pending")
		if n := e.outboxRows(); n != 1 {
			t.Fatalf("%d outbox rows, want 1 kept for the relays", n)
		}
		if !strings.Contains(err.Error(), "boom") {
			t.Fatalf("Commit's error %q does not carry the store's", err)
		}
	})
}
