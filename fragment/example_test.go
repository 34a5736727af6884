package fragment_test

import (
	"context"
	"fmt"
	"html/template"
	"log"
	"strings"
	"sync"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/fragment"
	"github.com/paddockcache/paddock/memstore"
)

// DB stands in for a database behind a Loader: Links reads a user's links
// through the cache, with the context it is given.
type DB struct {
	links *paddock.Loader[[]string]

	mu   sync.Mutex
	rows map[string][]string
}

func (db *DB) Links(ctx context.Context, user string) ([]string, error) {
	return db.links.Get(ctx, user, func(ctx context.Context) ([]string, error) {
		fmt.Println("[query links of " + user + "]")
		paddock.Tag(ctx, "links:"+user)
		db.mu.Lock()
		defer db.mu.Unlock()
		return db.rows[user], nil
	})
}

func (db *DB) AddLink(user, link string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.rows[user] = append(db.rows[user], link)
}

// Page is the data of the page template.
type Page struct {
	Ctx  context.Context
	User string
	DB   *DB
}

func Example() {
	ctx := context.Background()
	store, err := memstore.New()
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	c := paddock.Must(paddock.New(store))
	defer c.Close()
	db := &DB{
		links: paddock.Must(paddock.NewLoader[[]string](c, "links")),
		rows:  map[string][]string{"ann": {"go.dev"}},
	}

	frags := paddock.Must(fragment.New(c))
	t := template.Must(template.New("page").Funcs(frags.Funcs()).Parse(`
{{- define "page"}}<h1>Hello, {{.User}}</h1>{{cache .Ctx "links" . (vary .User) (ttl 600)}}
{{end}}
{{- define "links"}}<ul>{{range .Data.DB.Links .Ctx .Data.User}}<li>{{.}}</li>{{end}}</ul>{{end}}`))
	if err := frags.Bind(t); err != nil {
		log.Fatal(err)
	}

	page := Page{Ctx: ctx, User: "ann", DB: db}
	show := func() {
		var b strings.Builder
		if err := t.ExecuteTemplate(&b, "page", page); err != nil {
			log.Fatal(err)
		}
		fmt.Print(b.String())
	}
	show()
	show()
	// Ann adds a link: the rows change, then their tag is invalidated,
	// which drops the cached links and the fragment built from them.
	db.AddLink("ann", "pkg.go.dev")
	if err := c.InvalidateTags(ctx, "links:ann"); err != nil {
		log.Fatal(err)
	}
	show()
	fmt.Println("fragment renders:", c.Stats()["fragment"].Loads)
	// Output:
	// [query links of ann]
	// <h1>Hello, ann</h1><ul><li>go.dev</li></ul>
	// <h1>Hello, ann</h1><ul><li>go.dev</li></ul>
	// [query links of ann]
	// <h1>Hello, ann</h1><ul><li>go.dev</li><li>pkg.go.dev</li></ul>
	// fragment renders: 2
}
