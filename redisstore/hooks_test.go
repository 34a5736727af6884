package redisstore_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// fencedFillAccepted takes a ticket for key, invalidates stale (one of
// tags), and reports whether a fill with the ticket and tags is accepted:
// it must not be, unless a switch turned a check off.
func fencedFillAccepted(t *testing.T, s store.Store, key string, tags []string, stale string) bool {
	t.Helper()
	ctx := t.Context()
	lk, err := s.Lookup(ctx, key, store.LookupRequest{Lease: 1, LeaseTTL: time.Hour})
	if err != nil || !lk.Lease {
		t.Fatalf("Lookup: %+v, %v", lk, err)
	}
	if err := s.Invalidate(ctx, store.Invalidation{Tags: []string{stale}}); err != nil {
		t.Fatal(err)
	}
	ok, err := s.Fill(ctx, key, &store.Fill{Value: []byte("v"), Ticket: lk.Ticket, Lease: 1, TTL: time.Hour, Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

var hookPrefixes atomic.Int64

// testSwitch checks a fill that the switch's mechanism must refuse:
// refused with the switch off, accepted with it on.
// tags gives the fill's tags for a key and the one to invalidate.
// via gives the store the checks run on (see direct and batched).
func testSwitch(t *testing.T, client redis.UniversalClient, sw *atomic.Bool, via func(*redisstore.Store) store.Store,
	tags func(key string) ([]string, string), opts ...redisstore.Option) {
	s := via(newStore(t, client, append([]redisstore.Option{redisstore.Prefix(fmt.Sprintf("sw%d:", hookPrefixes.Add(1)))}, opts...)...))
	tt, stale := tags("off")
	if fencedFillAccepted(t, s, "off", tt, stale) {
		t.Fatal("with the switch off, a fill whose ticket predates the invalidation of one of its tags was accepted")
	}
	sw.Store(true)
	defer sw.Store(false)
	tt, stale = tags("on")
	if !fencedFillAccepted(t, s, "on", tt, stale) {
		t.Fatal("with the switch on, the fill was still refused: the mechanism it turns off is not the one that refuses")
	}
}

// otherSlotTag returns a tag whose slot is not key's.
func otherSlotTag(key, prefix string) string {
	for j := 0; ; j++ {
		if tag := fmt.Sprintf("%s%d", prefix, j); redisstore.SlotOf(tag) != redisstore.SlotOf(key) {
			return tag
		}
	}
}

func TestSwitches(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	for _, v := range []struct {
		name string
		via  func(*redisstore.Store) store.Store
	}{{"direct", direct}, {"batch", batched}} {
		// FillFirstTagOnly: the second tag's invalidation is not seen.
		t.Run("FillFirstTagOnly/layout=standalone/via="+v.name, func(t *testing.T) {
			testSwitch(t, client, &hooks.FillFirstTagOnly, v.via, func(string) ([]string, string) { return []string{"a", "b"}, "b" })
		})
		t.Run("FillFirstTagOnly/layout=cluster/via="+v.name, func(t *testing.T) {
			// The first tag in the key's slot (named like the key), the
			// second in another: its pre-check is skipped too.
			testSwitch(t, client, &hooks.FillFirstTagOnly, v.via, func(key string) ([]string, string) {
				b := otherSlotTag(key, "b")
				return []string{key, b}, b
			}, redisstore.ForceCluster())
		})
		// NoClusterPreFill: a tag in another slot is checked only by the
		// pre-check, before the fill's script.
		t.Run("NoClusterPreFill/layout=cluster/via="+v.name, func(t *testing.T) {
			testSwitch(t, client, &hooks.NoClusterPreFill, v.via, func(key string) ([]string, string) {
				r := otherSlotTag(key, "r")
				return []string{r}, r
			}, redisstore.ForceCluster())
		})
	}
}

// TestLeaseOutlivesInvalidation checks the switch that keeps a key's lease
// across an invalidation of the key: off, the invalidation breaks it and
// another token is granted the lease; on, the other token is held. Hard
// and soft, standalone and in the Cluster layout (whose invalidation
// writes each slot in its own script).
func TestLeaseOutlivesInvalidation(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	for _, layout := range []struct {
		name string
		opts []redisstore.Option
	}{
		{"standalone", nil},
		{"cluster", []redisstore.Option{redisstore.ForceCluster()}},
	} {
		t.Run("layout="+layout.name, func(t *testing.T) {
			s := newStore(t, client, append([]redisstore.Option{redisstore.Prefix(fmt.Sprintf("sw%d:", hookPrefixes.Add(1)))}, layout.opts...)...)
			ctx := t.Context()
			lookup := func(key string, token uint64) store.Lookup {
				t.Helper()
				lk, err := s.Lookup(ctx, key, store.LookupRequest{Lease: token, LeaseTTL: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				return lk
			}
			for _, on := range []bool{false, true} {
				for _, soft := range []bool{false, true} {
					key := fmt.Sprintf("k-%v-%v", on, soft)
					if lk := lookup(key, 1); !lk.Lease {
						t.Fatalf("first lookup: %+v, want the lease", lk)
					}
					hooks.LeaseOutlivesInvalidation.Store(on)
					err := s.Invalidate(ctx, store.Invalidation{Keys: []string{key}, Soft: soft})
					hooks.LeaseOutlivesInvalidation.Store(false)
					if err != nil {
						t.Fatal(err)
					}
					lk := lookup(key, 2)
					if lk.Lease == on || lk.Held != on {
						t.Fatalf("switch %v, soft %v: after Invalidate, another token's lookup has Lease %v, Held %v; want Lease %v, Held %v",
							on, soft, lk.Lease, lk.Held, !on, on)
					}
				}
			}
		})
	}
}
