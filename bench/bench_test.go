package main

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkWarmHit reads warm entries through every library and the raw
// baselines, named for benchstat:
//
//	go test -run '^$' -bench WarmHit -count 10 | tee warm.txt
//	benchstat -col /lib warm.txt      # libraries side by side
//	benchstat -col /mode warm.txt     # serial against parallel
func BenchmarkWarmHit(b *testing.B) {
	prefix := fmt.Sprintf("bt%d", time.Now().UnixNano()%1e9)
	for _, name := range warmTargetNames(ordered()) {
		b.Run("lib="+name, func(b *testing.B) {
			addr, mc := "", ""
			if isRedisTarget(name) {
				addr = requireRedis(b)
			}
			if isMemcachedTarget(name) {
				mc = requireMemcached(b)
			}
			t, err := newWarmTarget(context.Background(), name, addr, mc, prefix)
			if err != nil {
				b.Fatal(err)
			}
			defer t.close()
			b.Run("mode=serial", func(b *testing.B) { benchWarm(b, t, false) })
			b.Run("mode=parallel", func(b *testing.B) { benchWarm(b, t, true) })
		})
	}
}

// BenchmarkPageHit GETs one cached 4 KiB page through every page cache
// with a real http.Client, and the same page with no cache (lib=raw-handler),
// named for benchstat:
//
//	go test -run '^$' -bench PageHit -benchmem -count 10 | tee page.txt
//	benchstat -col /lib page.txt
//
// allocs/op and B/op count the whole process: client, server and cache.
func BenchmarkPageHit(b *testing.B) {
	prefix := fmt.Sprintf("bt%d", time.Now().UnixNano()%1e9)
	for _, name := range pageWarmTargetNames(orderedPages()) {
		b.Run("lib="+name, func(b *testing.B) {
			addr := ""
			if isRedisPage(name) {
				addr = requireRedis(b)
			}
			t, err := newPageTarget(context.Background(), name, addr, prefix)
			if err != nil {
				b.Fatal(err)
			}
			defer t.close()
			b.Run("mode=serial", func(b *testing.B) { benchPageHit(b, t, false) })
			b.Run("mode=parallel", func(b *testing.B) { benchPageHit(b, t, true) })
		})
	}
}
