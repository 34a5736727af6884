package paddock_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/memstore"
)

// exampleCache returns a Cache over a new in-process store, and a function
// that closes both.
func exampleCache() (*paddock.Cache, func()) {
	store, err := memstore.New()
	if err != nil {
		log.Fatal(err)
	}
	c, err := paddock.New(store)
	if err != nil {
		log.Fatal(err)
	}
	return c, func() {
		c.Close()
		store.Close()
	}
}

func ExampleLoader_Get() {
	type Article struct {
		ID    int
		Title string
	}
	ctx := context.Background()
	c, closeCache := exampleCache()
	defer closeCache()

	articles, err := paddock.NewLoader[Article](c, "article", paddock.TTL(5*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	// The load stands in for a database query.
	load := func(ctx context.Context) (Article, error) {
		fmt.Println("query article 42")
		return Article{ID: 42, Title: "Hello, paddock"}, nil
	}

	for range 3 {
		a, err := articles.Get(ctx, "42", load)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(a.Title)
	}
	// Output:
	// query article 42
	// Hello, paddock
	// Hello, paddock
	// Hello, paddock
}

func ExampleLoader_Fetch() {
	ctx := context.Background()
	c, closeCache := exampleCache()
	defer closeCache()

	pages, err := paddock.NewLoader[string](c, "page")
	if err != nil {
		log.Fatal(err)
	}
	render := func(ctx context.Context) (string, error) { return "<h1>About</h1>", nil }

	for range 2 {
		r, err := pages.Fetch(ctx, "/about", render)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s %s\n", r.Status, r.Value)
	}
	// Output:
	// loaded <h1>About</h1>
	// hit <h1>About</h1>
}

// Tags cross loaders: the article and the homepage that shows it both carry
// the tag "article:1", named inside their loads once the rows are known.
// One InvalidateTags drops both.
func ExampleCache_InvalidateTags() {
	type Article struct {
		ID     int
		Title  string
		Author int
	}
	ctx := context.Background()
	c, closeCache := exampleCache()
	defer closeCache()

	db := map[int]Article{
		1: {ID: 1, Title: "Launch day", Author: 7},
		2: {ID: 2, Title: "Roadmap", Author: 8},
	}
	articles, err := paddock.NewLoader[Article](c, "article")
	if err != nil {
		log.Fatal(err)
	}
	pages, err := paddock.NewLoader[string](c, "page")
	if err != nil {
		log.Fatal(err)
	}

	getArticle := func(id int) Article {
		a, err := articles.Get(ctx, fmt.Sprint(id), func(ctx context.Context) (Article, error) {
			fmt.Println("  query article", id)
			a := db[id]
			paddock.Tag(ctx, paddock.ModelTag("article", a.ID), paddock.ModelTag("author", a.Author))
			return a, nil
		})
		if err != nil {
			log.Fatal(err)
		}
		return a
	}
	getHome := func() string {
		p, err := pages.Get(ctx, "/", func(ctx context.Context) (string, error) {
			fmt.Println("  render homepage")
			var titles []string
			for _, id := range []int{1, 2} { // the rows the page shows
				a := db[id]
				paddock.Tag(ctx, paddock.ModelTag("article", a.ID))
				titles = append(titles, a.Title)
			}
			return strings.Join(titles, " | "), nil
		})
		if err != nil {
			log.Fatal(err)
		}
		return p
	}

	fmt.Println("first reads:")
	fmt.Println(getArticle(1).Title)
	fmt.Println(getHome())

	// An editor renames article 1: write the row, then invalidate its tag.
	db[1] = Article{ID: 1, Title: "Launch day (updated)", Author: 7}
	if err := c.InvalidateTags(ctx, paddock.ModelTag("article", 1)); err != nil {
		log.Fatal(err)
	}

	fmt.Println("after InvalidateTags(article:1):")
	fmt.Println(getArticle(1).Title)
	fmt.Println(getHome())
	fmt.Println(getArticle(2).Title) // untouched: still cached
	// Output:
	// first reads:
	//   query article 1
	// Launch day
	//   render homepage
	// Launch day | Roadmap
	// after InvalidateTags(article:1):
	//   query article 1
	// Launch day (updated)
	//   render homepage
	// Launch day (updated) | Roadmap
	//   query article 2
	// Roadmap
}

func ExampleLoader_GetMany() {
	ctx := context.Background()
	c, closeCache := exampleCache()
	defer closeCache()

	users, err := paddock.NewLoader[string](c, "user")
	if err != nil {
		log.Fatal(err)
	}
	db := map[string]string{"1": "ada", "2": "grace", "4": "edsger"}
	// One query for all the missing keys: SELECT ... WHERE id IN (...).
	load := func(ctx context.Context, ids []string) (map[string]string, error) {
		fmt.Println("query ids", ids)
		found := make(map[string]string)
		for _, id := range ids {
			if name, ok := db[id]; ok {
				found[id] = name
			}
		}
		return found, nil // ids left out are cached as not found
	}

	m, err := users.GetMany(ctx, []string{"1", "2", "3"}, load)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m)
	// 1 and 2 are cached, and so is the absence of 3: only 4 is loaded.
	m, err = users.GetMany(ctx, []string{"1", "2", "3", "4"}, load)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m)
	// Output:
	// query ids [1 2 3]
	// map[1:ada 2:grace]
	// query ids [4]
	// map[1:ada 2:grace 4:edsger]
}

func ExampleModelTag() {
	ctx := context.Background()
	c, closeCache := exampleCache()
	defer closeCache()

	fmt.Println(paddock.ModelTag("article", 42))

	profiles, err := paddock.NewLoader[string](c, "profile")
	if err != nil {
		log.Fatal(err)
	}
	version := 1
	load := func(ctx context.Context) (string, error) {
		// The load tags the entry with the row it was built from...
		paddock.Tag(ctx, paddock.ModelTag("user", 7))
		return fmt.Sprintf("profile of user 7, v%d", version), nil
	}
	p, _ := profiles.Get(ctx, "7", load)
	fmt.Println(p)

	// ...and the code that writes the row invalidates the same tag.
	version = 2
	if err := c.InvalidateTags(ctx, paddock.ModelTag("user", 7)); err != nil {
		log.Fatal(err)
	}
	p, _ = profiles.Get(ctx, "7", load)
	fmt.Println(p)
	// Output:
	// article:42
	// profile of user 7, v1
	// profile of user 7, v2
}

// Stale-while-revalidate: inside the stale window a Get returns the old
// value at once, and one refresh runs in the background. Here the entry is
// made stale by MarkStale (a soft invalidation); it would be the same once
// its TTL has passed.
func ExampleStale() {
	ctx := context.Background()
	store, err := memstore.New()
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	c, err := paddock.New(store)
	if err != nil {
		log.Fatal(err)
	}

	headlines, err := paddock.NewLoader[string](c, "headline",
		paddock.TTL(time.Minute), paddock.Stale(time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	edition := "morning edition"
	load := func(ctx context.Context) (string, error) { return edition, nil }

	r, _ := headlines.Fetch(ctx, "front", load)
	fmt.Println(r.Status, r.Value)

	edition = "evening edition"
	if err := headlines.MarkStale(ctx, "front"); err != nil {
		log.Fatal(err)
	}
	r, _ = headlines.Fetch(ctx, "front", load) // does not wait for the load
	fmt.Println(r.Status, r.Value)

	// Close waits for the background refresh; a Cache that shares the
	// store (another process, or this one after a restart) sees its fill.
	c.Close()
	c2, err := paddock.New(store)
	if err != nil {
		log.Fatal(err)
	}
	defer c2.Close()
	headlines2, err := paddock.NewLoader[string](c2, "headline")
	if err != nil {
		log.Fatal(err)
	}
	r, _ = headlines2.Fetch(ctx, "front", load)
	fmt.Println(r.Status, r.Value)
	fmt.Println("refreshes:", c.Stats()["headline"].Refreshes)
	// Output:
	// loaded morning edition
	// stale morning edition
	// hit evening edition
	// refreshes: 1
}

// Set is a versioned write: right after updating the source of truth, put
// the new value in the cache instead of dropping it. No load that began
// before the Set can overwrite it.
func ExampleLoader_Set() {
	ctx := context.Background()
	c, closeCache := exampleCache()
	defer closeCache()

	settings, err := paddock.NewLoader[map[string]string](c, "settings")
	if err != nil {
		log.Fatal(err)
	}
	load := func(ctx context.Context) (map[string]string, error) {
		fmt.Println("query settings")
		return map[string]string{"theme": "light"}, nil
	}

	s, _ := settings.Get(ctx, "site", load)
	fmt.Println(s)

	// db.UpdateSettings(...), then:
	if err := settings.Set(ctx, "site", map[string]string{"theme": "dark"}); err != nil {
		log.Fatal(err)
	}
	r, _ := settings.Fetch(ctx, "site", load)
	fmt.Println(r.Status, r.Value)
	// Output:
	// query settings
	// map[theme:light]
	// hit map[theme:dark]
}

// Russian-doll caching: a page built from a cached list built from cached
// rows. The rows name their model tags; the list and the page name none,
// yet invalidating a row's tag drops the list and the page built from it,
// because the Gets made inside a load carry their dependencies.
func Example_nestedGets() {
	ctx := context.Background()
	c, closeCache := exampleCache()
	defer closeCache()
	rows := paddock.Must(paddock.NewLoader[string](c, "row"))
	lists := paddock.Must(paddock.NewLoader[[]string](c, "list"))
	pages := paddock.Must(paddock.NewLoader[string](c, "page"))

	db := map[int]string{1: "Hello, paddock", 2: "Layered caches"}
	row := func(ctx context.Context, id int) (string, error) {
		return rows.Get(ctx, fmt.Sprint(id), func(ctx context.Context) (string, error) {
			fmt.Println("query article", id)
			paddock.Tag(ctx, paddock.ModelTag("article", id))
			return db[id], nil
		})
	}
	latest := func(ctx context.Context) ([]string, error) {
		return lists.Get(ctx, "latest", func(ctx context.Context) ([]string, error) {
			fmt.Println("build the list")
			var titles []string
			for _, id := range []int{1, 2} {
				t, err := row(ctx, id) // a nested Get: the list depends on the row
				if err != nil {
					return nil, err
				}
				titles = append(titles, t)
			}
			return titles, nil
		})
	}
	home := func() string {
		p, err := pages.Get(ctx, "home", func(ctx context.Context) (string, error) {
			fmt.Println("render the page")
			titles, err := latest(ctx)
			return strings.Join(titles, " | "), err
		})
		if err != nil {
			log.Fatal(err)
		}
		return p
	}

	fmt.Println(home())
	fmt.Println(home()) // cached: nothing is queried or rendered

	db[1] = "Hello again" // an editor publishes
	if err := c.InvalidateTags(ctx, paddock.ModelTag("article", 1)); err != nil {
		log.Fatal(err)
	}
	fmt.Println(home())
	// Output:
	// render the page
	// build the list
	// query article 1
	// query article 2
	// Hello, paddock | Layered caches
	// Hello, paddock | Layered caches
	// render the page
	// build the list
	// query article 1
	// Hello again | Layered caches
}

// A load that learns after its query how its result may be kept: an HTTP
// response's Cache-Control, a response that set a user's cookie.
func ExampleSetTTL() {
	ctx := context.Background()
	c, closeCache := exampleCache()
	defer closeCache()
	pages := paddock.Must(paddock.NewLoader[string](c, "page", paddock.TTL(time.Hour)))

	page, err := pages.Get(ctx, "/news", func(ctx context.Context) (string, error) {
		// The backend answered "Cache-Control: max-age=60,
		// stale-while-revalidate=30".
		paddock.SetTTL(ctx, 60*time.Second)
		paddock.SetStale(ctx, 30*time.Second)
		return "<h1>News</h1>", nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(page)

	account, err := pages.Get(ctx, "/account", func(ctx context.Context) (string, error) {
		// The response set a session cookie: it is this caller's alone.
		paddock.Private(ctx)
		return "<h1>Your account</h1>", nil
	})
	if err != nil {
		log.Fatal(err)
	}
	_, cached, _ := pages.Peek(ctx, "/account")
	fmt.Println(account, cached)
	// Output:
	// <h1>News</h1>
	// <h1>Your account</h1> false
}
