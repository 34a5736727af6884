package main

import (
	"context"
	"net/http"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/httpcache"
	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// paddock's page cache: httpcache.New on a paddock Cache with its
// defaults, each view wrapped with Handler (Django's cache_page). On
// Redis, each node has its own go-redis client, redisstore and Cache:
// the nodes share only Redis.

func init() {
	registerPage(PageLib{
		Name:      "httpcache-mem",
		Coalesces: true,
		Module:    "github.com/paddockcache/paddock/httpcache + memstore",
		Notes:     "`httpcache.New(paddock.New(memstore.New()), TTL(ttl))`; `Handler(h)`",
		PurgeHow:  "`PurgeURL(ctx, path)`",
		New: func(cfg PageConfig) (PageCache, error) {
			s, err := memstore.New()
			if err != nil {
				return nil, err
			}
			return newHTTPCache(s, cfg)
		},
	})
	registerPage(PageLib{
		Name:      "httpcache-redis",
		Redis:     true,
		Coalesces: true,
		Module:    "github.com/paddockcache/paddock/httpcache + redisstore",
		Notes:     "`httpcache.New(paddock.New(redisstore.New(go-redis client with ContextTimeoutEnabled)), TTL(ttl))`; `Handler(h)`",
		PurgeHow:  "`PurgeURL(ctx, path)`",
		New: func(cfg PageConfig) (PageCache, error) {
			if cfg.Redis == "" {
				return nil, errNoRedis
			}
			opt := &redis.Options{Addr: cfg.Redis, ContextTimeoutEnabled: true}
			if strings.HasPrefix(cfg.Redis, "/") {
				opt.Network = "unix"
			}
			rdb := redis.NewClient(opt)
			s, err := redisstore.New(rdb)
			if err != nil {
				rdb.Close()
				return nil, err
			}
			return newHTTPCache(&closingStore{s, rdb}, cfg)
		},
	})
}

type httpCachePages struct {
	store store.Store
	c     *paddock.Cache
	pages *httpcache.Cache
}

func newHTTPCache(s store.Store, cfg PageConfig) (*httpCachePages, error) {
	c, err := paddock.New(s)
	if err != nil {
		s.Close()
		return nil, err
	}
	pages, err := httpcache.New(c, httpcache.TTL(cfg.TTL))
	if err != nil {
		c.Close()
		s.Close()
		return nil, err
	}
	return &httpCachePages{store: s, c: c, pages: pages}, nil
}

func (p *httpCachePages) Wrap(h http.Handler) http.Handler { return p.pages.Handler(h) }

func (p *httpCachePages) Purge(ctx context.Context, _ *node, path string) error {
	return p.pages.PurgeURL(ctx, path)
}

func (p *httpCachePages) Close() error {
	p.c.Close()
	return p.store.Close()
}
