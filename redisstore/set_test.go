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

// testRefusedSet: a Set refused by an invalidation (of a tag only the new
// value carries, or of the key) leaves no entry of the key older than the
// Set's ticket, and keeps a newer one. With hooks.SetKeepsOld the old
// entry survives the refusal and is served fresh: the check matters.
func testRefusedSet(t *testing.T, client redis.UniversalClient, pick func(i int) (key, tag string), opts ...redisstore.Option) {
	s := newStore(t, client, append([]redisstore.Option{redisstore.Prefix(fmt.Sprintf("set%d:", setPrefixes.Add(1)))}, opts...)...)
	ctx := t.Context()
	i := 0
	names := func() (string, string) {
		i++
		return pick(i)
	}
	lookup := func(key string, tok uint64) store.Lookup {
		t.Helper()
		lk, err := s.Lookup(ctx, key, store.LookupRequest{Lease: tok, LeaseTTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return lk
	}
	fill := func(key, v string, t0 store.Ticket, tok uint64, set bool, tags ...string) bool {
		t.Helper()
		ok, err := s.Fill(ctx, key, &store.Fill{Value: []byte(v), Ticket: t0, Lease: tok, TTL: time.Hour, Set: set, Tags: tags})
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	invalidate := func(inv store.Invalidation) {
		t.Helper()
		if err := s.Invalidate(ctx, inv); err != nil {
			t.Fatal(err)
		}
	}
	// oldEntrySurvives fills key with "old", takes a Set's ticket, lets
	// refuse run the invalidation that refuses the Set, and reports
	// whether "old" is still served after the refused Set.
	oldEntrySurvives := func(key, tag string, refuse func()) bool {
		t.Helper()
		lk := lookup(key, 1)
		if !fill(key, "old", lk.Ticket, 1, false) {
			t.Fatal("the first fill was refused")
		}
		w := lookup(key, 0) // the writer's ticket, before its write
		refuse()
		if fill(key, "new", w.Ticket, 0, true, tag) {
			t.Fatal("the Set was accepted")
		}
		got := lookup(key, 0)
		return got.Entry != nil && got.State != store.StateMiss
	}

	t.Run("refused-by-tag", func(t *testing.T) {
		key, tag := names()
		if oldEntrySurvives(key, tag, func() { invalidate(store.Invalidation{Tags: []string{tag}}) }) {
			t.Fatal("a Set refused by an invalidation of its tag left the older entry servable")
		}
	})
	t.Run("refused-by-tag/switch=SetKeepsOld", func(t *testing.T) {
		hooks.SetKeepsOld.Store(true)
		defer hooks.SetKeepsOld.Store(false)
		key, tag := names()
		if !oldEntrySurvives(key, tag, func() { invalidate(store.Invalidation{Tags: []string{tag}}) }) {
			t.Fatal("with SetKeepsOld the older entry was dropped anyway: the check proves nothing")
		}
	})
	t.Run("refused-by-key", func(t *testing.T) {
		// The invalidation drops the old entry itself; what matters is
		// that a newer one is kept.
		key, tag := names()
		lk := lookup(key, 1)
		if !fill(key, "old", lk.Ticket, 1, false) {
			t.Fatal("the first fill was refused")
		}
		w := lookup(key, 0)
		invalidate(store.Invalidation{Keys: []string{key}})
		n := lookup(key, 2)
		if !n.Lease || !fill(key, "newer", n.Ticket, 2, false) {
			t.Fatalf("a load after the invalidation did not fill: %+v", n)
		}
		if fill(key, "set", w.Ticket, 0, true, tag) {
			t.Fatal("the Set was accepted")
		}
		if got := lookup(key, 0); got.State != store.StateFresh || string(got.Entry.Value) != "newer" {
			t.Fatalf("a refused Set dropped an entry newer than its ticket: %+v", got)
		}
	})
	t.Run("newer-entry-stays", func(t *testing.T) {
		key, tag := names()
		w := lookup(key, 0)
		invalidate(store.Invalidation{Tags: []string{tag}})
		n := lookup(key, 2)
		if !fill(key, "newer", n.Ticket, 2, false) {
			t.Fatal("a load after the invalidation did not fill")
		}
		if fill(key, "set", w.Ticket, 0, true, tag) {
			t.Fatal("the Set was accepted")
		}
		if got := lookup(key, 0); got.State != store.StateFresh || string(got.Entry.Value) != "newer" {
			t.Fatalf("a refused Set dropped an entry newer than its ticket: %+v", got)
		}
	})
}

var setPrefixes atomic.Int64

func TestRefusedSet(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	sameSlot := func(i int) (string, string) { k := fmt.Sprintf("k%d", i); return k, k }
	otherSlot := func(i int) (string, string) {
		k := fmt.Sprintf("k%d", i)
		for j := 0; ; j++ {
			if tag := fmt.Sprintf("t%d-%d", i, j); redisstore.SlotOf(tag) != redisstore.SlotOf(k) {
				return k, tag
			}
		}
	}
	t.Run("layout=standalone", func(t *testing.T) { testRefusedSet(t, client, otherSlot) })
	// The tag in the key's slot: the fill script refuses.
	t.Run("layout=cluster/tag=same-slot", func(t *testing.T) {
		testRefusedSet(t, client, sameSlot, redisstore.ForceCluster())
	})
	// The tag in another slot: the pre-fill check refuses.
	t.Run("layout=cluster/tag=other-slot", func(t *testing.T) {
		testRefusedSet(t, client, otherSlot, redisstore.ForceCluster())
	})
}
