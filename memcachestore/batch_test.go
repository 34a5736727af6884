package memcachestore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/memcachestore/internal/memcachedtest"
)

// TestGetManyRoundTrips: a GetMany of twenty keys sends each server at
// most the pipelines of its stages, whatever the number of keys: cold, the
// lookups, the leases, the fills' check, write, post-write check and the
// leases' release (the write and its check one pipeline on one server);
// warm, the lookups and their tags' versions.
func TestGetManyRoundTrips(t *testing.T) {
	for _, servers := range []int{1, 3} {
		t.Run(fmt.Sprintf("servers=%d", servers), func(t *testing.T) {
			var addrs []string
			for range servers {
				addrs = append(addrs, memcachedtest.Start(t).Socket)
			}
			s, _ := newTestStore(t, addrs)
			defer s.Close()
			c, err := paddock.New(s)
			if err != nil {
				t.Fatal(err)
			}
			l, err := paddock.NewLoader[string](c, "rt", paddock.TTL(time.Hour), paddock.Beta(0))
			if err != nil {
				t.Fatal(err)
			}
			// Each server's pipelines for a GetMany of n keys, and the
			// most any one server got.
			getMany := func(n int, prefix string) int64 {
				keys := make([]string, n)
				for i := range keys {
					keys[i] = fmt.Sprintf("%s%d", prefix, i)
				}
				before := make([]int64, len(s.nodes))
				for i, nd := range s.nodes {
					before[i] = nd.pipelines.Load()
				}
				got, err := l.GetMany(t.Context(), keys, func(ctx context.Context, keys []string) (map[string]string, error) {
					paddock.Tag(ctx, "all")
					m := make(map[string]string, len(keys))
					for _, k := range keys {
						m[k] = "v:" + k
					}
					return m, nil
				})
				if err != nil || len(got) != n {
					t.Fatalf("GetMany of %d keys: %d values, %v", n, len(got), err)
				}
				var most int64
				for i, nd := range s.nodes {
					most = max(most, nd.pipelines.Load()-before[i])
				}
				return most
			}
			cold, warm := int64(6), int64(2)
			if servers == 1 {
				cold = 5
			}
			if got := getMany(20, "k"); got > cold {
				t.Errorf("cold: a server got %d pipelines for 20 keys, want at most %d", got, cold)
			}
			if got := getMany(20, "k"); got > warm {
				t.Errorf("warm: a server got %d pipelines for 20 keys, want at most %d", got, warm)
			}
		})
	}
}
