package sqlcache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"github.com/paddockcache/paddock"
)

// ErrCommitted is matched (with [errors.Is]) by the error [Tx.Commit]
// returns when the transaction committed but the store did not acknowledge
// its invalidations. The write is in the database; the Cache keeps the
// invalidations pending and retries them (and so does a [Relay], with an
// outbox), and meanwhile this process serves nothing they cover. The error
// also wraps the Cache's, which matches [paddock.ErrStoreUnavailable].
var ErrCommitted = errors.New("sqlcache: committed, but the invalidations were not acknowledged")

// A DB is a *sql.DB whose transactions invalidate a [paddock.Cache] after
// they commit. It embeds the *sql.DB, so its query methods are the
// database's own; [DB.BeginTx], [DB.Begin] and [DB.InTx] return a [Tx].
//
// A DB is safe for concurrent use. It does not own the *sql.DB nor the
// Cache: closing them is the caller's business.
type DB struct {
	*sql.DB
	cache  *paddock.Cache
	outbox *outbox // nil without WithOutbox
	logger *slog.Logger
}

// An Option configures a [DB].
type Option interface {
	apply(*DB) error
}

type option func(*DB) error

func (f option) apply(d *DB) error { return f(d) }

// WithOutbox makes every commit that invalidates also write its
// invalidations into the outbox table o describes, in the same
// transaction, so that a [Relay] applies them if this process dies before
// it does. The table must exist: see [DB.CreateOutbox]. Default: no
// outbox.
func WithOutbox(o Outbox) Option {
	return option(func(d *DB) error {
		ob, err := newOutbox(o)
		if err != nil {
			return err
		}
		d.outbox = ob
		return nil
	})
}

// Logger sets where the DB and its relays report what they do not return
// as errors: an outbox row that could not be deleted after its commit, a
// relay pass that failed. Default: nothing is logged.
func Logger(l *slog.Logger) Option {
	return option(func(d *DB) error {
		if l == nil {
			return invalid("Logger: nil logger")
		}
		d.logger = l
		return nil
	})
}

// New returns a DB that invalidates c after the commits of db's
// transactions.
func New(db *sql.DB, c *paddock.Cache, opts ...Option) (*DB, error) {
	if db == nil {
		return nil, invalid("New: nil *sql.DB")
	}
	if c == nil {
		return nil, invalid("New: nil Cache")
	}
	d := &DB{DB: db, cache: c, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		if o == nil {
			return nil, invalid("New: nil option")
		}
		if err := o.apply(d); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Cache returns the Cache the DB invalidates.
func (d *DB) Cache() *paddock.Cache { return d.cache }

// BeginTx starts a transaction, as [sql.DB.BeginTx] does. Its
// invalidations are applied after it commits, with a context that keeps
// ctx's values but not its cancellation (the commit happened: the
// invalidation must be attempted).
func (d *DB) BeginTx(ctx context.Context, opts *sql.TxOptions) (*Tx, error) {
	tx, err := d.DB.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &Tx{Tx: tx, db: d, ctx: ctx}, nil
}

// Begin starts a transaction with context.Background; see [DB.BeginTx].
func (d *DB) Begin() (*Tx, error) { return d.BeginTx(context.Background(), nil) }

// InTx runs f in a transaction: it commits if f returns nil (and returns
// [Tx.Commit]'s error), and rolls back if f returns an error (which it
// returns) or panics (and the panic goes on). f must not commit or roll
// back the Tx itself.
func (d *DB) InTx(ctx context.Context, opts *sql.TxOptions, f func(*Tx) error) error {
	tx, err := d.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	committing := false
	defer func() {
		if !committing {
			// f returned an error or panicked: a panic goes on once the
			// transaction is rolled back.
			_ = tx.Rollback()
		}
	}()
	if err := f(tx); err != nil {
		return err
	}
	committing = true
	return tx.Commit()
}

// Invalidate drops the entries under the given full keys at once, for a
// write made outside a transaction that has already committed. It is
// [paddock.Cache.Invalidate]: an invalidation the store does not
// acknowledge is kept pending and retried by the Cache.
func (d *DB) Invalidate(ctx context.Context, keys ...string) error {
	return d.cache.Invalidate(ctx, keys...)
}

// InvalidateTags drops the entries that carry one of tags at once, for a
// write made outside a transaction that has already committed. It is
// [paddock.Cache.InvalidateTags].
func (d *DB) InvalidateTags(ctx context.Context, tags ...string) error {
	return d.cache.InvalidateTags(ctx, tags...)
}

// apply applies inv through the Cache: keys and tags, even if the first
// call fails.
func (d *DB) apply(ctx context.Context, inv invalidation) error {
	var errs []error
	if len(inv.Keys) > 0 {
		errs = append(errs, d.cache.Invalidate(ctx, inv.Keys...))
	}
	if len(inv.Tags) > 0 {
		errs = append(errs, d.cache.InvalidateTags(ctx, inv.Tags...))
	}
	return errors.Join(errs...)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: sqlcache: "+format, append([]any{paddock.ErrInvalidOption}, args...)...)
}
