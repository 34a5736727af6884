package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/eko/gocache/lib/v4/cache"
	"github.com/eko/gocache/lib/v4/store"
	gocachestore "github.com/eko/gocache/store/go_cache/v4"
	redisstore "github.com/eko/gocache/store/redis/v4"
	gocache "github.com/patrickmn/go-cache"
	"github.com/redis/go-redis/v9"
)

// github.com/eko/gocache/lib/v4 with its loadable cache, as its README
// shows it: cache.NewLoadable(loadFunction, cache.New(store)). A miss runs
// the load function inside a singleflight.Group and hands the value to a
// background setter. The load function is fixed per cache, so the adapter
// passes each Get's load to it through the context; gocache's own tags
// (store.WithTags, Invalidate(WithInvalidateTags)) are used for the tag
// scenario. It has no refresh option and no fence.

func init() {
	register(Lib{
		Name:   "gocache-mem",
		Module: "github.com/eko/gocache/lib/v4 + store/go_cache/v4",
		Peer:   true,
		Notes:  "`cache.NewLoadable(load, cache.New[[]byte](go_cache store))`; `Get`; `Delete` on write; tags with `store.WithTags`",
		New: func(cfg Config) (Cache, error) {
			s := gocachestore.NewGoCache(gocache.New(cfg.TTL, time.Minute))
			c := newGocache(s, cfg, nil)
			c.tagged = func(ctx context.Context, tag, key string) bool {
				v, err := s.Get(ctx, fmt.Sprintf(gocachestore.GoCacheTagPattern, tag))
				m, _ := v.(map[string]struct{})
				_, ok := m[key]
				return err == nil && ok
			}
			return c, nil
		},
	})
	register(Lib{
		Name:   "gocache-redis",
		Module: "github.com/eko/gocache/lib/v4 + store/redis/v4",
		Redis:  true,
		Peer:   true,
		Notes:  "`cache.NewLoadable(load, cache.New[[]byte](redis store))`; `Get`; `Delete` on write; tags with `store.WithTags`",
		New: func(cfg Config) (Cache, error) {
			if cfg.Redis == "" {
				return nil, errNoRedis
			}
			rdb := newRedisClient(cfg.Redis, 0)
			c := newGocache(redisstore.NewRedis(rdb), cfg, rdb)
			c.tagged = func(ctx context.Context, tag, key string) bool {
				ok, err := rdb.SIsMember(ctx, fmt.Sprintf(redisstore.RedisTagPattern, tag), key).Result()
				return err == nil && ok
			}
			return c, nil
		},
	})
}

type gocacheCache struct {
	base *cache.Cache[[]byte]
	l    *cache.LoadableCache[[]byte]
	rdb  *redis.Client
	// tagged reports whether the store's index of tag lists key.
	tagged func(ctx context.Context, tag, key string) bool

	mu      sync.Mutex
	tags    map[string][]string // the tags each key was loaded with, for Settle
	drained bool                // the background setter has written every earlier Get
}

type gocacheLoadKey struct{}

type gocacheLoad struct {
	load LoadFunc
	tags []string
}

func newGocache(s store.StoreInterface, cfg Config, rdb *redis.Client) *gocacheCache {
	ttl := cfg.TTL
	base := cache.New[[]byte](s)
	load := func(ctx context.Context, _ any) ([]byte, []store.Option, error) {
		gl := ctx.Value(gocacheLoadKey{}).(*gocacheLoad)
		v, err := gl.load(ctx)
		opts := []store.Option{store.WithExpiration(ttl)}
		if len(gl.tags) > 0 {
			opts = append(opts, store.WithTags(gl.tags))
		}
		return v, opts, err
	}
	return &gocacheCache{base: base, l: cache.NewLoadable[[]byte](load, base), rdb: rdb}
}

func (c *gocacheCache) Get(ctx context.Context, key string, load LoadFunc) ([]byte, error) {
	return c.GetTagged(ctx, key, nil, load)
}

func (c *gocacheCache) GetTagged(ctx context.Context, key string, tags []string, load LoadFunc) ([]byte, error) {
	if len(tags) > 0 {
		c.mu.Lock()
		if c.tags == nil {
			c.tags = make(map[string][]string)
		}
		c.tags[key] = tags
		c.mu.Unlock()
	}
	return c.l.Get(context.WithValue(ctx, gocacheLoadKey{}, &gocacheLoad{load, tags}), key)
}

func (c *gocacheCache) Invalidate(ctx context.Context, key string) error {
	return c.l.Delete(ctx, key)
}

func (c *gocacheCache) InvalidateTag(ctx context.Context, tag string) error {
	return c.l.Invalidate(ctx, store.WithInvalidateTags([]string{tag}))
}

// Settle waits until the background setter has written key to the store,
// and its tags' indexes, which the store writes after the value.
func (c *gocacheCache) Settle(ctx context.Context, key string) error {
	if err := c.drain(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	tags := c.tags[key]
	c.mu.Unlock()
	for {
		if _, err := c.base.Get(ctx, key); err == nil && c.indexed(ctx, key, tags) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// drain waits, once, until gocache's background setter has written every
// value Get handed it so far. Its go_cache store keeps a tag's index as a
// map it changes in place, without a lock: reading the index while the
// setter still writes is a data race (a fatal "concurrent map read and map
// write"). The setter is one goroutine taking values in order, so once a
// sentinel Get's value is in the store, every earlier one is, with its
// tags, and nothing writes the indexes any more.
func (c *gocacheCache) drain(ctx context.Context) error {
	c.mu.Lock()
	done := c.drained
	c.mu.Unlock()
	if done {
		return nil
	}
	sentinel := fmt.Sprintf("settle-sentinel-%p", c)
	if _, err := c.GetTagged(ctx, sentinel, nil, func(context.Context) ([]byte, error) { return []byte{1}, nil }); err != nil {
		return err
	}
	for {
		if _, err := c.base.Get(ctx, sentinel); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	c.mu.Lock()
	c.drained = true
	c.mu.Unlock()
	return nil
}

func (c *gocacheCache) indexed(ctx context.Context, key string, tags []string) bool {
	for _, t := range tags {
		if !c.tagged(ctx, t, key) {
			return false
		}
	}
	return true
}

func (c *gocacheCache) Close() error {
	err := c.l.Close()
	if c.rdb != nil {
		err = c.rdb.Close()
	}
	return err
}
