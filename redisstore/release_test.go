package redisstore_test

import (
	"testing"
	"time"

	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// TestReleasedTokenStaysRefused: a lookup with a released lease's token
// that reaches Redis after the release (a request delayed past its
// caller's deadline) is not granted the lease, and the key stays free for
// every other token.
func TestReleasedTokenStaysRefused(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	t.Run("via=direct", func(t *testing.T) {
		testReleasedTokenStaysRefused(t, direct(newStore(t, client, redisstore.Prefix("direct:"))))
	})
	t.Run("via=batch", func(t *testing.T) {
		testReleasedTokenStaysRefused(t, batched(newStore(t, client, redisstore.Prefix("batch:"))))
	})
}

func testReleasedTokenStaysRefused(t *testing.T, s store.Store) {
	ctx := t.Context()
	req := func(token uint64) store.LookupRequest {
		return store.LookupRequest{Lease: token, LeaseTTL: time.Minute}
	}
	if lk, err := s.Lookup(ctx, "rel:k", req(7)); err != nil || !lk.Lease {
		t.Fatalf("first lookup: %+v, %v", lk, err)
	}
	if err := s.Release(ctx, "rel:k", 7); err != nil {
		t.Fatal(err)
	}
	// The late duplicate of token 7's lookup.
	if lk, err := s.Lookup(ctx, "rel:k", req(7)); err != nil || lk.Lease || lk.Held || lk.Corrupt {
		t.Errorf("late lookup of a released token: %+v, %v; want no lease, not held", lk, err)
	}
	if lk, err := s.Lookup(ctx, "rel:k", req(8)); err != nil || !lk.Lease {
		t.Errorf("another token after the release: %+v, %v; want the lease", lk, err)
	}
	// Releasing a key that no one holds refuses the token too: the
	// release can overtake the lookup it gives up.
	if err := s.Release(ctx, "rel:k2", 9); err != nil {
		t.Fatal(err)
	}
	if lk, err := s.Lookup(ctx, "rel:k2", req(9)); err != nil || lk.Lease {
		t.Errorf("lookup after its own release overtook it: %+v, %v", lk, err)
	}
	// A release by a token that does not hold the lease changes nothing.
	if err := s.Release(ctx, "rel:k", 7); err != nil {
		t.Fatal(err)
	}
	if lk, err := s.Lookup(ctx, "rel:k", req(10)); err != nil || !lk.Held {
		t.Errorf("lease of token 8 after token 7's second release: %+v, %v; want held", lk, err)
	}
}

// TestBrokenLease: an invalidation of a key breaks its lease but not a
// released token's tombstone, and leaves none of its own. The tombstone
// still refuses the late lookup it was left for. The broken lease's holder
// has not given up: a lookup with its token (a Cache that lost a lookup's
// reply takes the lease back so) is granted a new lease, with a ticket
// newer than the invalidation, and may fill.
func TestBrokenLease(t *testing.T) {
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
			s := newStore(t, client, append([]redisstore.Option{redisstore.Prefix("broken-" + layout.name + ":")}, layout.opts...)...)
			ctx := t.Context()
			lookup := func(key string, token uint64) store.Lookup {
				t.Helper()
				lk, err := s.Lookup(ctx, key, store.LookupRequest{Lease: token, LeaseTTL: time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				return lk
			}
			invalidate := func(key string) {
				t.Helper()
				if err := s.Invalidate(ctx, store.Invalidation{Keys: []string{key}}); err != nil {
					t.Fatal(err)
				}
			}

			// A release that overtook its lookup, then an invalidation.
			if err := s.Release(ctx, "tomb", 9); err != nil {
				t.Fatal(err)
			}
			invalidate("tomb")
			if lk := lookup("tomb", 9); lk.Lease || lk.Held {
				t.Errorf("late lookup of a released token after an invalidation: %+v; want no lease, not held", lk)
			}
			if lk := lookup("tomb", 10); !lk.Lease {
				t.Errorf("another token: %+v, want the lease", lk)
			}

			// The broken lease's holder looks up again with its token.
			old := lookup("held", 1)
			if !old.Lease {
				t.Fatalf("first lookup: %+v, want the lease", old)
			}
			invalidate("held")
			lk := lookup("held", 1)
			if !lk.Lease || lk.Ticket.Seq <= old.Ticket.Seq {
				t.Fatalf("holder's lookup after the break: %+v, want the lease with a ticket newer than %+v", lk, old.Ticket)
			}
			ok, err := s.Fill(ctx, "held", &store.Fill{Value: []byte("v"), Ticket: lk.Ticket, Lease: 1, TTL: time.Minute})
			if err != nil || !ok {
				t.Fatalf("fill with the new ticket: %v, %v; want accepted", ok, err)
			}

			// A doomed holder that releases a broken lease nobody took
			// refuses only its own token.
			if !lookup("free", 3).Lease {
				t.Fatal("no lease")
			}
			invalidate("free")
			if err := s.Release(ctx, "free", 3); err != nil {
				t.Fatal(err)
			}
			if lk := lookup("free", 4); !lk.Lease {
				t.Errorf("another token after the doomed holder's release: %+v, want the lease", lk)
			}
		})
	}
}
