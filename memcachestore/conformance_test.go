package memcachestore

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paddockcache/paddock/memcachestore/internal/memcachedtest"
	"github.com/paddockcache/paddock/storetest"
)

var prefixes atomic.Int64

// newTestStore returns a store over addrs with a prefix of its own and a
// clock offset that advance moves.
func newTestStore(t *testing.T, addrs []string, opts ...Option) (*Store, func(time.Duration)) {
	t.Helper()
	var off atomic.Int64
	opts = append([]Option{
		Prefix(fmt.Sprintf("t%d:", prefixes.Add(1))),
		TimeOffset(func() time.Duration { return time.Duration(off.Load()) }),
	}, opts...)
	s, err := New(addrs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s, func(d time.Duration) { off.Add(int64(d)) }
}

func TestConformance(t *testing.T) {
	srv := memcachedtest.Start(t, "-I", "1m")
	storetest.Run(t, oneServer(srv))
}

// TestConformanceBatched runs the suite with every Lookup and Fill made
// through LookupMany and FillMany.
func TestConformanceBatched(t *testing.T) {
	srv := memcachedtest.Start(t, "-I", "1m")
	storetest.RunBatched(t, oneServer(srv))
}

func oneServer(srv *memcachedtest.Server) func(*testing.T) storetest.Harness {
	return func(st *testing.T) storetest.Harness {
		s, advance := newTestStore(st, []string{srv.Socket})
		return storetest.Harness{
			Store:         s,
			Advance:       advance,
			Flush:         func() { srv.FlushAll(st) },
			TooLarge:      1 << 20,
			LosesVersions: true,
		}
	}
}

// TestConformanceServers runs the suite over three servers, where a key's
// entry, its tags' versions and the sequence live on different ones.
func TestConformanceServers(t *testing.T) {
	storetest.Run(t, threeServers(t))
}

// TestConformanceServersBatched runs the suite over three servers through
// LookupMany and FillMany, where a batch's keys live on different ones.
func TestConformanceServersBatched(t *testing.T) {
	storetest.RunBatched(t, threeServers(t))
}

func threeServers(t *testing.T) func(*testing.T) storetest.Harness {
	var addrs []string
	var srvs []*memcachedtest.Server
	for range 3 {
		srv := memcachedtest.Start(t)
		srvs = append(srvs, srv)
		addrs = append(addrs, srv.Socket)
	}
	return func(st *testing.T) storetest.Harness {
		s, advance := newTestStore(st, addrs)
		return storetest.Harness{
			Store:   s,
			Advance: advance,
			Flush: func() {
				for _, srv := range srvs {
					srv.FlushAll(st)
				}
			},
			TooLarge:      1 << 20,
			LosesVersions: true,
		}
	}
}
