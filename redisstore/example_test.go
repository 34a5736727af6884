package redisstore_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/redisstore"
)

type Article struct {
	ID    int
	Title string
}

func loadArticle(ctx context.Context, id int) (Article, error) {
	return Article{ID: id, Title: "Hello"}, nil
}

// A fleet shares a cache through Redis: each process runs this with its
// own client. One load per key for the fleet, no stale fill.
func ExampleNew() {
	const storeTimeout = 250 * time.Millisecond
	// A failing Redis must cost a Get at most the StoreTimeout, not the
	// client's retries (see "Client options that matter" in the package
	// doc).
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:                 []string{"localhost:6379"}, // several: Cluster; with MasterName: Sentinel
		ContextTimeoutEnabled: true,                       // the Cache's StoreTimeout bounds each call
		DialTimeout:           storeTimeout,               // a connect nobody answers
		DialerRetries:         1,                          // no dial retries
		MaxRetries:            -1,                         // no command retries: the Get loads instead
		MinRetryBackoff:       -1,                         // no sleeps between retries (Cluster redirects)
		MaxRetryBackoff:       -1,
		PoolTimeout:           storeTimeout, // waiting for a free connection
		ReadTimeout:           time.Second,  // calls without a deadline
		WriteTimeout:          time.Second,
	})
	defer client.Close()

	store, err := redisstore.New(client, redisstore.Prefix("myapp:"))
	if err != nil {
		log.Fatal(err)
	}
	cache, err := paddock.New(store, paddock.StoreTimeout(storeTimeout))
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()
	articles, err := paddock.NewLoader[Article](cache, "article")
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	a, err := articles.Get(ctx, "42", func(ctx context.Context) (Article, error) {
		paddock.Tag(ctx, "author:7")
		return loadArticle(ctx, 42)
	}, paddock.TTL(5*time.Minute), paddock.Stale(time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(a.Title)

	// After writing the database, from any process:
	if err := cache.InvalidateTags(ctx, "author:7"); err != nil {
		log.Print(err)
	}
}
