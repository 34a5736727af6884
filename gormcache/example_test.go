package gormcache_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/gormcache"
	"github.com/paddockcache/paddock/memstore"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

type Post struct {
	ID    uint
	Title string
}

func Example() {
	dir, err := os.MkdirTemp("", "gormcache")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := gorm.Open(sqlite.Open(filepath.Join(dir, "blog.db")), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	store := paddock.Must(memstore.New())
	defer store.Close()
	cache := paddock.Must(paddock.New(store))
	defer cache.Close()

	plugin := gormcache.New(cache, gormcache.Options{
		Loader: []paddock.LoaderOption{paddock.TTL(10 * time.Minute)},
	})
	if err := db.Use(plugin); err != nil {
		log.Fatal(err)
	}
	if err := db.AutoMigrate(&Post{}); err != nil {
		log.Fatal(err)
	}
	db.Create(&Post{Title: "Hello"})

	read := func() string {
		var p Post
		if err := db.Scopes(gormcache.Cached()).First(&p, 1).Error; err != nil {
			log.Fatal(err)
		}
		return p.Title
	}
	fmt.Println(read(), read(), read())
	fmt.Printf("queries run: %d, hits: %d\n", plugin.Stats().Loads, plugin.Stats().Hits)

	// The update invalidates "posts" and "posts:1" once it has committed.
	var p Post
	db.First(&p, 1)
	db.Model(&p).Update("title", "Hello, world")
	fmt.Println(read())
	fmt.Printf("queries run: %d\n", plugin.Stats().Loads)
	// Output:
	// Hello Hello Hello
	// queries run: 1, hits: 2
	// Hello, world
	// queries run: 2
}
