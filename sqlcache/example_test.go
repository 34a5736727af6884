package sqlcache_test

import (
	"context"
	"database/sql"
	"errors"
	"log"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/sqlcache"
)

type Article struct {
	ID    int64
	Title string
}

// A write that invalidates the row's tag after its transaction commits,
// and a read that caches a missing row negatively. (The examples need a
// database driver: they compile here and run in the sqlcache/sqltest
// module.)
func Example() {
	var (
		ctx   = context.Background()
		sqlDB *sql.DB // sql.Open("pgx", dsn), sql.Open("sqlite", path), ...
		cache *paddock.Cache
	)
	db := paddock.Must(sqlcache.New(sqlDB, cache))
	articles := paddock.Must(paddock.NewLoader[Article](cache, "article", paddock.TTL(10*time.Minute)))

	a, err := articles.Get(ctx, "42", func(ctx context.Context) (Article, error) {
		var a Article
		err := db.QueryRowContext(ctx, "SELECT id, title FROM articles WHERE id = $1", 42).Scan(&a.ID, &a.Title)
		return a, sqlcache.NotFound(err)
	}, paddock.Tags(paddock.ModelTag("article", 42)))
	if errors.Is(err, paddock.ErrNotFound) {
		log.Print("no article 42")
	}

	err = db.InTx(ctx, nil, func(tx *sqlcache.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE articles SET title = $1 WHERE id = $2", a.Title+"!", 42)
		tx.InvalidateTags(paddock.ModelTag("article", 42))
		return err
	})
	if errors.Is(err, sqlcache.ErrCommitted) {
		log.Print("committed; the invalidation is pending and retried")
	}
}

// An outbox on PostgreSQL and a relay that applies what crashed writers
// left, in every process.
func ExampleDB_Relay() {
	var (
		ctx   = context.Background()
		sqlDB *sql.DB
		cache *paddock.Cache
	)
	db := paddock.Must(sqlcache.New(sqlDB, cache,
		sqlcache.WithOutbox(sqlcache.Outbox{Table: "paddock_outbox", Dialect: sqlcache.Postgres})))
	if err := db.CreateOutbox(ctx); err != nil {
		log.Fatal(err)
	}
	relay := paddock.Must(db.Relay(sqlcache.Grace(5 * time.Second)))
	go func() {
		if err := relay.Run(ctx); !errors.Is(err, context.Canceled) {
			log.Print(err)
		}
	}()
}

// A load that reads a replica bounds how long its entry is kept.
func ExampleReadReplica() {
	var (
		ctx      = context.Background()
		replica  *sql.DB
		articles *paddock.Loader[Article]
	)
	_, _ = articles.Get(ctx, "42", func(ctx context.Context) (Article, error) {
		sqlcache.ReadReplica(ctx, 2*time.Second) // before the query
		var a Article
		err := replica.QueryRowContext(ctx, "SELECT id, title FROM articles WHERE id = $1", 42).Scan(&a.ID, &a.Title)
		return a, sqlcache.NotFound(err)
	})
}
