// Blog: articles and authors in SQLite through GORM, pages cached whole with
// httpcache, and an editor's save through the GORM plugin that drops the
// article's page, its author's page and the homepage, and nothing else.
//
//	cd examples/blog && go run .          # walk through the scenario and exit (non-zero if a check fails)
//	cd examples/blog && go run . -serve   # then keep serving on localhost:8080
//
// # Django's version
//
// The blog of the Django tutorial caches its pages with cache_page and
// deletes their keys in a post_save signal of Article, building each key by
// hand (the article's URL, its author's, the homepage's, through
// get_cache_key and a made-up request). Every new page that shows an article
// must be added to the signal, and the delete runs inside the save's
// transaction, before it commits: a request in between renders the old
// article and caches it again.
//
// # This one
//
// The handlers read through GORM with the request's context and the
// gormcache.Cached scope. Under httpcache that context is the page's render,
// so each page depends on the tags of the queries it ran: "articles" for the
// homepage's list and the author's list, "articles:2" for article 2's page,
// "authors:1" for its author. The editor's save is a GORM Updates in a
// transaction; the plugin invalidates "articles" and "articles:2" once it
// has committed, and the three pages that read them go, with no URL named.
// The page of another article stays cached.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/gormcache"
	"github.com/paddockcache/paddock/httpcache"
	"github.com/paddockcache/paddock/memstore"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// An Author writes articles.
type Author struct {
	ID   uint
	Name string
}

// An Article is one post of the blog.
type Article struct {
	ID        uint
	Title     string
	Body      string
	AuthorID  uint
	Author    Author
	Published time.Time
}

// pageTTL is how long a page stays fresh; the queries are cached at least as
// long, since a page is never stored fresher than what it read.
const pageTTL = 15 * time.Minute

func main() {
	serve := flag.Bool("serve", false, "keep serving after the walk-through, until interrupted")
	addr := flag.String("addr", "localhost:8080", "the address to serve on with -serve")
	flag.Parse()
	log.SetFlags(0)
	if err := run(*serve, *addr, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(serve bool, addr string, w io.Writer) error {
	dir, err := os.MkdirTemp("", "blog")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := gorm.Open(sqlite.Open(filepath.Join(dir, "blog.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)"),
		&gorm.Config{Logger: logger.Discard})
	if err != nil {
		return err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	defer sqlDB.Close()

	store, err := memstore.New()
	if err != nil {
		return err
	}
	defer store.Close()
	cache, err := paddock.New(store)
	if err != nil {
		return err
	}
	defer cache.Close()
	plugin := gormcache.New(cache, gormcache.Options{Loader: []paddock.LoaderOption{paddock.TTL(time.Hour)}})
	if err := db.Use(plugin); err != nil {
		return err
	}
	if err := seed(db); err != nil {
		return err
	}
	b, err := newBlog(db, cache, plugin)
	if err != nil {
		return err
	}

	listen := "127.0.0.1:0"
	if serve {
		listen = addr
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: b.mux}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	if err := walk(w, b, base); err != nil {
		return err
	}
	if serve {
		fmt.Fprintf(w, "\nserving on %s; interrupt to stop\n", base)
		ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
		defer cancel()
		<-ctx.Done()
	}
	return nil
}

// seed writes two authors and three articles.
func seed(db *gorm.DB) error {
	if err := db.AutoMigrate(&Author{}, &Article{}); err != nil {
		return err
	}
	t := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	ada, grace := Author{Name: "Ada"}, Author{Name: "Grace"}
	return errors.Join(
		db.Create(&ada).Error, db.Create(&grace).Error,
		db.Create(&Article{Title: "Notes on the Analytical Engine", Body: "It weaves algebraic patterns.", Author: ada, Published: t}).Error,
		db.Create(&Article{Title: "On Bernoulli numbers", Body: "Note G.", Author: ada, Published: t.Add(time.Hour)}).Error,
		db.Create(&Article{Title: "A bug in the relay", Body: "First actual case.", Author: grace, Published: t.Add(2 * time.Hour)}).Error,
	)
}

// blog is the site: the database through GORM, and the pages.
type blog struct {
	db     *gorm.DB
	pages  *httpcache.Cache
	plugin *gormcache.Plugin
	mux    *http.ServeMux
}

func newBlog(db *gorm.DB, cache *paddock.Cache, plugin *gormcache.Plugin) (*blog, error) {
	pages, err := httpcache.New(cache, httpcache.TTL(pageTTL))
	if err != nil {
		return nil, err
	}
	b := &blog{db: db, pages: pages, plugin: plugin, mux: http.NewServeMux()}
	b.mux.Handle("GET /{$}", pages.Handler(http.HandlerFunc(b.home)))
	b.mux.Handle("GET /articles/{id}", pages.Handler(http.HandlerFunc(b.article)))
	b.mux.Handle("GET /authors/{id}", pages.Handler(http.HandlerFunc(b.author)))
	b.mux.HandleFunc("POST /articles/{id}", b.save)
	return b, nil
}

// read is the DB for a request's reads: through the cache, with the
// request's context, so the page being rendered depends on what it reads.
func (b *blog) read(r *http.Request) *gorm.DB {
	return b.db.WithContext(r.Context()).Scopes(gormcache.Cached())
}

func (b *blog) home(w http.ResponseWriter, r *http.Request) {
	var list []Article
	if err := b.read(r).Preload("Author").Order("published DESC").Limit(10).Find(&list).Error; err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	render(w, homePage, list)
}

func (b *blog) article(w http.ResponseWriter, r *http.Request) {
	var a Article
	if err := b.read(r).Joins("Author").First(&a, r.PathValue("id")).Error; err != nil {
		fail(w, r, err)
		return
	}
	render(w, articlePage, a)
}

func (b *blog) author(w http.ResponseWriter, r *http.Request) {
	var a Author
	err := b.read(r).First(&a, r.PathValue("id")).Error
	var list []Article
	if err == nil {
		err = b.read(r).Where("author_id = ?", a.ID).Order("published DESC").Find(&list).Error
	}
	if err != nil {
		fail(w, r, err)
		return
	}
	render(w, authorPage, struct {
		Author   Author
		Articles []Article
	}{a, list})
}

// save is the editor's save: a GORM write in a transaction. It names no
// page and no tag: the plugin invalidates what the write touched once the
// transaction has committed.
func (b *blog) save(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	title := strings.TrimSpace(r.FormValue("title"))
	if err != nil || title == "" {
		http.Error(w, "an id and a title are required", http.StatusBadRequest)
		return
	}
	err = b.db.WithContext(r.Context()).Transaction(func(tx *gorm.DB) error {
		var a Article
		if err := tx.First(&a, id).Error; err != nil {
			return err
		}
		return tx.Model(&a).Updates(Article{Title: title, Body: r.FormValue("body")}).Error
	})
	if err != nil {
		fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/articles/"+strconv.Itoa(id), http.StatusSeeOther)
}

// fail answers a request whose query failed: 404 when the record it names
// does not exist (First's gorm.ErrRecordNotFound), 500 otherwise.
func fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		http.NotFound(w, r)
		return
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

func render(w http.ResponseWriter, t *template.Template, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := t.Execute(w, data); err != nil {
		log.Print(err)
	}
}

var (
	homePage = template.Must(template.New("home").Parse(`<!doctype html><title>The Engine Room</title>
<h1>The Engine Room</h1>
<ul>{{range .}}
<li><a href="/articles/{{.ID}}">{{.Title}}</a> by <a href="/authors/{{.AuthorID}}">{{.Author.Name}}</a></li>{{end}}
</ul>
`))
	articlePage = template.Must(template.New("article").Parse(`<!doctype html><title>{{.Title}}</title>
<h1>{{.Title}}</h1>
<p>by <a href="/authors/{{.AuthorID}}">{{.Author.Name}}</a></p>
<p>{{.Body}}</p>
`))
	authorPage = template.Must(template.New("author").Parse(`<!doctype html><title>{{.Author.Name}}</title>
<h1>{{.Author.Name}}</h1>
<ul>{{range .Articles}}
<li><a href="/articles/{{.ID}}">{{.Title}}</a></li>{{end}}
</ul>
`))
)

// walk plays the scenario against the server at base, prints it to w, and
// returns an error naming every check that failed.
func walk(w io.Writer, b *blog, base string) error {
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var failed []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			msg := fmt.Sprintf(format, args...)
			failed = append(failed, msg)
			fmt.Fprintf(w, "     FAILED: %s\n", msg)
		}
	}
	type page struct{ status, cacheStatus, body string }
	get := func(path string) page {
		resp, err := hc.Get(base + path)
		if err != nil {
			check(false, "GET %s: %v", path, err)
			return page{}
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		p := page{resp.Status, resp.Header.Get("Cache-Status"), string(body)}
		fmt.Fprintf(w, "GET  %-12s %s  %s\n     %s\n", path, p.status, hitOrMiss(p.cacheStatus), strings.Join(texts(p.body), " | "))
		return p
	}
	hit := func(p page) bool { return strings.Contains(p.cacheStatus, "; hit") }
	queries := func() uint64 { return b.plugin.Stats().Loads }

	fmt.Fprintln(w, "== 1. Every page renders once, then is served from the cache ==")
	paths := []string{"/", "/articles/2", "/authors/1", "/articles/1"}
	for _, p := range paths {
		check(!hit(get(p)), "the first GET %s was a hit", p)
	}
	before := queries()
	for _, p := range paths {
		check(hit(get(p)), "the second GET %s was not a hit", p)
	}
	check(queries() == before, "hits ran %d queries", queries()-before)
	fmt.Fprintln(w)

	fmt.Fprintln(w, "== 2. The editor saves article 2 (a GORM Updates in a transaction) ==")
	form := url.Values{"title": {"On Bernoulli numbers, corrected"}, "body": {"Note G, with the table."}}
	resp, err := hc.PostForm(base+"/articles/2", form)
	if err != nil {
		return err
	}
	resp.Body.Close()
	fmt.Fprintf(w, "POST /articles/2  %s -> %s\n\n", resp.Status, resp.Header.Get("Location"))
	check(resp.StatusCode == http.StatusSeeOther, "the save answered %s", resp.Status)

	fmt.Fprintln(w, "== 3. The next request of each page that showed it shows the new title ==")
	const title = "On Bernoulli numbers, corrected"
	for _, p := range []string{"/", "/articles/2", "/authors/1"} {
		pg := get(p)
		check(!hit(pg), "GET %s after the save was a hit", p)
		check(strings.Contains(pg.body, title), "GET %s after the save does not show the new title", p)
	}
	pg := get("/articles/1")
	check(hit(pg), "GET /articles/1, which does not show article 2, was not kept")
	for _, p := range []string{"/", "/articles/2", "/authors/1"} {
		check(hit(get(p)), "the second GET %s after the save was not a hit", p)
	}
	fmt.Fprintln(w)
	st := b.plugin.Stats()
	fmt.Fprintf(w, "queries run on the database: %d; queries served from the cache while rendering: %d\n", st.Loads, st.Hits)
	if len(failed) > 0 {
		return fmt.Errorf("%d checks failed:\n  %s", len(failed), strings.Join(failed, "\n  "))
	}
	fmt.Fprintln(w, "all checks passed")
	return nil
}

func hitOrMiss(cacheStatus string) string {
	if strings.Contains(cacheStatus, "; hit") {
		return "hit"
	}
	return "rendered"
}

var textRE = regexp.MustCompile(`<(?:h1|li)>(.*?)</(?:h1|li)>`)
var tagRE = regexp.MustCompile(`<[^>]*>`)

// texts are the headings and list items of a page, without markup.
func texts(body string) []string {
	var out []string
	for _, m := range textRE.FindAllStringSubmatch(body, -1) {
		out = append(out, template.HTMLEscaper(tagRE.ReplaceAllString(m[1], "")))
	}
	return out
}
