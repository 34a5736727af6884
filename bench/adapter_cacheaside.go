package main

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Naive cache-aside, as in Django's cache docs: get; on a miss load and
// set with the TTL; delete on write. No coalescing, no fence, no stale
// window: the baseline every other row improves on.

func init() {
	register(Lib{
		Name:   "cacheaside-mem",
		Module: "— (a map, in bench)",
		Peer:   true,
		Notes:  "mutex map with TTL: get; on a miss load and set; delete on write (Django's `cache.get`/`cache.set`/`cache.delete` on LocMemCache)",
		New:    func(cfg Config) (Cache, error) { return newAsideMem(cfg), nil },
	})
	register(Lib{
		Name:   "cacheaside-redis",
		Module: "github.com/redis/go-redis/v9",
		Redis:  true,
		Peer:   true,
		Notes:  "go-redis `GET`; on a miss load and `SET key value EX ttl`; `DEL` on write (Django's cache-aside on django-redis)",
		New: func(cfg Config) (Cache, error) {
			if cfg.Redis == "" {
				return nil, errNoRedis
			}
			return &asideRedis{rdb: newRedisClient(cfg.Redis, 0), ttl: cfg.TTL}, nil
		},
	})
}

type asideEntry struct {
	v       []byte
	expires time.Time
}

type asideMem struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]asideEntry
}

func newAsideMem(cfg Config) *asideMem {
	return &asideMem{ttl: cfg.TTL, m: make(map[string]asideEntry, cfg.Entries)}
}

func (c *asideMem) Get(ctx context.Context, key string, load LoadFunc) ([]byte, error) {
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && time.Now().Before(e.expires) {
		return e.v, nil
	}
	v, err := load(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.m[key] = asideEntry{v, time.Now().Add(c.ttl)}
	c.mu.Unlock()
	return v, nil
}

func (c *asideMem) Invalidate(_ context.Context, key string) error {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
	return nil
}

func (c *asideMem) Close() error { return nil }

type asideRedis struct {
	rdb *redis.Client
	ttl time.Duration
}

func (c *asideRedis) Get(ctx context.Context, key string, load LoadFunc) ([]byte, error) {
	v, err := c.rdb.Get(ctx, key).Bytes()
	if err == nil {
		return v, nil
	}
	if err != redis.Nil {
		return nil, err
	}
	v, err = load(ctx)
	if err != nil {
		return nil, err
	}
	return v, c.rdb.Set(ctx, key, v, c.ttl).Err()
}

func (c *asideRedis) Invalidate(ctx context.Context, key string) error {
	return c.rdb.Del(ctx, key).Err()
}

func (c *asideRedis) Close() error { return c.rdb.Close() }
