package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/allegro/bigcache/v3"

	"github.com/paddockcache/paddock/internal/benchtest"
	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/store"
)

// BenchmarkInvalidateTags shows that invalidating a tag costs the same
// however many entries carry it: one version is written, no entry is
// visited. Compare the entries=... rows with benchstat -col /entries.
func BenchmarkInvalidateTags(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{10, 1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			s, err := memstore.New(memstore.MaxBytes(1 << 30))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			value := make([]byte, 16)
			for i := range n {
				key := fmt.Sprintf("p:%d", i)
				lk, err := s.Lookup(ctx, key, store.LookupRequest{})
				if err != nil {
					b.Fatal(err)
				}
				ok, err := s.Fill(ctx, key, &store.Fill{Value: value, Tags: []string{"hot"}, Ticket: lk.Ticket, TTL: time.Hour})
				if err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
			inv := store.Invalidation{Tags: []string{"hot"}}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := s.Invalidate(ctx, inv); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// The entries are all invalidated, without being visited.
			if lk, _ := s.Lookup(ctx, "p:0", store.LookupRequest{}); lk.State != store.StateMiss {
				b.Fatalf("entry still %v after its tag was invalidated", lk.State)
			}
		})
	}
}

// BenchmarkMissVs is a miss's store work, a Lookup that takes the lease
// and the Fill of a 1 KiB value, next to a bigcache configured as a
// default Store configures its own doing a Get and a Set of the same
// keys: blocks of 256 keys of each in turn (the order reversed every other
// round), both first filled past their 256 MiB, so that every miss evicts
// an entry. It reports each one's time per miss and their ratio; the
// difference is the store's own share of a Cache's miss (its stripe lock,
// the lease, the fence's version checks, the envelope).
func BenchmarkMissVs(b *testing.B) {
	ctx := context.Background()
	s, err := memstore.New()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	bc, err := bigcache.New(ctx, memstore.DefaultBigcacheConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bc.Close() })
	value := make([]byte, 1024)
	const block = 256
	keys := make([]string, block)
	i := 0
	next := func() {
		for j := range keys {
			keys[j] = "miss:m" + strconv.Itoa(i)
			i++
		}
	}
	runs := []func(){
		func() {
			for _, k := range keys {
				lk, err := s.Lookup(ctx, k, store.LookupRequest{Lease: 7, LeaseTTL: time.Minute})
				if err != nil || !lk.Lease {
					b.Fatalf("Lookup(%s) = %+v, %v, want the lease", k, lk, err)
				}
				if ok, err := s.Fill(ctx, k, &store.Fill{Value: value, Ticket: lk.Ticket, Lease: 7, TTL: time.Hour}); !ok || err != nil {
					b.Fatalf("Fill(%s) = %v, %v", k, ok, err)
				}
			}
		},
		func() {
			for _, k := range keys {
				if _, err := bc.Get(k); !errors.Is(err, bigcache.ErrEntryNotFound) {
					b.Fatalf("Get(%s): %v, want a miss", k, err)
				}
				if err := bc.Set(k, value); err != nil {
					b.Fatal(err)
				}
			}
		},
	}
	for range 3 << 18 / 2 / block { // 1.5 × 256 Ki entries of 1 KiB
		next()
		runs[0]()
		runs[1]()
	}
	spent, n := benchtest.Interleave(b, next, runs...)
	misses := float64(n * block)
	b.ReportMetric(float64(spent[0].Nanoseconds())/misses, "memstore-ns/miss")
	b.ReportMetric(float64(spent[1].Nanoseconds())/misses, "bigcache-ns/miss")
	b.ReportMetric(float64(spent[0])/float64(spent[1]), "memstore/bigcache")
}
