package sqltest

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/pgtest"
	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/sqlcache"
	"github.com/paddockcache/paddock/store"
)

// The PostgreSQL server the tests share, started by the first test that
// needs it (each test gets a database of its own) and stopped by TestMain.
var (
	pgOnce   sync.Once
	pgServer *pgtest.Server
	pgErr    error
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(crashChild())
	}
	code := m.Run()
	if pgServer != nil {
		pgServer.Stop()
	}
	os.Exit(code)
}

// A backend is a database the tests run on.
type backend struct {
	name    string
	dialect sqlcache.Dialect
	// open returns the DSN of a new, empty database for t, and its
	// driver's name.
	open func(t *testing.T) (driver, dsn string)
}

var backends = []backend{
	{"sqlite", sqlcache.SQLite, func(t *testing.T) (string, string) {
		path := filepath.Join(t.TempDir(), "db.sqlite")
		// WAL: readers do not wait for the writer; the busy timeout
		// makes concurrent writers (relays, the test) wait for the lock.
		return "sqlite", "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)"
	}},
	{"postgres", sqlcache.Postgres, func(t *testing.T) (string, string) {
		bin := pgtest.Require(t)
		pgOnce.Do(func() { pgServer, pgErr = pgtest.New(bin) })
		if pgErr != nil {
			t.Fatalf("pgtest: %v", pgErr)
		}
		return "pgx", pgServer.CreateDatabase(t)
	}},
}

// forEach runs f on every backend, as subtests named db=NAME.
func forEach(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run("db="+b.name, func(t *testing.T) { f(t, b) })
	}
}

// q rewrites the ? placeholders of query as the backend's ($1, $2, ... on
// PostgreSQL).
func (b backend) q(query string) string {
	if b.dialect != sqlcache.Postgres {
		return query
	}
	var out strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			out.WriteString("$" + strconv.Itoa(n))
			continue
		}
		out.WriteRune(r)
	}
	return out.String()
}

// openSQL opens dsn, closed when t ends.
func openSQL(t *testing.T, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// env is one test's world: a database with an articles table, a Cache
// over a store, a DB that invalidates it, and a Loader of article titles
// that counts its loads.
type env struct {
	t        *testing.T
	b        backend
	driver   string
	dsn      string
	sql      *sql.DB
	cache    *paddock.Cache
	db       *sqlcache.DB
	articles *paddock.Loader[string]
	loads    atomic.Int64
}

// newEnv makes an env on a new database of b with a Cache over s (a new
// memstore if nil) and the DB options opts.
func newEnv(t *testing.T, b backend, s store.Store, opts ...sqlcache.Option) *env {
	t.Helper()
	driver, dsn := b.open(t)
	e := &env{t: t, b: b, driver: driver, dsn: dsn, sql: openSQL(t, driver, dsn)}
	if _, err := e.sql.Exec("CREATE TABLE articles (id INTEGER PRIMARY KEY, title TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	e.cache = newCache(t, s)
	e.db = newDB(t, e.sql, e.cache, opts...)
	e.articles = must(paddock.NewLoader[string](e.cache, "article"))
	return e
}

func newCache(t *testing.T, s store.Store, opts ...paddock.Option) *paddock.Cache {
	t.Helper()
	if s == nil {
		m, err := memstore.New()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		s = m
	}
	c, err := paddock.New(s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newDB(t *testing.T, sdb *sql.DB, c *paddock.Cache, opts ...sqlcache.Option) *sqlcache.DB {
	t.Helper()
	d, err := sqlcache.New(sdb, c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// outbox is the outbox the tests use on b.
func (b backend) outbox() sqlcache.Outbox {
	return sqlcache.Outbox{Table: "paddock_outbox", Dialect: b.dialect}
}

// withOutbox makes the env's DB write an outbox, and creates its table.
func (e *env) withOutbox(opts ...sqlcache.Option) *env {
	e.t.Helper()
	e.db = newDB(e.t, e.sql, e.cache, append([]sqlcache.Option{sqlcache.WithOutbox(e.b.outbox())}, opts...)...)
	if err := e.db.CreateOutbox(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
	return e
}

func (e *env) exec(query string, args ...any) {
	e.t.Helper()
	if _, err := e.sql.Exec(e.b.q(query), args...); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
}

// key is the full key of article id.
func (e *env) key(id int) string { return e.articles.Key(strconv.Itoa(id)) }

// tag is the model tag of article id.
func tag(id int) string { return paddock.ModelTag("article", id) }

// read is a load of article id's title from q (the DB, or a Tx), tagged
// with its model tag; a missing row is ErrNotFound.
func (e *env) read(q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id int) paddock.LoadFunc[string] {
	return func(ctx context.Context) (string, error) {
		e.loads.Add(1)
		paddock.Tag(ctx, tag(id))
		var title string
		err := q.QueryRowContext(ctx, e.b.q("SELECT title FROM articles WHERE id = ?"), id).Scan(&title)
		return title, sqlcache.NotFound(err)
	}
}

// get reads article id through the cache, loading from the primary.
func (e *env) get(id int) (string, error) {
	return e.articles.Get(e.t.Context(), strconv.Itoa(id), e.read(e.db, id))
}

// want fails the test unless a Get of article id returns title.
func (e *env) want(id int, title string, why string) {
	e.t.Helper()
	got, err := e.get(id)
	if err != nil || got != title {
		e.t.Fatalf("%s: article %d = %q, %v; want %q", why, id, got, err, title)
	}
}

// outboxRows returns how many rows the outbox table holds.
func (e *env) outboxRows() int {
	e.t.Helper()
	var n int
	if err := e.sql.QueryRow("SELECT count(*) FROM paddock_outbox").Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// A deadStore refuses every invalidation as a closed store does: the Cache
// neither applies nor retries it, so a commit made through it leaves its
// outbox row in place, as a process that died after its commit would.
type deadStore struct{ store.Store }

func (deadStore) Invalidate(context.Context, store.Invalidation) error { return store.ErrClosed }

// A countingStore records every name it is asked to invalidate, and tells
// seen when a name in want has been invalidated.
type countingStore struct {
	store.Store
	mu     sync.Mutex
	counts map[string]int
	want   map[string]bool
	seen   chan struct{} // closed once every name of want was invalidated
}

func newCountingStore(t *testing.T, want ...string) *countingStore {
	m, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return countInvalidations(m, want...)
}

// countInvalidations returns a countingStore over under.
func countInvalidations(under store.Store, want ...string) *countingStore {
	s := &countingStore{Store: under, counts: map[string]int{}, want: map[string]bool{}, seen: make(chan struct{})}
	for _, w := range want {
		s.want[w] = true
	}
	if len(want) == 0 {
		close(s.seen)
	}
	return s
}

func (s *countingStore) Invalidate(ctx context.Context, inv store.Invalidation) error {
	if err := s.Store.Invalidate(ctx, inv); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range append(append([]string(nil), inv.Keys...), inv.Tags...) {
		s.counts[n]++
		if s.want[n] {
			delete(s.want, n)
			if len(s.want) == 0 {
				close(s.seen)
			}
		}
	}
	return nil
}

// expect returns a channel closed once every name of names has been
// invalidated after the call, in place of seen.
func (s *countingStore) expect(names ...string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want = map[string]bool{}
	for _, n := range names {
		s.want[n] = true
	}
	s.seen = make(chan struct{})
	return s.seen
}

func (s *countingStore) count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[name]
}

var errBoom = errors.New("boom")

func ids(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}
