package gormcache

import (
	"context"
	"database/sql"
	"errors"
	"sync"

	"gorm.io/gorm"
)

// pool wraps the ConnPool of the DB the plugin is installed on, so that a
// transaction begun on it (db.Begin, db.Transaction, and GORM's own default
// transaction around each write) is a txPool, which holds the invalidations
// of its writes until it commits.
//
// Why not a callback after GORM's commit callback: in an explicit
// transaction that callback runs after each statement, before the
// transaction commits, and an invalidation applied then lets a reader that
// comes between the invalidation and the commit read the old rows and cache
// them with a ticket newer than the invalidation: the cache keeps the old
// rows until they expire. Only the commit itself knows the rows are visible.
type pool struct {
	gorm.ConnPool
	p *Plugin
}

// BeginTx begins a transaction whose invalidations wait for its commit.
func (c *pool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	var (
		inner gorm.ConnPool
		err   error
	)
	switch b := c.ConnPool.(type) {
	case gorm.TxBeginner:
		var tx *sql.Tx
		tx, err = b.BeginTx(ctx, opts)
		if tx != nil {
			inner = tx
		}
	case gorm.ConnPoolBeginner:
		inner, err = b.BeginTx(ctx, opts)
	default:
		return nil, gorm.ErrInvalidTransaction
	}
	if err != nil {
		return nil, err
	}
	return &txPool{ConnPool: inner, p: c.p, ctx: context.WithoutCancel(ctx)}, nil
}

// GetDBConn returns the *sql.DB behind the pool, for db.DB().
func (c *pool) GetDBConn() (*sql.DB, error) {
	switch inner := c.ConnPool.(type) {
	case *sql.DB:
		return inner, nil
	case gorm.GetDBConnector:
		return inner.GetDBConn()
	}
	return nil, gorm.ErrInvalidDB
}

// Ping pings the database, for GORM's and the drivers' checks.
func (c *pool) Ping() error {
	if p, ok := c.ConnPool.(interface{ Ping() error }); ok {
		return p.Ping()
	}
	return nil
}

// A txPool is a transaction begun through pool. Writes made in it add their
// invalidations with add; Commit applies them once the database has
// committed, Rollback drops them.
type txPool struct {
	gorm.ConnPool
	p *Plugin
	// ctx is the context the transaction began with, without its
	// cancellation: the invalidations after the commit must run even if
	// the caller's context ended meanwhile.
	ctx context.Context

	mu   sync.Mutex
	tags []string
	seen map[string]bool
}

// add records tags to invalidate when the transaction commits.
func (t *txPool) add(tags []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen = make(map[string]bool)
	}
	for _, tag := range tags {
		if !t.seen[tag] {
			t.seen[tag] = true
			t.tags = append(t.tags, tag)
		}
	}
}

func (t *txPool) take() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	tags := t.tags
	t.tags, t.seen = nil, nil
	return tags
}

// Commit commits the transaction, then invalidates what its writes touched.
// Its error is the commit's: an invalidation the store did not acknowledge
// is kept and retried by the paddock Cache (and reported to the plugin's
// logger), since the transaction did commit.
func (t *txPool) Commit() error {
	c, ok := t.ConnPool.(gorm.TxCommitter)
	if !ok {
		return gorm.ErrInvalidTransaction
	}
	if err := c.Commit(); err != nil {
		// A commit that failed may still have committed (the connection
		// broke after the server committed): invalidating costs a reload,
		// missing one serves old rows.
		if !errors.Is(err, sql.ErrTxDone) {
			t.p.invalidate(t.ctx, t.take())
		}
		return err
	}
	if hook := t.p.beforeApply; hook != nil {
		hook()
	}
	t.p.invalidate(t.ctx, t.take())
	return nil
}

// Rollback rolls the transaction back and drops its invalidations: nothing
// it wrote was ever visible.
func (t *txPool) Rollback() error {
	t.take()
	if c, ok := t.ConnPool.(gorm.TxCommitter); ok {
		return c.Rollback()
	}
	return gorm.ErrInvalidTransaction
}

// StmtContext returns a transaction-specific prepared statement, for GORM's
// prepared statement mode.
func (t *txPool) StmtContext(ctx context.Context, stmt *sql.Stmt) *sql.Stmt {
	if tx, ok := t.ConnPool.(interface {
		StmtContext(context.Context, *sql.Stmt) *sql.Stmt
	}); ok {
		return tx.StmtContext(ctx, stmt)
	}
	return stmt
}

// txOf returns the txPool of a statement's connection pool, or nil.
func txOf(cp gorm.ConnPool) *txPool {
	switch c := cp.(type) {
	case *txPool:
		return c
	case *gorm.PreparedStmtTX:
		return txOf(c.Tx)
	}
	return nil
}

// inTransaction reports whether a statement runs inside a transaction
// (ours or another).
func inTransaction(cp gorm.ConnPool) bool {
	_, ok := cp.(gorm.TxCommitter)
	return ok
}
