package memstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

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
