package main

import (
	"context"
	"net/http"
	"strings"
	"time"

	vcache "github.com/victorspringer/http-cache"
	"github.com/victorspringer/http-cache/adapter/memory"
	vredis "github.com/victorspringer/http-cache/adapter/redis"
)

// victorspringer/http-cache as its README shows it: cache.NewClient with
// an adapter, a TTL and a refresh key, and Client.Middleware around the
// handler. The version is the newest the module proxy serves (the
// repository's later commits, with request coalescing and purge, are not
// published there). It does not coalesce: every request that misses
// renders. Its purge is the refresh key: a request for the URL with the
// key in its query drops the stored page and renders it again.
//
// The memory adapter's capacity is 10 000 entries, not the README's
// 10 000 000: the adapter allocates a map of that size up front (hundreds
// of MB per cache). The Redis adapter is go-redis v6's Ring with one
// shard (TCP only) and offers no Close: its client lives until the
// process ends. go-redis v6 cannot parse Redis 7's COMMAND reply ("got 10
// elements in COMMAND reply, wanted 6"), and its Ring asks again before
// every command, under a mutex: each Get and Set of a page costs a
// COMMAND round trip too, and a process's Redis commands run one at a
// time.

const vsRefreshKey = "opn"

func init() {
	const module = "github.com/victorspringer/http-cache v0.0.0-20240523143319-7d9f48f8ab91"
	registerPage(PageLib{
		Name:     "victorspringer-mem",
		Peer:     true,
		Module:   module,
		Notes:    "`cache.NewClient(ClientWithAdapter(memory.NewAdapter(AdapterWithAlgorithm(LRU), AdapterWithCapacity(10000))), ClientWithTTL(ttl), ClientWithRefreshKey(\"opn\"))`; `Middleware(h)`",
		PurgeHow: "refresh key: GET `path?opn`",
		New: func(cfg PageConfig) (PageCache, error) {
			a, err := memory.NewAdapter(memory.AdapterWithAlgorithm(memory.LRU), memory.AdapterWithCapacity(10000))
			if err != nil {
				return nil, err
			}
			return newVictorspringer(a, cfg.TTL)
		},
	})
	registerPage(PageLib{
		Name:     "victorspringer-redis",
		Peer:     true,
		Redis:    true,
		TCPOnly:  true,
		Module:   module + " + adapter/redis",
		Notes:    "`cache.NewClient(ClientWithAdapter(redis.NewAdapter(&RingOptions{Addrs: {\"server\": addr}})), ClientWithTTL(ttl), ClientWithRefreshKey(\"opn\"))`; `Middleware(h)`",
		PurgeHow: "refresh key: GET `path?opn`",
		New: func(cfg PageConfig) (PageCache, error) {
			if cfg.Redis == "" {
				return nil, errNoRedis
			}
			a := vredis.NewAdapter(&vredis.RingOptions{Addrs: map[string]string{"server": cfg.Redis}})
			return newVictorspringer(a, cfg.TTL)
		},
	})
}

type victorspringerPages struct {
	client *vcache.Client
}

func newVictorspringer(a vcache.Adapter, ttl time.Duration) (*victorspringerPages, error) {
	c, err := vcache.NewClient(
		vcache.ClientWithAdapter(a),
		vcache.ClientWithTTL(ttl),
		vcache.ClientWithRefreshKey(vsRefreshKey),
	)
	if err != nil {
		return nil, err
	}
	return &victorspringerPages{client: c}, nil
}

func (p *victorspringerPages) Wrap(h http.Handler) http.Handler { return p.client.Middleware(h) }

// Purge requests path with the refresh key from n, as an admin's "refresh
// this page" link would: the library drops the stored page, renders it
// again and stores the new one.
func (p *victorspringerPages) Purge(ctx context.Context, n *node, path string) error {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	_, _, err := n.get(ctx, path+sep+vsRefreshKey+"=1")
	return err
}

func (p *victorspringerPages) Close() error { return nil }
