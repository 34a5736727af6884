package diskstore

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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

// BenchmarkStore measures the store's calls one at a time, on a disk and
// (where /dev/shm exists) on tmpfs, which shows what the fsyncs cost: a
// hit (a read, no transaction of its own), a miss (a lookup that takes
// the lease: a write transaction), a fill (a write transaction that
// commits without fsync) and an invalidation (one that commits with
// fsync).
//
//	go test -run '^$' -bench Store -benchtime 2000x
func BenchmarkStore(b *testing.B) {
	ctx := b.Context()
	dirs := []struct{ name, dir string }{{"disk", ""}}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dirs = append(dirs, struct{ name, dir string }{"tmpfs", "/dev/shm"})
	}
	value := make([]byte, 1024)
	for _, fs := range dirs {
		b.Run("fs="+fs.name+"/op=hit", func(b *testing.B) {
			s := benchStore(b, fs.dir)
			lk, _ := s.Lookup(ctx, "k", store.LookupRequest{Lease: 1, LeaseTTL: time.Minute})
			if ok, err := s.Fill(ctx, "k", &store.Fill{Value: value, Ticket: lk.Ticket, Lease: 1, TTL: time.Hour}); !ok || err != nil {
				b.Fatal(ok, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if lk, err := s.Lookup(ctx, "k", store.LookupRequest{Lease: 2, LeaseTTL: time.Minute}); err != nil || lk.State != store.StateFresh {
					b.Fatal(lk.State, err)
				}
			}
		})
		b.Run("fs="+fs.name+"/op=miss", func(b *testing.B) {
			s := benchStore(b, fs.dir)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if lk, err := s.Lookup(ctx, strconv.Itoa(i), store.LookupRequest{Lease: 1, LeaseTTL: time.Minute}); err != nil || !lk.Lease {
					b.Fatal(err)
				}
			}
		})
		b.Run("fs="+fs.name+"/op=fill", func(b *testing.B) {
			s := benchStore(b, fs.dir)
			lk, _ := s.Lookup(ctx, "k", store.LookupRequest{})
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if ok, err := s.Fill(ctx, strconv.Itoa(i), &store.Fill{Value: value, Ticket: lk.Ticket, TTL: time.Hour}); !ok || err != nil {
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
