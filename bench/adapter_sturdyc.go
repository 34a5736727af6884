package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/viccon/sturdyc"
)

// github.com/viccon/sturdyc, configured as its README recommends for a
// hot key: GetOrFetch (in-flight tracking coalesces concurrent misses) and
// WithEarlyRefreshes, so keys in active rotation are refreshed in the
// background before they expire.

func init() {
	register(Lib{
		Name:   "sturdyc",
		Module: "github.com/viccon/sturdyc",
		Peer:   true,
		Notes: "`sturdyc.New(capacity, 10 shards, TTL+Stale, 10% eviction, WithEarlyRefreshes(0.9·TTL, TTL, TTL+Stale/2, 10ms))`; " +
			"`GetOrFetch`; `Delete` on write",
		New: func(cfg Config) (Cache, error) { return newSturdyc(cfg), nil },
	})
}

type sturdycCache struct{ c *sturdyc.Client[[]byte] }

func newSturdyc(cfg Config) *sturdycCache {
	capacity := max(cfg.Entries+cfg.Entries/5, 10_000)
	opts := []sturdyc.Option{sturdyc.WithLog(slog.New(slog.DiscardHandler))}
	ttl := cfg.TTL
	if cfg.Stale > 0 {
		// A value refreshes in the background once it is 0.9-1.0 TTL old
		// (a spread, as the README advises), and synchronously once it is
		// older than TTL + Stale/2; it is dropped after TTL + Stale.
		ttl = cfg.TTL + cfg.Stale
		opts = append(opts, sturdyc.WithEarlyRefreshes(cfg.TTL*9/10, cfg.TTL, cfg.TTL+cfg.Stale/2, 10*time.Millisecond))
	}
	return &sturdycCache{sturdyc.New[[]byte](capacity, 10, ttl, 10, opts...)}
}

func (c *sturdycCache) Get(ctx context.Context, key string, load LoadFunc) ([]byte, error) {
	return c.c.GetOrFetch(ctx, key, sturdyc.FetchFn[[]byte](load))
}

func (c *sturdycCache) Invalidate(_ context.Context, key string) error {
	c.c.Delete(key)
	return nil
}

// Close does nothing: sturdyc has no Close (its eviction goroutine runs
// for the life of the process).
func (c *sturdycCache) Close() error { return nil }
