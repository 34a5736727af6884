package main

import (
	"context"

	"github.com/maypok86/otter/v2"
)

// github.com/maypok86/otter/v2 with its loader: Cache.Get(ctx, key,
// Loader) coalesces concurrent loads of a key, ExpiryCalculator drops
// entries and RefreshCalculator refreshes them in the background while the
// old value is served (the options its README shows for a loading cache).

func init() {
	register(Lib{
		Name:   "otter",
		Module: "github.com/maypok86/otter/v2",
		Peer:   true,
		Notes: "`otter.New(&Options{MaximumSize, ExpiryCalculator: ExpiryWriting(TTL+Stale), RefreshCalculator: RefreshWriting(TTL)})`; " +
			"`Cache.Get(ctx, key, LoaderFunc)`; `Invalidate` on write",
		New: newOtter,
	})
}

type otterCache struct{ c *otter.Cache[string, []byte] }

func newOtter(cfg Config) (Cache, error) {
	o := &otter.Options[string, []byte]{
		MaximumSize:      max(cfg.Entries+cfg.Entries/5, 10_000),
		InitialCapacity:  cfg.Entries,
		ExpiryCalculator: otter.ExpiryWriting[string, []byte](cfg.TTL + cfg.Stale),
	}
	if cfg.Stale > 0 {
		o.RefreshCalculator = otter.RefreshWriting[string, []byte](cfg.TTL)
	}
	c, err := otter.New(o)
	if err != nil {
		return nil, err
	}
	return &otterCache{c}, nil
}

func (c *otterCache) Get(ctx context.Context, key string, load LoadFunc) ([]byte, error) {
	return c.c.Get(ctx, key, otterLoader{load})
}

// otterLoader is an otter.Loader. Being one func, it fits in an interface
// without an allocation, as a loader a program defines once would.
type otterLoader struct{ load LoadFunc }

func (l otterLoader) Load(ctx context.Context, _ string) ([]byte, error) { return l.load(ctx) }

func (l otterLoader) Reload(ctx context.Context, _ string, _ []byte) ([]byte, error) {
	return l.load(ctx)
}

func (c *otterCache) Invalidate(_ context.Context, key string) error {
	c.c.Invalidate(key)
	return nil
}

func (c *otterCache) Close() error {
	c.c.StopAllGoroutines()
	return nil
}
