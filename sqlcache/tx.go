package sqlcache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/paddockcache/paddock"
)

// A Tx is a *sql.Tx that collects the keys and tags its writes touch, and
// invalidates them only after it commits. It embeds the *sql.Tx, so its
// query methods are the transaction's own.
//
// A read through a Tx inside a load (QueryContext, QueryRowContext,
// ExecContext, PrepareContext or StmtContext with the load's context) sees
// the transaction's uncommitted writes: it makes the load's result
// private to its caller (see [paddock.Private]), neither cached nor shared
// with coalesced callers. The forms without a context (Query, QueryRow,
// Exec, Prepare, Stmt) cannot tell a load's reads, nor can a statement
// prepared outside the load: inside a load, use the Context forms.
//
// A Tx is safe for concurrent use, like a *sql.Tx.
type Tx struct {
	*sql.Tx
	db  *DB
	ctx context.Context // BeginTx's

	mu   sync.Mutex
	inv  invalidation
	err  error // the first bad key or tag: Commit refuses
	done bool  // Commit or Rollback was called
}

// invalidation is what a transaction invalidates.
type invalidation struct {
	Keys []string `json:"k,omitempty"`
	Tags []string `json:"t,omitempty"`
}

func (inv invalidation) empty() bool { return len(inv.Keys) == 0 && len(inv.Tags) == 0 }

// Invalidate records full keys (see [paddock.Loader.Key]) to invalidate
// after the commit. A key without a namespace part ("ns:key") makes Commit
// roll back and return an error wrapping [paddock.ErrInvalidOption], since
// the Cache would refuse it only after the write had committed. After
// Commit or Rollback it does nothing.
func (tx *Tx) Invalidate(keys ...string) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done {
		return
	}
	for _, k := range keys {
		if !strings.Contains(k, ":") && tx.err == nil {
			tx.err = invalid("Tx.Invalidate: key %q has no namespace: pass a full key, as Loader.Key gives it (\"ns:key\")", k)
		}
	}
	tx.inv.Keys = append(tx.inv.Keys, keys...)
}

// InvalidateTags records tags to invalidate after the commit
// ([paddock.ModelTag] names a row's). An empty tag makes Commit roll back
// and return an error wrapping [paddock.ErrInvalidOption]. After Commit or
// Rollback it does nothing.
func (tx *Tx) InvalidateTags(tags ...string) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done {
		return
	}
	if slices.Contains(tags, "") && tx.err == nil {
		tx.err = invalid("Tx.InvalidateTags: empty tag")
	}
	tx.inv.Tags = append(tx.inv.Tags, tags...)
}

// take ends the transaction's collecting: it returns what was collected,
// whether Commit or Rollback had already been called, and the first bad
// name.
func (tx *Tx) take() (inv invalidation, done bool, bad error) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	inv, done, bad = tx.inv, tx.done, tx.err
	tx.inv, tx.done = invalidation{}, true
	slices.Sort(inv.Keys)
	inv.Keys = slices.Compact(inv.Keys)
	slices.Sort(inv.Tags)
	inv.Tags = slices.Compact(inv.Tags)
	return inv, done, bad
}

// Commit commits the transaction and then applies its invalidations; see
// the package doc for the steps. It returns the commit's error, or, if the
// commit succeeded but the store did not acknowledge the invalidations, an
// error matching [ErrCommitted].
//
// A commit that fails may still have committed (the connection broke while
// the database committed): the invalidations are applied all the same,
// since one too many costs a miss and one too few serves an old row.
// Called again, or after Rollback, Commit returns [sql.ErrTxDone].
func (tx *Tx) Commit() error {
	inv, done, bad := tx.take()
	if done {
		return sql.ErrTxDone
	}
	if bad != nil {
		_ = tx.Tx.Rollback()
		return bad
	}
	d := tx.db
	ctx := context.WithoutCancel(tx.ctx)
	var row string
	if d.outbox != nil && !inv.empty() {
		id, err := d.outbox.insert(tx.ctx, tx.Tx, inv)
		if err != nil {
			_ = tx.Tx.Rollback()
			return fmt.Errorf("sqlcache: outbox: %w", err)
		}
		row = id
	}
	if err := tx.Tx.Commit(); err != nil {
		if !errors.Is(err, sql.ErrTxDone) && tx.ctx.Err() == nil && !inv.empty() {
			// Perhaps committed: see the doc comment. The Cache keeps
			// what the store does not acknowledge.
			if d.apply(ctx, inv) == nil && row != "" {
				d.outbox.remove(ctx, d.DB, row, d.logger)
			}
		}
		return err
	}
	if inv.empty() {
		return nil
	}
	if err := d.apply(ctx, inv); err != nil {
		// The row, if any, stays for the relays.
		return fmt.Errorf("%w: %w", ErrCommitted, err)
	}
	if row != "" {
		d.outbox.remove(ctx, d.DB, row, d.logger)
	}
	return nil
}

// Rollback aborts the transaction and drops its invalidations: nothing
// was written, so nothing is invalidated. Its error is the *sql.Tx's.
func (tx *Tx) Rollback() error {
	tx.take()
	return tx.Tx.Rollback()
}

// private makes the result of the load that ctx belongs to, if any,
// private: it may have read the transaction's uncommitted writes.
func private(ctx context.Context) { paddock.Private(ctx) }

// QueryContext is [sql.Tx.QueryContext]; inside a load it makes the load's
// result private (see [Tx]).
func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	private(ctx)
	return tx.Tx.QueryContext(ctx, query, args...)
}

// QueryRowContext is [sql.Tx.QueryRowContext]; inside a load it makes the
// load's result private (see [Tx]).
func (tx *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	private(ctx)
	return tx.Tx.QueryRowContext(ctx, query, args...)
}

// ExecContext is [sql.Tx.ExecContext]; inside a load it makes the load's
// result private (see [Tx]).
func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	private(ctx)
	return tx.Tx.ExecContext(ctx, query, args...)
}

// PrepareContext is [sql.Tx.PrepareContext]; inside a load it makes the
// load's result private (see [Tx]).
func (tx *Tx) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	private(ctx)
	return tx.Tx.PrepareContext(ctx, query)
}

// StmtContext is [sql.Tx.StmtContext]; inside a load it makes the load's
// result private (see [Tx]).
func (tx *Tx) StmtContext(ctx context.Context, stmt *sql.Stmt) *sql.Stmt {
	private(ctx)
	return tx.Tx.StmtContext(ctx, stmt)
}
