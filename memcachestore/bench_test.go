package memcachestore

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/memcachestore/internal/memcachedtest"
	"github.com/paddockcache/paddock/store"
)

// BenchmarkMemcached measures paddock on one local memcached (unix socket)
// next to a plain meta get of the same value, as redisstore's
// BenchmarkRedis does on Redis:
//
//	go test -run xxx -bench . -benchmem -count 6 ./ | tee new.txt
//	benchstat -col /impl new.txt
//
// op=hit is a warm Get of a 1 KiB value (one pipeline: the sequence, the
// entry, the key's versions); impl=store-lookup is the Store's Lookup
// alone. op=miss is a Get of a cold key: the lookup, the lease, the fill
// (two pipelines) and the lease's release.
func BenchmarkMemcached(b *testing.B) {
	srv := memcachedtest.Start(b)
	ctx := context.Background()
	value := strings.Repeat("x", 1024)
	s, err := New([]string{srv.Socket}, Prefix("bench:"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	b.Run("op=hit/impl=raw-get", func(b *testing.B) {
		n := s.nodes[0]
		if err := n.do(ctx, []*op{set("raw", []byte(value), "T0")}); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			o := get("raw", "v")
			if err := n.do(ctx, []*op{o}); err != nil || len(o.value) != len(value) {
				b.Fatal(err, o.status)
			}
		}
	})
	c, err := paddock.New(s)
	if err != nil {
		b.Fatal(err)
	}
	l, err := paddock.NewLoader[string](c, "bench", paddock.Beta(0), paddock.TTL(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	load := func(context.Context) (string, error) { return value, nil }
	b.Run("op=hit/impl=paddock", func(b *testing.B) {
		if _, err := l.Get(ctx, "k", load); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if v, err := l.Get(ctx, "k", load); err != nil || len(v) != len(value) {
				b.Fatal(v, err)
			}
		}
	})
	b.Run("op=hit/impl=store-lookup", func(b *testing.B) {
		key := l.Key("k")
		b.ReportAllocs()
		for b.Loop() {
			if r, err := s.Lookup(ctx, key, store.LookupRequest{}); err != nil || r.State != store.StateFresh {
				b.Fatal(r.State, err)
			}
		}
	})
	b.Run("op=miss/impl=paddock", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if _, err := l.Get(ctx, "miss"+strconv.Itoa(i), load); err != nil {
				b.Fatal(err)
			}
		}
	})
}
