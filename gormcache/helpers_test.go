package gormcache

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/glebarez/sqlite"
	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/pgtest"
	"github.com/paddockcache/paddock/memstore"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// The models of the tests: authors write articles.
type Author struct {
	ID   uint
	Name string
}

type Article struct {
	ID        uint
	Title     string
	AuthorID  uint
	Author    Author
	Published bool
}

// pg is the package's PostgreSQL server, started by the first test that
// needs it and stopped by TestMain.
var pg struct {
	once   sync.Once
	server *pgtest.Server
	err    error
	n      atomic.Int64
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pg.server != nil {
		pg.server.Stop()
	}
	os.Exit(code)
}

// env is one database with the plugin installed on a fresh Cache.
type env struct {
	db     *gorm.DB
	cache  *paddock.Cache
	plugin *Plugin
	// reads counts the queries that reach the database outside a
	// transaction.
	reads *atomic.Int64
}

// dialects runs f on SQLite and, where a server can be started, PostgreSQL.
func dialects(t *testing.T, f func(t *testing.T, open func(t *testing.T, opts Options) *env)) {
	t.Run("db=sqlite", func(t *testing.T) { f(t, openSQLite) })
	t.Run("db=postgres", func(t *testing.T) { f(t, openPostgres) })
}

func openSQLite(t *testing.T, opts Options) *env {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), "t.db") + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)"
	return openEnv(t, sqlite.Open(dsn), opts)
}

func openPostgres(t *testing.T, opts Options) *env {
	t.Helper()
	bin := pgtest.Require(t)
	pg.once.Do(func() { pg.server, pg.err = pgtest.New(bin) })
	if pg.err != nil {
		t.Fatal(pg.err)
	}
	// A schema per test: the tests share the server, not their tables.
	schema := fmt.Sprintf("t%d", pg.n.Add(1))
	dsn := pg.server.DSN("postgres")
	admin, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Fatal(err)
	}
	if sqlDB, err := admin.DB(); err == nil {
		sqlDB.Close()
	}
	return openEnv(t, postgres.Open(dsn+" search_path="+schema), opts)
}

func openEnv(t *testing.T, d gorm.Dialector, opts Options) *env {
	t.Helper()
	db, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqlDB.Close() })
	if err := db.AutoMigrate(&Author{}, &Article{}); err != nil {
		t.Fatal(err)
	}
	reads := new(atomic.Int64)
	counting := &countingPool{ConnPool: db.ConnPool, reads: reads}
	db.ConnPool = counting
	db.Statement.ConnPool = counting

	st, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cache, err := paddock.New(st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	p := New(cache, opts)
	if err := db.Use(p); err != nil {
		t.Fatal(err)
	}
	return &env{db: db, cache: cache, plugin: p, reads: reads}
}

// countingPool counts the queries that reach the database outside a
// transaction (a transaction's go to the *sql.Tx).
type countingPool struct {
	gorm.ConnPool
	reads *atomic.Int64
}

func (c *countingPool) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	c.reads.Add(1)
	return c.ConnPool.QueryContext(ctx, q, args...)
}

func (c *countingPool) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	c.reads.Add(1)
	return c.ConnPool.QueryRowContext(ctx, q, args...)
}

func (c *countingPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	return c.ConnPool.(gorm.TxBeginner).BeginTx(ctx, opts)
}

func (c *countingPool) GetDBConn() (*sql.DB, error) { return c.ConnPool.(*sql.DB), nil }

// cachedDB is the env's DB with reads through the cache.
func (e *env) cachedDB(opts ...paddock.GetOption) *gorm.DB {
	return e.db.Scopes(Cached(opts...))
}

// seed writes an author and their articles, and returns them.
func (e *env) seed(t *testing.T, name string, titles ...string) (Author, []Article) {
	t.Helper()
	a := Author{Name: name}
	if err := e.db.Create(&a).Error; err != nil {
		t.Fatal(err)
	}
	var arts []Article
	for _, title := range titles {
		art := Article{Title: title, AuthorID: a.ID, Published: true}
		if err := e.db.Create(&art).Error; err != nil {
			t.Fatal(err)
		}
		arts = append(arts, art)
	}
	return a, arts
}

// expectReads fails t unless the database answered want queries since
// the last call.
func (e *env) expectReads(t *testing.T, want int64, what string) {
	t.Helper()
	if got := e.reads.Swap(0); got != want {
		t.Errorf("%s: %d queries reached the database, want %d", what, got, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
