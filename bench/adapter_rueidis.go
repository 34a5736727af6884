package main

import (
	"context"
	"crypto/tls"
	"net"
	"strings"

	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidisaside"
)

// github.com/redis/rueidis/rueidisaside as its README shows it: Get with a
// TTL and a load function. A miss takes a lock in Redis (SET NX GET of a
// placeholder); other callers, in any process, wait for the key to change
// through client-side caching invalidations; the fill is a script that
// writes only while the placeholder is still there, so a Del during the
// load makes the fill a no-op. It has no refresh option.

func init() {
	register(Lib{
		Name:   "rueidisaside",
		Module: "github.com/redis/rueidis/rueidisaside",
		Redis:  true,
		Peer:   true,
		Notes:  "`rueidisaside.NewClient(ClientOption{ClientOption: rueidis.ClientOption{InitAddress}})`; `Get(ctx, TTL, key, fn)`; `Del` on write",
		New: func(cfg Config) (Cache, error) {
			if cfg.Redis == "" {
				return nil, errNoRedis
			}
			opt := rueidis.ClientOption{InitAddress: []string{cfg.Redis}}
			if strings.HasPrefix(cfg.Redis, "/") {
				opt.DialCtxFn = func(ctx context.Context, _ string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
					return d.DialContext(ctx, "unix", cfg.Redis)
				}
			}
			c, err := rueidisaside.NewClient(rueidisaside.ClientOption{ClientOption: opt})
			if err != nil {
				return nil, err
			}
			return &rueidisCache{c: c, cfg: cfg}, nil
		},
	})
}

type rueidisCache struct {
	c   rueidisaside.CacheAsideClient
	cfg Config
}

func (c *rueidisCache) Get(ctx context.Context, key string, load LoadFunc) ([]byte, error) {
	s, err := c.c.Get(ctx, c.cfg.TTL, key, func(ctx context.Context, _ string) (string, error) {
		b, err := load(ctx)
		if err != nil {
			return "", err
		}
		return string(b), nil
	})
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

func (c *rueidisCache) Invalidate(ctx context.Context, key string) error {
	return c.c.Del(ctx, key)
}

func (c *rueidisCache) Close() error {
	c.c.Close()
	return nil
}
