package main

import (
	"context"

	"github.com/go-redis/cache/v9"
	"github.com/redis/go-redis/v9"
)

// github.com/go-redis/cache/v9 as its README shows it: Redis plus a local
// TinyLFU cache, read through with Cache.Once (singleflight per process
// around get-or-set). It has no refresh option and no fence.

func init() {
	register(Lib{
		Name:   "goredis-cache",
		Module: "github.com/go-redis/cache/v9",
		Redis:  true,
		Peer:   true,
		Notes:  "`cache.New(&Options{Redis, LocalCache: NewTinyLFU(10000, TTL)})`; `Once(&Item{Key, Value, TTL, Do})`; `Delete` on write",
		New: func(cfg Config) (Cache, error) {
			if cfg.Redis == "" {
				return nil, errNoRedis
			}
			rdb := newRedisClient(cfg.Redis, 0)
			return &goredisCache{
				rdb: rdb,
				c:   cache.New(&cache.Options{Redis: rdb, LocalCache: cache.NewTinyLFU(10_000, cfg.TTL)}),
				cfg: cfg,
			}, nil
		},
	})
}

type goredisCache struct {
	rdb *redis.Client
	c   *cache.Cache
	cfg Config
}

func (c *goredisCache) Get(ctx context.Context, key string, load LoadFunc) ([]byte, error) {
	var v []byte
	err := c.c.Once(&cache.Item{
		Ctx:   ctx,
		Key:   key,
		Value: &v,
		TTL:   c.cfg.TTL,
		Do:    func(it *cache.Item) (any, error) { return load(it.Context()) },
	})
	return v, err
}

func (c *goredisCache) Invalidate(ctx context.Context, key string) error {
	return c.c.Delete(ctx, key)
}

func (c *goredisCache) Close() error { return c.rdb.Close() }
