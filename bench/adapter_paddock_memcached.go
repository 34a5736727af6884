package main

import (
	"github.com/paddockcache/paddock/memcachestore"
)

// paddock on memcached: memcachestore with its defaults, on one server.

func init() {
	register(Lib{
		Name:      "paddock-memcached",
		Module:    "github.com/paddockcache/paddock + memcachestore",
		Memcached: true,
		Notes:     "`memcachestore.New([]string{addr})` (defaults); `NewLoader[[]byte](c, ns, TTL(TTL), Stale(Stale))` (early refresh: default `Beta(" + defaultBeta + ")`); `Get`; `Invalidate`, `InvalidateTags`",
		New: func(cfg Config) (Cache, error) {
			if cfg.Memcached == "" {
				return nil, errNoMemcached
			}
			s, err := memcachestore.New([]string{cfg.Memcached})
			if err != nil {
				return nil, err
			}
			return newPaddock(s, cfg)
		},
	})
}
