package httpcache_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/httpcache"
	"github.com/paddockcache/paddock/memstore"
)

// A homepage cached whole, built from a cached article: publishing the
// article (invalidating its row) drops the page, with no URL bookkeeping.
func Example() {
	store, _ := memstore.New()
	cache, _ := paddock.New(store)
	defer cache.Close()
	articles := paddock.Must(paddock.NewLoader[string](cache, "article"))
	pages := paddock.Must(httpcache.New(cache))

	headline := "Old news"
	home := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A cached Get made with r.Context(): the page depends on it.
		a, _ := articles.Get(r.Context(), "42", func(context.Context) (string, error) { return headline, nil })
		fmt.Fprintf(w, "<h1>%s</h1>", a)
	})
	h := pages.Handler(home)

	get := func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		b, _ := io.ReadAll(w.Body)
		fmt.Printf("%s  (%s)\n", b, w.Header().Get("Cache-Status"))
	}
	get()
	get()
	headline = "Breaking news" // the editor publishes
	articles.Invalidate(context.Background(), "42")
	get()
	pages.PurgeURL(context.Background(), "/")
	get()
	// Output:
	// <h1>Old news</h1>  (paddock; fwd=miss; fwd-status=200)
	// <h1>Old news</h1>  (paddock; hit; ttl=299)
	// <h1>Breaking news</h1>  (paddock; fwd=miss; fwd-status=200)
	// <h1>Breaking news</h1>  (paddock; fwd=miss; fwd-status=200)
}

// KeyFunc keys pages per user class, OnlyQuery drops tracking parameters,
// and PostProcessAlways puts the user's name on a shared page.
func ExampleKeyFunc() {
	store, _ := memstore.New()
	cache, _ := paddock.New(store)
	defer cache.Close()
	pages := paddock.Must(httpcache.New(cache))

	renders := 0
	blog := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		renders++
		if c, err := r.Cookie("role"); err == nil && c.Value == "staff" {
			fmt.Fprintf(w, "Page %s, with drafts.", r.URL.Query().Get("page"))
			return
		}
		fmt.Fprintf(w, "Hello, {user}. Page %s.", r.URL.Query().Get("page"))
	})
	h := pages.Handler(blog,
		httpcache.KeyFunc(func(r *http.Request) (string, bool) {
			if c, err := r.Cookie("role"); err == nil && c.Value == "staff" {
				return "", false // staff see drafts: never cached
			}
			return "reader", true // every reader shares one page
		}),
		httpcache.OnlyQuery("page"),
		httpcache.PostProcessAlways(func(w http.ResponseWriter, r *http.Request, p *httpcache.Page) {
			name := r.Header.Get("X-User")
			p.Body = []byte(strings.ReplaceAll(string(p.Body), "{user}", name))
			p.Header.Del("ETag") // the body differs per user
		}))
	for _, u := range []struct{ user, url, cookie string }{
		{"ann", "/blog/?page=2&utm_source=x", "role=reader"},
		{"bob", "/blog/?page=2", ""},
		{"cy", "/blog/?page=2", "role=staff"},
	} {
		r := httptest.NewRequest("GET", u.url, nil)
		r.Header.Set("X-User", u.user)
		if u.cookie != "" {
			r.Header.Set("Cookie", u.cookie)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(w.Body.String())
	}
	fmt.Println("renders:", renders)
	// Output:
	// Hello, ann. Page 2.
	// Hello, bob. Page 2.
	// Page 2, with drafts.
	// renders: 2
}
