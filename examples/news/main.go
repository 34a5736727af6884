// News: a small news site whose homepage is cached whole with httpcache,
// built from cached article queries, where publishing an article shows it
// on the next request. It runs on the in-process store (no Redis needed):
//
//	go run ./examples/news             # walk through the scenario and exit
//	go run ./examples/news -serve      # then keep serving on localhost:8080
//
// The walk-through is a real HTTP server and a real client: it prints each
// request, its Cache-Status, and the headlines it got, then the page
// statistics that /debug/pages serves.
//
// # Django's version
//
// The usual Django site caches its homepage with cache_page:
//
//	@cache_page(60 * 15)
//	def home(request):
//	    articles = Article.objects.order_by("-published")[:5]
//	    return render(request, "home.html", {"articles": articles})
//
// and the editor publishes with Article.objects.create(...). Nothing
// connects the new article to the cached page: cache_page keys the page by
// its URL (and the headers it varies on), so the homepage keeps showing the
// old list until its 15 minutes are up. The usual repair, a post_save
// signal that deletes the page's key (through get_cache_key and a made-up
// request, or django-fancy-cache's URL purge), leaves a race:
//
//	reader:  GET / misses, reads the five old rows ... still rendering
//	editor:  INSERT the article; delete the page's key   (publish is done)
//	reader:  ... finishes, sets its page under the key   (the old list!)
//	reader:  GET / gets the old list, for 15 more minutes
//
// # Why this one does not
//
// The homepage's handler reads the articles through two paddock Loaders,
// the list of the latest ids and the rows by id, with the request's
// context. Under httpcache that context is the page load's, so the cached
// page depends on the list and on every row it shows: nobody names a URL
// or a tag. Publishing writes the row, then invalidates the list's key
// (and the new row's), and every page built from them goes, in every
// process sharing the store. The invalidation also fences: a render that
// began before it returned cannot store its page, so the race above ends
// with the reader's old page served to that reader alone, and the next
// request renders the new list. Part 4 of the walk-through plays the race
// with a render held (on a channel) while the publish lands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/memstore"
)

func main() {
	serve := flag.Bool("serve", false, "keep serving after the walk-through, until interrupted")
	addr := flag.String("addr", "localhost:8080", "the address to serve on with -serve")
	flag.Parse()
	log.SetFlags(0)

	store, err := memstore.New()
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	cache, err := paddock.New(store)
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()
	s, err := newSite(cache, newDB(seed()...))
	if err != nil {
		log.Fatal(err)
	}

	listen := "127.0.0.1:0"
	if *serve {
		listen = *addr
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: s}
	go srv.Serve(ln)
	base := "http://" + ln.Addr().String()

	ctx := context.Background()
	if err := walk(ctx, os.Stdout, s, newVisitor(base)); err != nil {
		log.Fatal(err)
	}

	if *serve {
		fmt.Printf("\nserving on %s (the homepage, /articles/1, /debug/pages); interrupt to stop\n", base)
		stop, cancel := signal.NotifyContext(ctx, os.Interrupt)
		defer cancel()
		<-stop.Done()
	}
	shutdown, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		log.Fatal(err)
	}
}

// seed is the articles table at start.
func seed() []article {
	t := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	return []article{
		{Title: "Council approves the new tram line", Body: "Work starts in May.", Published: t},
		{Title: "Rain expected until Thursday", Body: "Bring an umbrella.", Published: t.Add(time.Hour)},
		{Title: "Bakery on Mill Street wins a national prize", Body: "Its rye loaf, again.", Published: t.Add(2 * time.Hour)},
	}
}

// walk plays the scenario against the site's server and prints it to w.
func walk(ctx context.Context, w io.Writer, s *site, v *visitor) error {
	show := func(method, path string, r response) {
		fmt.Fprintf(w, "%-4s %-12s %d  %s\n", method, path, r.Status, r.CacheStatus)
		if hs := r.headlines(); len(hs) > 0 {
			fmt.Fprintf(w, "     %s\n", strings.Join(hs, " | "))
		} else if t := r.title(); t != "" {
			fmt.Fprintf(w, "     %s\n", t)
		}
	}
	get := func(path string) (response, error) {
		r, err := v.get(ctx, path)
		if err == nil {
			show("GET", path, r)
		}
		return r, err
	}
	post := func(path string, form url.Values) (response, error) {
		r, err := v.post(ctx, path, form)
		if err == nil {
			fmt.Fprintf(w, "POST %-12s %d  -> %s   title=%q\n", path, r.Status, r.Location, form.Get("title"))
		}
		return r, err
	}
	var errs []error
	check := func(_ response, err error) { errs = append(errs, err) }

	fmt.Fprintln(w, "== 1. The homepage, cached whole (cache_page(60 * 15)) ==")
	check(get("/"))
	check(get("/"))
	check(get("/articles/4")) // not published yet: a 404, cached like any page
	fmt.Fprintln(w)

	fmt.Fprintln(w, "== 2. Publish: the next request shows it (no URL named) ==")
	check(post("/articles", url.Values{"title": {"Harbour reopens after the storm"}, "body": {"Ferries run again."}}))
	check(get("/"))
	check(get("/articles/4"))
	check(get("/"))
	fmt.Fprintln(w)

	fmt.Fprintln(w, "== 3. Correct a headline: its row goes, and the pages built from it ==")
	check(post("/articles/2", url.Values{"title": {"Rain expected until Friday"}}))
	check(get("/articles/2"))
	check(get("/"))
	fmt.Fprintln(w)

	fmt.Fprintln(w, "== 4. A publish lands while the homepage renders ==")
	check(post("/articles", url.Values{"title": {"Tram line: the route is out"}}))
	reading := make(chan struct{}) // the render has read the articles
	release := make(chan struct{}) // lets the render finish
	hold := func() { close(reading); <-release }
	s.hold.Store(&hold)
	held := make(chan response, 1)
	go func() {
		r, err := v.get(ctx, "/")
		if err != nil {
			log.Print(err)
		}
		held <- r
	}()
	<-reading
	fmt.Fprintln(w, "GET  /            (rendering: it has read the articles, and holds)")
	refused := s.cache.Stats()["page"].FillsRefused
	check(post("/articles", url.Values{"title": {"Mill Street closed for the market"}}))
	close(release)
	r := <-held
	fmt.Fprintln(w, "     the held render ends; its client gets the page it rendered:")
	show("", "", r)
	fmt.Fprintf(w, "     not stored (fills refused: %d); the URLs with a stored page: %v\n",
		s.cache.Stats()["page"].FillsRefused-refused, must(s.pages.URLs(ctx, "")))
	check(get("/"))
	check(get("/"))
	fmt.Fprintln(w, "     (Django's cache_page with a delete on save would have stored the held page:")
	fmt.Fprintln(w, "     the second article would be missing for 15 minutes)")
	fmt.Fprintln(w)

	fmt.Fprintln(w, "== 5. GET /debug/pages?format=text (the stats page; HTML in a browser) ==")
	stats, err := v.get(ctx, "/debug/pages?format=text")
	check(stats, err)
	fmt.Fprint(w, stats.Body)
	fmt.Fprintf(w, "homepage renders: %d; database queries: %d\n", s.renders.Load(), s.db.queries.Load())
	return errors.Join(errs...)
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}
