package gormcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/paddockcache/paddock"
	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
)

// DefaultNamespace is the namespace of the plugin's Loader when
// Options.Namespace is empty.
const DefaultNamespace = "gorm"

// Options configures a Plugin. The zero value is valid: every field has a
// documented default.
type Options struct {
	// Namespace is the namespace of the paddock Loader that holds the
	// plugin's query results: keys are "Namespace:" + a hash of the SQL and
	// its values. Default DefaultNamespace. Two databases on one Cache need
	// two namespaces (the same SQL reads different rows); their table tags
	// are shared, which only costs extra invalidations.
	Namespace string
	// Loader options given to paddock.NewLoader: the defaults of every cached
	// query (paddock.TTL, paddock.Stale, paddock.StaleIfError, ...) and the
	// Loader's own (paddock.HotSize). A query's Cached options apply on top.
	Loader []paddock.LoaderOption
	// Logger receives the invalidations the store did not acknowledge (the
	// Cache keeps them and retries) and writes in a transaction the plugin
	// did not begin. Default: discard.
	Logger *slog.Logger
}

// A Plugin caches GORM reads in a paddock Loader and invalidates them when
// GORM writes. Install it with db.Use(New(cache, Options{})) on the DB that
// reads and writes; see the package doc.
type Plugin struct {
	cache  *paddock.Cache
	opts   Options
	loader *paddock.Loader[rowSet]
	log    *slog.Logger

	// Test hooks, nil outside tests: afterRead runs in a cached query's
	// load once the database has answered, before the fill; beforeApply
	// runs in Commit between the database's commit and the invalidation.
	afterRead   func(ctx context.Context)
	beforeApply func()
}

// New returns the plugin over cache. Its Loader is made by Initialize
// (db.Use), which returns the error of a bad option.
func New(cache *paddock.Cache, opts Options) *Plugin {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	return &Plugin{cache: cache, opts: opts, log: log}
}

// Name returns the plugin's name, "paddock:gormcache".
func (p *Plugin) Name() string { return "paddock:gormcache" }

// Stats returns the counters of the plugin's namespace on its Cache: hits,
// loads (queries run on the database), coalesced queries, refused fills.
func (p *Plugin) Stats() paddock.Stats { return p.cache.Stats()[p.opts.Namespace] }

// Initialize installs the plugin on db: it wraps db's connection pool so that
// transactions hold their invalidations until they commit, replaces GORM's
// query callback with one that serves cached queries, and adds a callback
// after each write that collects what the write touched. db.Use calls it.
func (p *Plugin) Initialize(db *gorm.DB) error {
	if p.cache == nil {
		return fmt.Errorf("gormcache: a nil Cache: %w", paddock.ErrInvalidOption)
	}
	if p.loader != nil {
		return fmt.Errorf("gormcache: the plugin is already installed on a DB: %w", paddock.ErrInvalidOption)
	}
	opts := append([]paddock.LoaderOption{paddock.WithCodec(rowCodec{})}, p.opts.Loader...)
	l, err := paddock.NewLoader[rowSet](p.cache, p.opts.Namespace, opts...)
	if err != nil {
		return err
	}
	if db.ConnPool == nil {
		return errors.New("gormcache: the DB has no connection pool")
	}
	wrapped := &pool{ConnPool: db.ConnPool, p: p}
	db.ConnPool = wrapped
	if db.Statement != nil {
		db.Statement.ConnPool = wrapped
	}
	if err := db.Callback().Query().Replace("gorm:query", p.query); err != nil {
		return err
	}
	if err := db.Callback().Create().After("gorm:after_create").Before("gorm:commit_or_rollback_transaction").
		Register("paddock:invalidate_create", p.written(true)); err != nil {
		return err
	}
	if err := db.Callback().Update().After("gorm:after_update").Before("gorm:commit_or_rollback_transaction").
		Register("paddock:invalidate_update", p.written(false)); err != nil {
		return err
	}
	if err := db.Callback().Delete().After("gorm:after_delete").Before("gorm:commit_or_rollback_transaction").
		Register("paddock:invalidate_delete", p.written(false)); err != nil {
		return err
	}
	p.loader = l
	return nil
}

// settingKey is the key of the Cached setting in a Statement's settings.
const settingKey = "paddock:gormcache"

// cached is the Cached setting of one query.
type cached struct {
	opts []paddock.GetOption
}

// Cached returns a scope that reads through the cache: the query, and the
// queries its Preload runs, are served from the cache when an entry is there,
// and loaded once for every concurrent identical query (in the process, and in
// the fleet sharing the store) when not. opts apply on top of Options.Loader:
// paddock.TTL, paddock.Stale, paddock.Tags for tables the plugin cannot see.
//
//	db.Scopes(gormcache.Cached(paddock.TTL(time.Minute))).Where("author_id = ?", 7).Find(&articles)
//
// Reading through the cache is opt-in per query because a cached query can
// be as old as its TTL after a write the plugin does not see (raw SQL through
// Exec, another program, a trigger): the author of a query knows whether
// that is acceptable for it. Queries inside a transaction, raw queries
// (db.Raw) and queries whose tables the plugin cannot name (a raw subquery,
// a join it cannot parse) are not cached: they run on the database.
func Cached(opts ...paddock.GetOption) func(*gorm.DB) *gorm.DB {
	c := &cached{opts: opts}
	return func(db *gorm.DB) *gorm.DB { return db.Set(settingKey, c) }
}

// query replaces GORM's query callback.
func (p *Plugin) query(db *gorm.DB) {
	if db.Error != nil {
		return
	}
	stmt := db.Statement
	setting, _ := stmt.Get(settingKey)
	c, _ := setting.(*cached)
	raw := stmt.SQL.Len() > 0
	if c == nil || db.DryRun || raw || inTransaction(stmt.ConnPool) {
		callbacks.Query(db)
		if db.Error == nil && !db.DryRun && !raw {
			// Not cached, but a load this query runs in (a page being
			// rendered) depends on what it read.
			if tags, ok := readTags(stmt); ok {
				paddock.Tag(stmt.Context, tags...)
			}
		}
		return
	}
	callbacks.BuildQuerySQL(db)
	if db.Error != nil {
		return
	}
	tags, ok := readTags(stmt)
	if !ok {
		p.run(db)
		return
	}
	var (
		ctx     = stmt.Context
		sqlText = stmt.SQL.String()
		vars    = append([]any(nil), stmt.Vars...)
		cp      = stmt.ConnPool
		key     = queryKey(db.Dialector.Name(), sqlText, vars)
	)
	if ctx == nil {
		ctx = context.Background()
	}
	rs, err := p.loader.Get(ctx, key, func(ctx context.Context) (rowSet, error) {
		paddock.Tag(ctx, tags...)
		rows, err := cp.QueryContext(ctx, sqlText, vars...)
		if err != nil {
			return rowSet{}, err
		}
		rs, storable, err := capture(rows)
		if closeErr := rows.Close(); err == nil {
			err = closeErr
		}
		if err != nil {
			return rowSet{}, err
		}
		if !storable {
			paddock.NoStore(ctx)
		}
		if p.afterRead != nil {
			p.afterRead(ctx)
		}
		return rs, nil
	}, c.opts...)
	if err != nil {
		db.AddError(err)
		return
	}
	rows, err := replay(&rs)
	if err != nil {
		db.AddError(err)
		return
	}
	defer func() { db.AddError(rows.Close()) }()
	gorm.Scan(rows, db, 0)
	if stmt.Result != nil {
		stmt.Result.RowsAffected = db.RowsAffected
	}
}

// run runs a built query on the database, as GORM's query callback does.
func (p *Plugin) run(db *gorm.DB) {
	callbacks.Query(db)
}

// written returns the callback that runs after a successful write: it
// collects the tags the write invalidates into the transaction the write
// runs in, to apply when it commits, or applies them at once outside one.
func (p *Plugin) written(create bool) func(*gorm.DB) {
	return func(db *gorm.DB) {
		if db.Error != nil || db.DryRun {
			return
		}
		stmt := db.Statement
		tags := writeTags(stmt, create)
		if len(tags) == 0 {
			p.log.Warn("gormcache: a write to a table the plugin cannot name; nothing invalidated",
				"sql", stmt.SQL.String())
			return
		}
		if tx := txOf(stmt.ConnPool); tx != nil {
			tx.add(tags)
			return
		}
		if inTransaction(stmt.ConnPool) {
			// A transaction begun elsewhere (db.Connection, a ConnPool set
			// by hand): its commit cannot be seen, so invalidate now, which
			// still fences the loads in flight, and say so.
			p.log.Warn("gormcache: a write in a transaction the plugin did not begin; invalidated before its commit",
				"tags", tags)
		}
		ctx := stmt.Context
		if ctx == nil {
			ctx = context.Background()
		}
		p.invalidate(context.WithoutCancel(ctx), tags)
	}
}

// invalidateTimeout bounds one invalidation after a write; one the store
// does not acknowledge in time is kept and retried by the Cache.
const invalidateTimeout = 5 * time.Second

// invalidate applies tags; a failure is logged, the Cache retries it.
func (p *Plugin) invalidate(ctx context.Context, tags []string) {
	if len(tags) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, invalidateTimeout)
	defer cancel()
	if err := p.cache.InvalidateTags(ctx, tags...); err != nil {
		p.log.Error("gormcache: invalidation after a write not acknowledged; the cache retries it",
			"tags", tags, "err", err)
	}
}
