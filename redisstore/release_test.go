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
