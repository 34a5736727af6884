package main

import (
	"cmp"
	"context"
	"errors"
	"html/template"
	"log"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/httpcache"
)

// An article is one row of the articles table.
type article struct {
	ID        int       `json:"id"`
	Title     string    `json:"title"`
	Body      string    `json:"body"`
	Published time.Time `json:"published"`
}

// db is the source of truth: the articles table, in memory, with the
// queries the site makes. Each query counts in queries.
type db struct {
	mu      sync.Mutex
	rows    map[int]article
	nextID  int
	queries atomic.Int64
}

func newDB(seed ...article) *db {
	d := &db{rows: make(map[int]article), nextID: 1}
	for _, a := range seed {
		a.ID = d.nextID
		d.nextID++
		d.rows[a.ID] = a
	}
	return d
}

// latest is SELECT id FROM articles ORDER BY published DESC, id DESC
// LIMIT n.
func (d *db) latest(n int) []int {
	d.queries.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	all := make([]article, 0, len(d.rows))
	for _, a := range d.rows {
		all = append(all, a)
	}
	slices.SortFunc(all, func(a, b article) int {
		return cmp.Or(b.Published.Compare(a.Published), cmp.Compare(b.ID, a.ID))
	})
	ids := make([]int, 0, n)
	for _, a := range all[:min(n, len(all))] {
		ids = append(ids, a.ID)
	}
	return ids
}

// byID is SELECT * FROM articles WHERE id IN (...).
func (d *db) byID(ids ...int) map[int]article {
	d.queries.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[int]article, len(ids))
	for _, id := range ids {
		if a, ok := d.rows[id]; ok {
			out[id] = a
		}
	}
	return out
}

// insert is INSERT INTO articles; it returns the new row.
func (d *db) insert(title, body string, published time.Time) article {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := article{ID: d.nextID, Title: title, Body: body, Published: published}
	d.nextID++
	d.rows[a.ID] = a
	return a
}

// setTitle is UPDATE articles SET title = ? WHERE id = ?; it reports
// whether the row exists.
func (d *db) setTitle(id int, title string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.rows[id]
	if ok {
		a.Title = title
		d.rows[id] = a
	}
	return ok
}

// homeSize is how many articles the homepage shows.
const homeSize = 5

// pageTTL is how long a page stays fresh: Django's cache_page(60 * 15).
// A page is never stored fresher than the values it was built from, so
// the queries' TTLs are at least as long.
const pageTTL = 15 * time.Minute

// site is the news site: the database, the cached queries over it, and
// the pages built from them.
//
// Two Loaders cache the queries: lists (the ids of the latest articles,
// under "latest") and rows (an article by id). The pages read them with
// the request's context, which inside httpcache is the page load's: the
// homepage depends on the list and on every row it shows, the article page
// on its row. A write invalidates the keys of what it changed, never a
// URL.
type site struct {
	db    *db
	cache *paddock.Cache
	pages *httpcache.Cache
	lists *paddock.Loader[[]int]
	rows  *paddock.Loader[article]
	mux   *http.ServeMux

	// renders counts the homepage's renders.
	renders atomic.Int64
	// hold, when set, is called once by the next homepage render, after
	// it has read the articles and before it writes the page: it stands
	// for the rest of a slow render (templates, other queries). The
	// example sets it to make a publish land during a render.
	hold atomic.Pointer[func()]
}

// newSite returns the site over d, with its pages and queries cached on c.
func newSite(c *paddock.Cache, d *db) (*site, error) {
	pages, err := httpcache.New(c, httpcache.TTL(pageTTL))
	if err != nil {
		return nil, err
	}
	lists, err := paddock.NewLoader[[]int](c, "articles")
	if err != nil {
		return nil, err
	}
	rows, err := paddock.NewLoader[article](c, "article")
	if err != nil {
		return nil, err
	}
	s := &site{db: d, cache: c, pages: pages, lists: lists, rows: rows, mux: http.NewServeMux()}
	s.mux.Handle("GET /{$}", pages.Handler(http.HandlerFunc(s.home)))
	s.mux.Handle("GET /articles/{id}", pages.Handler(http.HandlerFunc(s.articlePage)))
	s.mux.HandleFunc("POST /articles", s.publishHandler)
	s.mux.HandleFunc("POST /articles/{id}", s.retitleHandler)
	s.mux.Handle("GET /debug/pages", pages.StatsHandler())
	return s, nil
}

func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// latest returns the latest articles, through the cache: the list of ids,
// then the rows in one batch (one query for the rows not cached).
func (s *site) latest(ctx context.Context) ([]article, error) {
	ids, err := s.lists.Get(ctx, "latest", func(ctx context.Context) ([]int, error) {
		return s.db.latest(homeSize), nil
	}, paddock.TTL(pageTTL))
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = strconv.Itoa(id)
	}
	rows, err := s.rows.GetMany(ctx, keys, func(ctx context.Context, keys []string) (map[string]article, error) {
		ids := make([]int, len(keys))
		for i, k := range keys {
			ids[i], _ = strconv.Atoi(k)
		}
		found := s.db.byID(ids...)
		out := make(map[string]article, len(found))
		for id, a := range found {
			out[strconv.Itoa(id)] = a
		}
		return out, nil
	}, paddock.TTL(time.Hour))
	if err != nil {
		return nil, err
	}
	out := make([]article, 0, len(ids))
	for _, k := range keys {
		if a, ok := rows[k]; ok {
			out = append(out, a)
		}
	}
	return out, nil
}

// article returns one article through the cache, or paddock.ErrNotFound
// (cached too: a request for an id not yet published is a hit).
func (s *site) article(ctx context.Context, id int) (article, error) {
	return s.rows.Get(ctx, strconv.Itoa(id), func(ctx context.Context) (article, error) {
		a, ok := s.db.byID(id)[id]
		if !ok {
			return article{}, paddock.ErrNotFound
		}
		return a, nil
	}, paddock.TTL(time.Hour))
}

// home renders the homepage. It names no tag and no URL: reading the
// articles with r.Context() is what makes the cached page depend on them.
func (s *site) home(w http.ResponseWriter, r *http.Request) {
	s.renders.Add(1)
	articles, err := s.latest(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if hold := s.hold.Swap(nil); hold != nil {
		(*hold)()
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := homeTemplate.Execute(w, articles); err != nil {
		log.Print(err)
	}
}

// articlePage renders one article.
func (s *site) articlePage(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	a, err := s.article(r.Context(), id)
	switch {
	case errors.Is(err, paddock.ErrNotFound):
		http.NotFound(w, r)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := articleTemplate.Execute(w, a); err != nil {
		log.Print(err)
	}
}

// publish writes a new article, then invalidates what it changed: the
// list of the latest articles, and the new row's key (a request for the
// id before it existed may have cached its absence). Every page built from
// them goes with them. Invalidating after the write is what fences a
// render that read the old rows: its page is never stored.
func (s *site) publish(ctx context.Context, title, body string) (article, error) {
	a := s.db.insert(title, body, time.Now())
	return a, s.cache.Invalidate(ctx, s.lists.Key("latest"), s.rows.Key(strconv.Itoa(a.ID)))
}

// retitle changes an article's title, then invalidates its row: the
// homepage and the article's page, which read the row, go too.
func (s *site) retitle(ctx context.Context, id int, title string) (bool, error) {
	if !s.db.setTitle(id, title) {
		return false, nil
	}
	return true, s.rows.Invalidate(ctx, strconv.Itoa(id))
}

// publishHandler is POST /articles (title, body): publish, then see the
// homepage.
func (s *site) publishHandler(w http.ResponseWriter, r *http.Request) {
	title := strings.TrimSpace(r.FormValue("title"))
	if title == "" {
		http.Error(w, "a title is required", http.StatusBadRequest)
		return
	}
	if _, err := s.publish(r.Context(), title, r.FormValue("body")); err != nil {
		// The write is done; the Cache keeps retrying the invalidation and
		// serves nothing it covers meanwhile.
		log.Printf("publish: %v", err)
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// retitleHandler is POST /articles/{id} (title): change the title, then
// see the article.
func (s *site) retitleHandler(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	title := strings.TrimSpace(r.FormValue("title"))
	if err != nil || title == "" {
		http.Error(w, "an id and a title are required", http.StatusBadRequest)
		return
	}
	ok, err := s.retitle(r.Context(), id, title)
	if err != nil {
		log.Printf("retitle: %v", err)
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	http.Redirect(w, r, "/articles/"+strconv.Itoa(id), http.StatusSeeOther)
}

var homeTemplate = template.Must(template.New("home").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>The Paddock Gazette</title></head><body>
<h1>The Paddock Gazette</h1>
<ul>
{{range .}}<li><a href="/articles/{{.ID}}">{{.Title}}</a></li>
{{end}}</ul>
<form method="post" action="/articles">
<input name="title" placeholder="Headline"> <input name="body" placeholder="Text"> <button>Publish</button>
</form>
<p><a href="/debug/pages">Cache statistics</a></p>
</body></html>
`))

var articleTemplate = template.Must(template.New("article").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title></head><body>
<h1>{{.Title}}</h1>
<p><time>{{.Published.Format "2 January 2006"}}</time></p>
<p>{{.Body}}</p>
<form method="post" action="/articles/{{.ID}}">
<input name="title" value="{{.Title}}"> <button>Correct the headline</button>
</form>
<p><a href="/">Home</a></p>
</body></html>
`))
