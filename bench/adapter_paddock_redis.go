package main

import (
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock/redisstore"
)

// paddock on Redis: redisstore with its defaults (the failover check on),
// on a go-redis client with ContextTimeoutEnabled, as redisstore.New asks.

func init() {
	register(Lib{
		Name:   "paddock-redis",
		Module: "github.com/paddockcache/paddock + redisstore",
		Redis:  true,
		Notes:  "`redisstore.New(go-redis client with ContextTimeoutEnabled)` (defaults); `NewLoader[[]byte](c, ns, TTL(TTL), Stale(Stale))` (early refresh: default `Beta(" + defaultBeta + ")`); `Get`; `Invalidate`, `InvalidateTags`",
		New: func(cfg Config) (Cache, error) {
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
			c, err := newPaddock(&closingStore{s, rdb}, cfg)
			if err != nil {
				return nil, err
			}
			return c, nil
		},
	})
}

// closingStore closes the client it was made on with the store (the Store
// does not own its client).
type closingStore struct {
	*redisstore.Store
	rdb *redis.Client
}

func (s *closingStore) Close() error {
	s.Store.Close()
	return s.rdb.Close()
}
