package diskstore_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/diskstore"
)

// A cache that outlives its process: the second Cache, opened on the same
// file as a restarted process would, hits the value the first one loaded,
// and an invalidation made before the restart still holds after it.
func Example() {
	dir, err := os.MkdirTemp("", "diskstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "cache.db")
	ctx := context.Background()
	load := func(ctx context.Context) (string, error) {
		fmt.Println("query")
		return "Hello, disk", nil
	}

	run := func(invalidate bool) {
		s, err := diskstore.Open(path, diskstore.MaxBytes(64<<20))
		if err != nil {
			log.Fatal(err)
		}
		defer s.Close() // the Cache does not own its store
		c, err := paddock.New(s)
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		pages, err := paddock.NewLoader[string](c, "page", paddock.TTL(time.Hour))
		if err != nil {
			log.Fatal(err)
		}
		v, err := pages.Get(ctx, "home", load)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(v)
		if invalidate {
			if err := pages.Invalidate(ctx, "home"); err != nil {
				log.Fatal(err)
			}
		}
	}
	run(false) // loads
	run(true)  // a hit after the restart; then invalidates
	run(false) // loads again: the invalidation survived the restart
	// Output:
	// query
	// Hello, disk
	// Hello, disk
	// query
	// Hello, disk
}
