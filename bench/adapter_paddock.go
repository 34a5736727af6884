package main

import (
	"context"
	"strconv"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/store"
)

// paddock itself: a Loader[[]byte] with TTL and Stale (stale-while-
// revalidate) and the default early refresh (paddock.DefaultBeta). The
// Redis row is in adapter_paddock_redis.go.

// defaultBeta is paddock.DefaultBeta as the configuration notes print it.
var defaultBeta = strconv.FormatFloat(paddock.DefaultBeta, 'g', -1, 64)

func init() {
	register(Lib{
		Name:   "paddock-mem",
		Module: "github.com/paddockcache/paddock + memstore",
		Notes:  "`memstore.New(MaxBytes)`; `NewLoader[[]byte](c, ns, TTL(TTL), Stale(Stale))` (early refresh: default `Beta(" + defaultBeta + ")`); `Get`; `Invalidate`, `InvalidateTags`",
		New: func(cfg Config) (Cache, error) {
			// Room for every entry the scenario holds, with bigcache's
			// per-entry header and paddock's envelope (about 100 bytes).
			need := cfg.Entries * (cfg.ValueSize + 160) * 2
			s, err := memstore.New(memstore.MaxBytes(max(need, 256<<20)))
			if err != nil {
				return nil, err
			}
			return newPaddock(s, cfg)
		},
	})
}

type paddockCache struct {
	store store.Store
	c     *paddock.Cache
	l     *paddock.Loader[[]byte]
	ns    string // the loader's namespace, for Stats
	// getOpts are given to every Get (the early scenario turns early
	// refresh off with them).
	getOpts []paddock.GetOption
}

func newPaddock(s store.Store, cfg Config, opts ...paddock.Option) (*paddockCache, error) {
	c, err := paddock.New(s, opts...)
	if err != nil {
		s.Close()
		return nil, err
	}
	lopts := []paddock.LoaderOption{paddock.TTL(cfg.TTL)}
	if cfg.Stale > 0 {
		lopts = append(lopts, paddock.Stale(cfg.Stale))
	}
	const ns = "b"
	l, err := paddock.NewLoader[[]byte](c, ns, lopts...)
	if err != nil {
		s.Close()
		return nil, err
	}
	return &paddockCache{store: s, c: c, l: l, ns: ns}, nil
}

func (c *paddockCache) Get(ctx context.Context, key string, load LoadFunc) ([]byte, error) {
	return c.l.Get(ctx, key, paddock.LoadFunc[[]byte](load), c.getOpts...)
}

func (c *paddockCache) GetTagged(ctx context.Context, key string, tags []string, load LoadFunc) ([]byte, error) {
	return c.l.Get(ctx, key, paddock.LoadFunc[[]byte](load), paddock.Tags(tags...))
}

func (c *paddockCache) Invalidate(ctx context.Context, key string) error {
	return c.l.Invalidate(ctx, key)
}

func (c *paddockCache) InvalidateTag(ctx context.Context, tag string) error {
	return c.c.InvalidateTags(ctx, tag)
}

func (c *paddockCache) Close() error {
	c.c.Close()
	return c.store.Close()
}
