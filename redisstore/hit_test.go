package redisstore_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// TestHitPath checks, call by call, which lookups the hit path (one MGET)
// answers and which it leaves to the lookup script: a warm hit is one
// MGET; anything the script must decide (stale, soft-invalidated, a tag
// invalidated, due for early refresh, a refresh asked for) is the MGET and
// the script, and the script's answer is what it was before the hit path.
func TestHitPath(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	raw := srv.Client(t, nil)
	rec := new(calls)
	client.AddHook(rec)
	var off offset
	s := newStore(t, client, redisstore.Prefix("hp:"), redisstore.TimeOffset(off.get))
	ctx := t.Context()
	warm(t, s)
	lookup := func(key string, req store.LookupRequest) store.Lookup {
		t.Helper()
		lk, err := s.Lookup(ctx, key, req)
		if err != nil {
			t.Fatal(err)
		}
		return lk
	}
	fill := func(key, v string, f store.Fill) {
		t.Helper()
		r := lookup(key, store.LookupRequest{Lease: 1, LeaseTTL: time.Minute})
		if !r.Lease {
			t.Fatalf("%s: no lease: %+v", key, r)
		}
		f.Value, f.Ticket, f.Lease = []byte(v), r.Ticket, 1
		if ok, err := s.Fill(ctx, key, &f); !ok || err != nil {
			t.Fatalf("fill %s: %v, %v", key, ok, err)
		}
		rec.take()
	}
	want := func(what string, lk store.Lookup, state store.State, lease, held bool, calls ...string) {
		t.Helper()
		if lk.State != state || lk.Lease != lease || lk.Held != held {
			t.Errorf("%s: %v lease %v held %v, want %v lease %v held %v", what, lk.State, lk.Lease, lk.Held, state, lease, held)
		}
		wantCalls(t, what, rec.take(), calls...)
	}
	req := func(tok uint64) store.LookupRequest { return store.LookupRequest{Lease: tok, LeaseTTL: time.Minute} }
	early := func(tok uint64) store.LookupRequest {
		return store.LookupRequest{Lease: tok, LeaseTTL: time.Minute, Early: true}
	}

	fill("a", "v", store.Fill{TTL: time.Hour, Stale: time.Hour, Tags: []string{"hp-t"}})
	want("warm hit", lookup("a", req(2)), store.StateFresh, false, false, "mget")
	want("warm hit, read only", lookup("a", store.LookupRequest{}), store.StateFresh, false, false, "mget")
	want("a refresh asked for", lookup("a", store.LookupRequest{Lease: 2, LeaseTTL: time.Minute, Refresh: true}),
		store.StateFresh, true, false, "lookup")
	if err := s.Release(ctx, "a", 2); err != nil {
		t.Fatal(err)
	}
	rec.take()

	// The fresh marker evicted: the script serves the entry and puts the
	// marker back.
	if err := raw.Del(ctx, "hp:{a}:f").Err(); err != nil {
		t.Fatal(err)
	}
	want("marker gone", lookup("a", req(3)), store.StateFresh, false, false, "mget", "lookup")
	want("marker back", lookup("a", req(3)), store.StateFresh, false, false, "mget")

	// A soft invalidation of the key, then of a tag, then a hard one of
	// the tag.
	if err := s.Invalidate(ctx, store.Invalidation{Keys: []string{"a"}, Soft: true}); err != nil {
		t.Fatal(err)
	}
	rec.take()
	want("soft-invalidated", lookup("a", req(4)), store.StateStale, true, false, "mget", "lookup")
	_ = s.Release(ctx, "a", 4)
	fill("b", "v", store.Fill{TTL: time.Hour, Stale: time.Hour, Tags: []string{"hp-t"}})
	want("b warm", lookup("b", req(2)), store.StateFresh, false, false, "mget")
	if err := s.Invalidate(ctx, store.Invalidation{Tags: []string{"hp-t"}, Soft: true}); err != nil {
		t.Fatal(err)
	}
	rec.take()
	want("tag soft-invalidated", lookup("b", req(5)), store.StateStale, true, false, "mget", "lookup")
	_ = s.Release(ctx, "b", 5)
	if err := s.Invalidate(ctx, store.Invalidation{Tags: []string{"hp-t"}}); err != nil {
		t.Fatal(err)
	}
	rec.take()
	want("tag invalidated", lookup("b", req(6)), store.StateMiss, true, false, "mget", "lookup")
	_ = s.Release(ctx, "b", 6)
	rec.take()

	// Past its freshness by the store's clock (the test offset), while its
	// marker still lives in Redis: not a hit.
	fill("c", "v", store.Fill{TTL: time.Hour, Stale: time.Hour})
	off.advance(time.Hour + time.Second)
	want("stale by the store's clock", lookup("c", req(7)), store.StateStale, true, false, "mget", "lookup")
	_ = s.Release(ctx, "c", 7)
	rec.take()

	// Early refresh: the marker lasts until the entry's early-refresh
	// instant; then the first lookup asking for early refresh takes the
	// lease through the script, and while the refresh runs the others are
	// answered "held" by the MGET alone.
	fill("d", "v", store.Fill{TTL: time.Hour, Early: 10 * time.Minute})
	want("before the instant", lookup("d", early(8)), store.StateFresh, false, false, "mget")
	off.advance(51 * time.Minute)
	want("due: the refresh's lease", lookup("d", early(8)), store.StateFresh, true, false, "mget", "lookup")
	want("while it runs", lookup("d", early(9)), store.StateFresh, false, true, "mget")
	want("while it runs, not asking", lookup("d", req(9)), store.StateFresh, false, false, "mget")
	want("the holder renews", lookup("d", early(8)), store.StateFresh, true, false, "mget", "lookup")
	if err := s.Release(ctx, "d", 8); err != nil {
		t.Fatal(err)
	}
	rec.take()
	want("released: due again", lookup("d", early(10)), store.StateFresh, true, false, "mget", "lookup")
	_ = s.Release(ctx, "d", 10)
	rec.take()

	// A Store that has not seen a key's tags yet reads the entry, learns
	// them from the script, and hits from then on.
	fill("e", "v", store.Fill{TTL: time.Hour, Tags: []string{"hp-x", "hp-y"}})
	other := newStore(t, client, redisstore.Prefix("hp:"), redisstore.TimeOffset(off.get))
	if err := redisstore.CheckServers(ctx, other); err != nil {
		t.Fatal(err)
	}
	rec.take()
	lk, err := other.Lookup(ctx, "e", req(11))
	if err != nil {
		t.Fatal(err)
	}
	want("tags unknown", lk, store.StateFresh, false, false, "mget", "lookup")
	lk, err = other.Lookup(ctx, "e", req(11))
	if err != nil {
		t.Fatal(err)
	}
	want("tags known", lk, store.StateFresh, false, false, "mget")
	if got := lk.Entry.Tags; len(got) != 2 || got[0] != "hp-x" || got[1] != "hp-y" {
		t.Fatalf("tags %q", got)
	}
}

// TestHitNow: the Now of a hit served by MGET is a reading of the server's
// clock: not before the server's TIME read just before the lookup, not
// long after the one read just after, and with the test offset added.
func TestHitNow(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	rec := new(calls)
	client.AddHook(rec)
	var off offset
	off.advance(time.Hour)
	s := newStore(t, client, redisstore.Prefix("now:"), redisstore.TimeOffset(off.get))
	ctx := t.Context()
	warm(t, s)
	lk, err := s.Lookup(ctx, "k", store.LookupRequest{Lease: 1, LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Fill(ctx, "k", &store.Fill{Value: []byte("v"), Ticket: lk.Ticket, Lease: 1, TTL: time.Hour}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	for range 5 {
		before, err := client.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		rec.take()
		lk, err := s.Lookup(ctx, "k", store.LookupRequest{})
		if err != nil {
			t.Fatal(err)
		}
		wantCalls(t, "hit", rec.take(), "mget")
		after, err := client.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		// TIME has µs precision; Now is the server's clock plus the
		// offset, never behind it.
		lo, hi := before.Add(time.Hour).Truncate(time.Microsecond), after.Add(time.Hour+time.Second)
		if lk.Now.Before(lo) || lk.Now.After(hi) {
			t.Fatalf("Now %v, want in [%v, %v] (the server's clock, plus the offset)", lk.Now, lo, hi)
		}
	}
}

// TestHitAllocs bounds what a warm hit allocates in the process, with a
// margin: the Store's Lookup and a Loader's Get through a Cache on it (no
// hot tier).
func TestHitAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	s := newStore(t, client, redisstore.Prefix("alloc:"))
	ctx := context.Background()
	warm(t, s)
	lk, err := s.Lookup(ctx, "k", store.LookupRequest{Lease: 1, LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	value := strings.Repeat("x", 1024)
	if ok, err := s.Fill(ctx, "k", &store.Fill{Value: []byte(value), Ticket: lk.Ticket, Lease: 1, TTL: time.Hour}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	req := store.LookupRequest{Lease: 2, LeaseTTL: time.Minute}
	n := testing.AllocsPerRun(200, func() {
		if lk, err := s.Lookup(ctx, "k", req); err != nil || lk.State != store.StateFresh {
			t.Fatal(lk.State, err)
		}
	})
	t.Logf("Store.Lookup, warm hit: %.0f allocations", n)
	if n > 11 {
		t.Errorf("Store.Lookup of a warm hit: %.1f allocations, want at most 11 (9 measured)", n)
	}
	l := newLoader(t, newCache(t, s), "l", paddock.Beta(0), paddock.TTL(time.Hour))
	load := func(context.Context) (string, error) { return value, nil }
	for range 2 {
		if _, err := l.Get(ctx, "k", load); err != nil {
			t.Fatal(err)
		}
	}
	n = testing.AllocsPerRun(200, func() {
		if v, err := l.Get(ctx, "k", load); err != nil || len(v) != len(value) {
			t.Fatal(len(v), err)
		}
	})
	t.Logf("Loader.Get, warm hit: %.0f allocations", n)
	if n > 18 {
		t.Errorf("Loader.Get of a warm hit: %.1f allocations, want at most 18 (16 measured)", n)
	}
}

// TestReadOnlyClusterClient: a Cluster client that reads from replicas
// would send a hit's MGET to one, which may lag: its lookups are scripts,
// which run on the master.
func TestReadOnlyClusterClient(t *testing.T) {
	for _, o := range []redis.ClusterOptions{{ReadOnly: true}, {RouteByLatency: true}, {RouteRandomly: true}} {
		o.Addrs, o.ContextTimeoutEnabled = []string{"127.0.0.1:1"}, true
		c := redis.NewClusterClient(&o)
		s, err := redisstore.New(c)
		if err != nil {
			t.Fatal(err)
		}
		if redisstore.Hits(s) {
			t.Errorf("%+v: hits are MGETs", o)
		}
		_ = s.Close()
		_ = c.Close()
	}
}

// TestScriptsAndClientParseAlike: the client's parse of an entry is as
// strict as the lookup script's: over entries damaged at random (a byte
// changed, cut short, grown), whatever one accepts the other accepts.
func TestScriptsAndClientParseAlike(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	const key = "p:{k}:e"
	tagKeys := func(tags ...string) string {
		var ks []string
		for _, tg := range tags {
			ks = append(ks, "p:{"+redisstore.Esc(tg)+"}:t")
		}
		return redisstore.EncodeList(ks)
	}
	var entries [][]byte
	for i := range 40 {
		tags := []string{"t" + strconv.Itoa(i)}
		if i%3 == 0 {
			tags = append(tags, "u{"+strconv.Itoa(i))
		}
		if i%5 == 0 {
			tags = nil
		}
		value := []byte(strings.Repeat("v", i))
		entries = append(entries, redisstore.BuildEntry(i%7 == 0 && i%5 == 0, uint64(i+1), uint64(100+i), int64(i), int64(i),
			uint64(100+i), int64(i), int64(1000+i), int64(2000+i), int64(3000+i),
			redisstore.EncodeList(tags), tagKeys(tags...), map[bool][]byte{true: nil, false: value}[i%7 == 0 && i%5 == 0]))
	}
	agree, accepted := 0, 0
	for _, e := range entries {
		for try := range 30 {
			b := append([]byte(nil), e...)
			switch try % 3 {
			case 0:
				b[rng.IntN(len(b))] = byte(rng.IntN(256))
			case 1:
				b = b[:rng.IntN(len(b)+1)]
			case 2:
				b = append(b, byte(rng.IntN(256)))
			}
			if try == 0 {
				b = e // the undamaged entry
			}
			lua, err := redisstore.ScriptParses(ctx, client, key, b)
			if err != nil {
				t.Fatal(err)
			}
			goes := redisstore.ClientParses(key, b)
			if lua != goes {
				t.Errorf("entry %x: the script says %v, the client %v", b, lua, goes)
				continue
			}
			agree++
			if lua {
				accepted++
			}
		}
	}
	if accepted == 0 || accepted == agree {
		t.Fatalf("%d of %d accepted: the cases do not tell the parsers apart", accepted, agree)
	}
	t.Logf("%d entries, %d accepted by both", agree, accepted)
}
