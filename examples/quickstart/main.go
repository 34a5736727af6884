// Quickstart: paddock's three guarantees, on the in-process store (no
// Redis needed).
//
//	go run ./examples/quickstart
//
// 1. One load per key: 1000 callers miss the same key, the query runs once.
// 2. No stale sets: the news-homepage race, where a cache keeps an old page
// after the editor published.
// 3. No waiting on expiry: stale-while-revalidate.
// 4. Layered caches: a page built from cached rows goes when a row changes,
// though the page names no tag.
//
// Then it prints the Cache's statistics per namespace.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/store"
)

func main() {
	ctx := context.Background()

	// One store per process (a fleet would share redisstore instead), one
	// Cache over it, one Loader per kind of value.
	store, err := memstore.New()
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	cache, err := paddock.New(store)
	if err != nil {
		log.Fatal(err)
	}

	stampede(ctx, cache)
	homepageRace(ctx, cache)
	staleWhileRevalidate(ctx, cache)
	layered(ctx, cache)

	// Close waits for the background refresh of part 3 to fill the store.
	// A Cache opened on the same store afterwards (as after a restart)
	// gets the refreshed value. Statistics stay readable after Close.
	cache.Close()
	afterRefresh(ctx, store)
	printStats(cache)
}

// stampede: 1000 goroutines ask for the same cold key at the same moment.
// The query takes 50ms; without coalescing each caller would run it.
func stampede(ctx context.Context, cache *paddock.Cache) {
	fmt.Println("== 1. One load per key ==")
	reports, err := paddock.NewLoader[string](cache, "report")
	if err != nil {
		log.Fatal(err)
	}

	var loads atomic.Int64
	slowQuery := func(ctx context.Context) (string, error) {
		loads.Add(1)
		time.Sleep(50 * time.Millisecond) // SELECT ... that takes a while
		return "Q3 sales report", nil
	}

	const callers = 1000
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		loaded atomic.Int64 // callers whose own call ran the load
		shared atomic.Int64 // callers served by that one load
		wrong  atomic.Int64
	)
	for range callers {
		wg.Go(func() {
			<-start // all callers go at once
			r, err := reports.Fetch(ctx, "q3", slowQuery)
			switch {
			case err != nil || r.Value != "Q3 sales report":
				wrong.Add(1)
			case r.Status == paddock.StatusLoaded:
				loaded.Add(1)
			default: // coalesced into the running load, or a hit after it
				shared.Add(1)
			}
		})
	}
	begin := time.Now()
	close(start)
	wg.Wait()

	fmt.Printf("%d concurrent callers of a cold key: loads=%d\n", callers, loads.Load())
	fmt.Printf("  %d caller ran the query, %d shared its result, %d errors (took %v)\n",
		loaded.Load(), shared.Load(), wrong.Load(), time.Since(begin).Round(time.Millisecond))
	fmt.Println()
}

// articleDB is the source of truth: article rows.
type articleDB struct {
	mu     sync.Mutex
	titles map[int]string
}

func (db *articleDB) title(id int) string {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.titles[id]
}

func (db *articleDB) setTitle(id int, title string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.titles[id] = title
}

// A pageCache is the part of a cache the race needs: a read-through Get
// and the invalidation the editor's publish does.
type pageCache struct {
	get        func(ctx context.Context, key string, render func(context.Context) (string, error)) (string, error)
	invalidate func(ctx context.Context) error // after "article 1 changed"
}

// naiveCache is cache-aside as it is usually written: read the key; on a
// miss, render and set it; on a write, delete the key.
func naiveCache() pageCache {
	var (
		mu sync.Mutex
		m  = make(map[string]string)
	)
	return pageCache{
		get: func(ctx context.Context, key string, render func(context.Context) (string, error)) (string, error) {
			mu.Lock()
			page, ok := m[key]
			mu.Unlock()
			if ok {
				return page, nil
			}
			page, err := render(ctx)
			if err != nil {
				return "", err
			}
			mu.Lock()
			m[key] = page // the set that may be stale
			mu.Unlock()
			return page, nil
		},
		invalidate: func(context.Context) error {
			mu.Lock()
			delete(m, "/")
			mu.Unlock()
			return nil
		},
	}
}

// paddockCache is the same on a paddock Loader: the render tags the page
// with the articles it shows, and the publish invalidates the tag.
func paddockCache(cache *paddock.Cache) pageCache {
	pages, err := paddock.NewLoader[string](cache, "homepage")
	if err != nil {
		log.Fatal(err)
	}
	return pageCache{
		get: func(ctx context.Context, key string, render func(context.Context) (string, error)) (string, error) {
			return pages.Get(ctx, key, render)
		},
		invalidate: func(ctx context.Context) error {
			return cache.InvalidateTags(ctx, paddock.ModelTag("article", 1))
		},
	}
}

// homepageRace plays the same race on a naive cache and on paddock:
//
//	render:  Get("/") misses, reads article 1 (old title) ... still rendering
//	editor:  UPDATE article 1; invalidate                 (publish is done)
//	render:  ... finishes, writes its page to the cache   (old page!)
//	reader:  Get("/")
//
// and prints what the render in flight returned and what the next reader
// gets.
func homepageRace(ctx context.Context, cache *paddock.Cache) {
	fmt.Println("== 2. No stale sets: the news-homepage race ==")
	play := func(pc pageCache) (inFlight, next string) {
		db := &articleDB{titles: map[int]string{1: "Old title"}}
		render := func(ctx context.Context) (string, error) {
			paddock.Tag(ctx, paddock.ModelTag("article", 1)) // the rows the page shows
			return "<h1>" + db.title(1) + "</h1>", nil
		}

		rowsRead := make(chan struct{})  // the slow render has read the rows
		published := make(chan struct{}) // the editor's publish is done
		done := make(chan string)
		go func() {
			page, err := pc.get(ctx, "/", func(ctx context.Context) (string, error) {
				page, err := render(ctx)
				close(rowsRead)
				<-published // the rest of a slow render: templates, other queries
				return page, err
			})
			if err != nil {
				log.Fatal(err)
			}
			done <- page
		}()

		<-rowsRead
		// The editor publishes: write the row, then invalidate.
		db.setTitle(1, "New title")
		if err := pc.invalidate(ctx); err != nil {
			log.Fatal(err)
		}
		close(published)
		inFlight = <-done

		next, err := pc.get(ctx, "/", render)
		if err != nil {
			log.Fatal(err)
		}
		return inFlight, next
	}

	naiveOld, naiveNext := play(naiveCache())
	paddockOld, paddockNext := play(paddockCache(cache))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "\tnaive cache-aside\tpaddock")
	fmt.Fprintf(tw, "the render in flight returns\t%s\t%s\t(it began before the publish)\n", naiveOld, paddockOld)
	fmt.Fprintf(tw, "the next reader gets\t%s\t%s\t(naive: old page kept until its TTL)\n", naiveNext, paddockNext)
	tw.Flush()
	fmt.Printf("paddock refused the old render's fill: FillsRefused=%d\n",
		cache.Stats()["homepage"].FillsRefused)
	fmt.Println()
}

// staleWhileRevalidate: an entry with a short TTL and a long stale window.
// After the TTL, Gets return the old value at once while one refresh runs
// in the background.
func staleWhileRevalidate(ctx context.Context, cache *paddock.Cache) {
	fmt.Println("== 3. No waiting on expiry: stale-while-revalidate ==")
	const ttl = 100 * time.Millisecond
	headlines, err := paddock.NewLoader[string](cache, "headline",
		paddock.TTL(ttl), paddock.Stale(time.Hour))
	if err != nil {
		log.Fatal(err)
	}

	var (
		mu        sync.Mutex
		edition   = "Morning edition"
		loads     atomic.Int64
		refreshed = make(chan struct{}) // the refresh has started its query
		finish    = make(chan struct{}) // lets the refresh's slow query end
	)
	query := func(ctx context.Context) (string, error) {
		if loads.Add(1) > 1 { // the background refresh
			close(refreshed)
			<-finish
		}
		mu.Lock()
		defer mu.Unlock()
		return edition, nil
	}

	r, err := headlines.Fetch(ctx, "front", query)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Get: %-6s %q\n", r.Status, r.Value)

	mu.Lock()
	edition = "Evening edition"
	mu.Unlock()
	time.Sleep(ttl + 50*time.Millisecond) // let the TTL pass

	t0 := time.Now()
	r, err = headlines.Fetch(ctx, "front", query)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Get after the TTL: %-6s %q at once (in %v, value %v old)\n",
		r.Status, r.Value, time.Since(t0).Round(time.Microsecond), r.Age.Round(time.Millisecond))
	<-refreshed

	// While the refresh's query runs, every Get still gets the old value
	// at once, and none starts another refresh.
	var wg sync.WaitGroup
	var stale atomic.Int64
	for range 100 {
		wg.Go(func() {
			r, err := headlines.Fetch(ctx, "front", query)
			if err == nil && r.Status == paddock.StatusStale && r.Value == "Morning edition" {
				stale.Add(1)
			}
		})
	}
	wg.Wait()
	fmt.Printf("100 more Gets during the refresh: %d got %q (stale); loads so far=%d (first load + 1 refresh)\n",
		stale.Load(), "Morning edition", loads.Load())

	close(finish) // the refresh's query ends; main's Close waits for its fill
}

// layered: a section page is built from cached article rows with nested
// Gets (the same ctx). Only the rows name tags; the page depends on them
// all the same.
func layered(ctx context.Context, cache *paddock.Cache) {
	fmt.Println("== 4. Layered caches: a page built from cached rows ==")
	rows := paddock.Must(paddock.NewLoader[string](cache, "row"))
	sections := paddock.Must(paddock.NewLoader[string](cache, "section"))
	var mu sync.Mutex
	db := map[int]string{7: "Rain tomorrow", 8: "Sun on Sunday"}
	var renders atomic.Int64
	row := func(ctx context.Context, id int) (string, error) {
		return rows.Get(ctx, fmt.Sprint(id), func(ctx context.Context) (string, error) {
			paddock.Tag(ctx, paddock.ModelTag("article", id))
			mu.Lock()
			defer mu.Unlock()
			return db[id], nil
		})
	}
	page := func() string {
		p, err := sections.Get(ctx, "weather", func(ctx context.Context) (string, error) {
			renders.Add(1)
			a, err := row(ctx, 7) // nested: the page now depends on row 7
			if err != nil {
				return "", err
			}
			b, err := row(ctx, 8)
			return a + " / " + b, err
		})
		if err != nil {
			log.Fatal(err)
		}
		return p
	}
	fmt.Printf("page: %q\n", page())
	fmt.Printf("page: %q (cached, renders=%d)\n", page(), renders.Load())
	mu.Lock()
	db[7] = "Snow tomorrow"
	mu.Unlock()
	if err := cache.InvalidateTags(ctx, paddock.ModelTag("article", 7)); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("after InvalidateTags(article:7): %q (renders=%d)\n", page(), renders.Load())
}

// afterRefresh reads the headline through a new Cache on the same store.
func afterRefresh(ctx context.Context, store store.Store) {
	cache, err := paddock.New(store)
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()
	headlines, err := paddock.NewLoader[string](cache, "headline")
	if err != nil {
		log.Fatal(err)
	}
	r, err := headlines.Fetch(ctx, "front", func(context.Context) (string, error) {
		return "", fmt.Errorf("not loaded: the refresh filled the store")
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("after the refresh: %-6s %q\n", r.Status, r.Value)
	fmt.Println()
}

// printStats prints cache.Stats() as a table, one row per namespace. Tag
// invalidations are counted under the namespace "", shown as "(tags)".
func printStats(cache *paddock.Cache) {
	fmt.Println("== Cache.Stats() ==")
	stats := cache.Stats()
	names := make([]string, 0, len(stats))
	for ns := range stats {
		names = append(names, ns)
	}
	slices.Sort(names)

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "namespace\thits\tstale\tmisses\tloads\tcoalesced\trefreshes\tfills refused\tinvalidations\t")
	for _, ns := range names {
		s := stats[ns]
		name := ns
		if name == "" {
			name = "(tags)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", name,
			s.Hits, s.StaleHits, s.Misses, s.Loads, s.Coalesced, s.Refreshes, s.FillsRefused, s.Invalidations)
	}
	tw.Flush()
}
