package main

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// golang.org/x/sync/singleflight over a map: the hand-rolled fix for the
// stampede. A miss runs the load inside Group.Do, which also writes the
// map, so concurrent missers share one load. Nothing fences the write.

func init() {
	register(Lib{
		Name:   "singleflight",
		Module: "golang.org/x/sync/singleflight",
		Peer:   true,
		Notes:  "RWMutex map with TTL; a miss runs `singleflight.Group.Do(key, load-and-set)`; delete on write",
		New:    func(cfg Config) (Cache, error) { return newSFMap(cfg), nil },
	})
}

type sfMap struct {
	ttl time.Duration
	g   singleflight.Group
	mu  sync.RWMutex
	m   map[string]asideEntry
}

func newSFMap(cfg Config) *sfMap {
	return &sfMap{ttl: cfg.TTL, m: make(map[string]asideEntry, cfg.Entries)}
}

func (c *sfMap) lookup(key string) ([]byte, bool) {
	c.mu.RLock()
	e, ok := c.m[key]
	c.mu.RUnlock()
	if ok && time.Now().Before(e.expires) {
		return e.v, true
	}
	return nil, false
}

func (c *sfMap) Get(ctx context.Context, key string, load LoadFunc) ([]byte, error) {
	if v, ok := c.lookup(key); ok {
		return v, nil
	}
	v, err, _ := c.g.Do(key, func() (any, error) {
		// Checked again inside the flight: a caller that missed just as
		// the previous flight finished would otherwise load again.
		if v, ok := c.lookup(key); ok {
			return v, nil
		}
		v, err := load(ctx)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.m[key] = asideEntry{v, time.Now().Add(c.ttl)}
		c.mu.Unlock()
		return v, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

func (c *sfMap) Invalidate(_ context.Context, key string) error {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
	return nil
}

func (c *sfMap) Close() error { return nil }
