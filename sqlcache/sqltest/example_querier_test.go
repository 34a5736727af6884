package sqltest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/sqlcache"
)

// What sqlc generates for a query file, abridged: a DBTX that *sql.DB,
// *sql.Tx and *sqlcache.Tx all satisfy, a Queries with one method per
// query, and a Querier interface of those methods. A hand-written query
// layer has the same shape.

type DBTX interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
	PrepareContext(context.Context, string) (*sql.Stmt, error)
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

type Article struct {
	ID       int64
	AuthorID int64
	Title    string
}

type Queries struct{ db DBTX }

func NewQueries(db DBTX) *Queries { return &Queries{db: db} }

func (q *Queries) GetArticle(ctx context.Context, id int64) (Article, error) {
	var a Article
	err := q.db.QueryRowContext(ctx, "SELECT id, author_id, title FROM articles WHERE id = ?", id).
		Scan(&a.ID, &a.AuthorID, &a.Title)
	return a, err
}

func (q *Queries) ListArticlesByAuthor(ctx context.Context, authorID int64) ([]Article, error) {
	rows, err := q.db.QueryContext(ctx, "SELECT id, author_id, title FROM articles WHERE author_id = ? ORDER BY id", authorID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Article
	for rows.Next() {
		var a Article
		if err := rows.Scan(&a.ID, &a.AuthorID, &a.Title); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

type UpdateArticleTitleParams struct {
	ID    int64
	Title string
}

func (q *Queries) UpdateArticleTitle(ctx context.Context, arg UpdateArticleTitleParams) error {
	_, err := q.db.ExecContext(ctx, "UPDATE articles SET title = ? WHERE id = ?", arg.Title, arg.ID)
	return err
}

type CreateArticleParams struct {
	AuthorID int64
	Title    string
}

func (q *Queries) CreateArticle(ctx context.Context, arg CreateArticleParams) (int64, error) {
	var id int64
	err := q.db.QueryRowContext(ctx, "INSERT INTO articles (author_id, title) VALUES (?, ?) RETURNING id",
		arg.AuthorID, arg.Title).Scan(&id)
	return id, err
}

type Querier interface {
	GetArticle(ctx context.Context, id int64) (Article, error)
	ListArticlesByAuthor(ctx context.Context, authorID int64) ([]Article, error)
	UpdateArticleTitle(ctx context.Context, arg UpdateArticleTitleParams) error
	CreateArticle(ctx context.Context, arg CreateArticleParams) (int64, error)
}

// CachedQuerier is the cached Querier: a Loader per read query, with the
// query's TTL and tags; writes go through a sqlcache.Tx, which invalidates
// the rows' tags after the commit.
type CachedQuerier struct {
	db       *sqlcache.DB
	q        *Queries
	article  *paddock.Loader[Article]
	byAuthor *paddock.Loader[[]Article]
}

var _ Querier = (*CachedQuerier)(nil)

func NewCachedQuerier(db *sqlcache.DB) (*CachedQuerier, error) {
	article, err := paddock.NewLoader[Article](db.Cache(), "article", paddock.TTL(10*time.Minute))
	if err != nil {
		return nil, err
	}
	byAuthor, err := paddock.NewLoader[[]Article](db.Cache(), "articles-by-author", paddock.TTL(time.Minute))
	if err != nil {
		return nil, err
	}
	return &CachedQuerier{db: db, q: NewQueries(db), article: article, byAuthor: byAuthor}, nil
}

// loads counts the queries that reached the database, for the example's
// output.
var loads int

func (c *CachedQuerier) GetArticle(ctx context.Context, id int64) (Article, error) {
	return c.article.Get(ctx, strconv.FormatInt(id, 10), func(ctx context.Context) (Article, error) {
		loads++
		a, err := c.q.GetArticle(ctx, id)
		return a, sqlcache.NotFound(err) // a missing row is cached for the NegativeTTL
	}, paddock.Tags(paddock.ModelTag("article", id)))
}

func (c *CachedQuerier) ListArticlesByAuthor(ctx context.Context, authorID int64) ([]Article, error) {
	return c.byAuthor.Get(ctx, strconv.FormatInt(authorID, 10), func(ctx context.Context) ([]Article, error) {
		loads++
		list, err := c.q.ListArticlesByAuthor(ctx, authorID)
		for _, a := range list { // a change to any row on the list drops it
			paddock.Tag(ctx, paddock.ModelTag("article", a.ID))
		}
		return list, err
	}, paddock.TTL(30*time.Second), paddock.Tags(paddock.ModelTag("author", authorID)))
}

func (c *CachedQuerier) UpdateArticleTitle(ctx context.Context, arg UpdateArticleTitleParams) error {
	return c.db.InTx(ctx, nil, func(tx *sqlcache.Tx) error {
		if err := NewQueries(tx).UpdateArticleTitle(ctx, arg); err != nil {
			return err
		}
		tx.InvalidateTags(paddock.ModelTag("article", arg.ID))
		return nil
	})
}

func (c *CachedQuerier) CreateArticle(ctx context.Context, arg CreateArticleParams) (id int64, err error) {
	err = c.db.InTx(ctx, nil, func(tx *sqlcache.Tx) error {
		if id, err = NewQueries(tx).CreateArticle(ctx, arg); err != nil {
			return err
		}
		// A new row is on no cached list yet: its author's lists go.
		tx.InvalidateTags(paddock.ModelTag("author", arg.AuthorID))
		return nil
	})
	return id, err
}

// A cached Querier in front of a generated (sqlc) or hand-written query
// layer, on SQLite.
func Example_querier() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "querier")
	defer os.RemoveAll(dir)
	sqlDB, _ := sql.Open("sqlite", "file:"+filepath.Join(dir, "blog.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	defer sqlDB.Close()
	_, _ = sqlDB.Exec(`CREATE TABLE articles (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL, title TEXT NOT NULL);
		INSERT INTO articles (author_id, title) VALUES (7, 'Hello'), (7, 'Second post')`)

	store, _ := memstore.New()
	defer store.Close()
	cache := paddock.Must(paddock.New(store))
	defer cache.Close()
	db := paddock.Must(sqlcache.New(sqlDB, cache))
	var q Querier = paddock.Must(NewCachedQuerier(db))

	a, _ := q.GetArticle(ctx, 1)
	a, _ = q.GetArticle(ctx, 1)
	list, _ := q.ListArticlesByAuthor(ctx, 7)
	fmt.Printf("%q; author 7 has %d articles; %d queries\n", a.Title, len(list), loads)

	_ = q.UpdateArticleTitle(ctx, UpdateArticleTitleParams{ID: 1, Title: "Hello, world"})
	a, _ = q.GetArticle(ctx, 1)
	list, _ = q.ListArticlesByAuthor(ctx, 7)
	fmt.Printf("after the update: %q, and %q on the list; %d queries\n", a.Title, list[0].Title, loads)

	_, _ = q.CreateArticle(ctx, CreateArticleParams{AuthorID: 7, Title: "Third"})
	list, _ = q.ListArticlesByAuthor(ctx, 7)
	fmt.Printf("after the insert: author 7 has %d articles\n", len(list))

	_, err := q.GetArticle(ctx, 99)
	fmt.Println("article 99:", err)
	// Output:
	// "Hello"; author 7 has 2 articles; 2 queries
	// after the update: "Hello, world", and "Hello, world" on the list; 4 queries
	// after the insert: author 7 has 3 articles
	// article 99: paddock: not found: sql: no rows in result set
}
