package diskstore

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/paddockcache/paddock/store"
)

func benchStore(b *testing.B, dir string) *Store {
	if dir == "" {
		dir = b.TempDir()
	}
	s, err := Open(filepath.Join(dir, fmt.Sprintf("bench-%d.db", time.Now().UnixNano())))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkStore measures the store's calls one at a time: a hit, a miss
// that takes the lease, a fill, an invalidation (a durable commit).
func BenchmarkStore(b *testing.B) {
	ctx := b.Context()
	for _, fs := range []struct{ name, dir string }{{"disk", ""}, {"tmpfs", "/dev/shm"}} {
		b.Run("fs="+fs.name+"/op=hit", func(b *testing.B) {
			s := benchStore(b, fs.dir)
			lk, _ := s.Lookup(ctx, "k", store.LookupRequest{Lease: 1, LeaseTTL: time.Minute})
			if ok, err := s.Fill(ctx, "k", &store.Fill{Value: make([]byte, 512), Ticket: lk.Ticket, Lease: 1, TTL: time.Hour}); !ok || err != nil {
				b.Fatal(ok, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if lk, err := s.Lookup(ctx, "k", store.LookupRequest{Lease: 2, LeaseTTL: time.Minute}); err != nil || lk.State != store.StateFresh {
					b.Fatal(lk.State, err)
				}
			}
		})
		b.Run("fs="+fs.name+"/op=missfill", func(b *testing.B) {
			s := benchStore(b, fs.dir)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				key := fmt.Sprint("k", i)
				lk, err := s.Lookup(ctx, key, store.LookupRequest{Lease: 1, LeaseTTL: time.Minute})
				if err != nil || !lk.Lease {
					b.Fatal(err)
				}
				if ok, err := s.Fill(ctx, key, &store.Fill{Value: make([]byte, 512), Ticket: lk.Ticket, Lease: 1, TTL: time.Hour}); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
		b.Run("fs="+fs.name+"/op=invalidate", func(b *testing.B) {
			s := benchStore(b, fs.dir)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Invalidate(ctx, store.Invalidation{Keys: []string{"k"}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
