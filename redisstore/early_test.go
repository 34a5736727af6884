package redisstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// TestEntryWithoutLead: an entry hash without the early-refresh lead (field
// a), as a version that drew early refresh per read wrote it, is served
// and never due early. A rolling deploy thus neither drops the fleet's
// entries as corrupt nor refreshes them before their TTL ends.
func TestEntryWithoutLead(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	ctx := t.Context()
	for i, cluster := range []bool{false, true} {
		t.Run(fmt.Sprintf("cluster=%v", cluster), func(t *testing.T) {
			prefix := fmt.Sprintf("lead%d:", i)
			opts := []redisstore.Option{redisstore.Prefix(prefix)}
			if cluster {
				opts = append(opts, redisstore.ForceCluster())
			}
			s := newStore(t, client, opts...)
			const key = "k"
			early := func(token uint64) store.Lookup {
				t.Helper()
				lk, err := s.Lookup(ctx, key, store.LookupRequest{Lease: token, LeaseTTL: time.Hour, Early: true})
				if err != nil {
					t.Fatal(err)
				}
				return lk
			}
			r := early(1)
			// A lead of the whole TTL: due from the fill on.
			ok, err := s.Fill(ctx, key, &store.Fill{Value: []byte("v"), Ticket: r.Ticket, Lease: 1, TTL: time.Hour, Early: time.Hour})
			if err != nil || !ok {
				t.Fatalf("Fill = %v, %v", ok, err)
			}
			lk := early(2)
			if lk.State != store.StateFresh || !lk.Lease || lk.Entry.RefreshAt.IsZero() {
				t.Fatalf("with its lead: %+v (RefreshAt %v); want fresh, due, the lease granted", lk, lk.Entry.RefreshAt)
			}
			if err := s.Release(ctx, key, 2); err != nil {
				t.Fatal(err)
			}
			nm := layoutNames(prefix, key, "other", cluster)
			if n, err := client.HDel(ctx, nm.entry, "a").Result(); err != nil || n != 1 {
				t.Fatalf("HDEL %s a = %d, %v; want 1 field deleted", nm.entry, n, err)
			}
			lk = early(3)
			switch {
			case lk.Corrupt || lk.State != store.StateFresh || lk.Entry == nil || string(lk.Entry.Value) != "v":
				t.Fatalf("without its lead: %+v; want the fresh entry, not corrupt", lk)
			case lk.Lease || !lk.Entry.RefreshAt.IsZero():
				t.Fatalf("without its lead: Lease %v, RefreshAt %v; want never due early", lk.Lease, lk.Entry.RefreshAt)
			}
		})
	}
}
