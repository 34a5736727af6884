package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"

	chistampede "github.com/go-chi/stampede"
	memcache "github.com/goware/cachestore-mem"
	rediscache "github.com/goware/cachestore-redis"
	cachestore "github.com/goware/cachestore2"
	"github.com/redis/go-redis/v9"
)

// go-chi/stampede as its README shows it: stampede.Handler(logger,
// backend, ttl) around the handler, on cachestore-mem's
// memcache.NewBackend(1000), or on cachestore-redis. Concurrent misses of
// one URL share one render in a process (singleflight); on Redis the
// rendered page is shared by the fleet, the render is not.
//
// stampede has no purge API. What a user can do is delete the entry from
// the backend under the key the middleware uses, rebuilt from its
// internals: "stampede:http:" and the xxh3 hash (chistampede.StringToHash)
// of the lower-cased path (the query is not part of the key).

func init() {
	const module = "github.com/go-chi/stampede v0.9.1"
	registerPage(PageLib{
		Name:      "stampede-mem",
		Peer:      true,
		Coalesces: true,
		Module:    module + " + github.com/goware/cachestore-mem v0.2.2",
		Notes:     "`stampede.Handler(slog.Default(), memcache.NewBackend(1000), ttl)`",
		PurgeHow:  "none; `backend.Delete` of its key",
		New: func(cfg PageConfig) (PageCache, error) {
			b, err := memcache.NewBackend(1000)
			if err != nil {
				return nil, err
			}
			return newStampede(b, cfg), nil
		},
	})
	registerPage(PageLib{
		Name:      "stampede-redis",
		Peer:      true,
		Redis:     true,
		TCPOnly:   true,
		Coalesces: true,
		Module:    module + " + github.com/goware/cachestore-redis v0.2.1",
		Notes:     "`stampede.Handler(slog.Default(), rediscache.NewBackend(&Config{Enabled: true, Host, Port}), ttl)`",
		PurgeHow:  "none; `backend.Delete` of its key",
		New: func(cfg PageConfig) (PageCache, error) {
			if cfg.Redis == "" {
				return nil, errNoRedis
			}
			host, port, err := net.SplitHostPort(cfg.Redis)
			if err != nil {
				return nil, fmt.Errorf("cachestore-redis takes host:port: %w", err)
			}
			p, err := strconv.ParseUint(port, 10, 16)
			if err != nil {
				return nil, err
			}
			b, err := rediscache.NewBackend(&rediscache.Config{Enabled: true, Host: host, Port: uint16(p)})
			if err != nil {
				return nil, err
			}
			return newStampede(b, cfg), nil
		},
	})
}

type stampedePages struct {
	backend cachestore.Backend
	mw      func(http.Handler) http.Handler
}

func newStampede(b cachestore.Backend, cfg PageConfig) *stampedePages {
	return &stampedePages{backend: b, mw: chistampede.Handler(slog.Default(), b, cfg.TTL)}
}

func (p *stampedePages) Wrap(h http.Handler) http.Handler { return p.mw(h) }

// stampedeKey is the backend key stampede's HTTP middleware stores the
// page of path under (stampede v0.9.1, http.go and stampede.go).
func stampedeKey(path string) string {
	path, _, _ = strings.Cut(path, "?")
	return fmt.Sprintf("stampede:http:%d", chistampede.StringToHash(strings.ToLower(path)))
}

func (p *stampedePages) Purge(ctx context.Context, _ *node, path string) error {
	return p.backend.Delete(ctx, stampedeKey(path))
}

func (p *stampedePages) Close() error {
	if rc, ok := p.backend.(interface{ RedisClient() *redis.Client }); ok {
		return rc.RedisClient().Close()
	}
	return nil
}
