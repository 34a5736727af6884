package redisstore_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
	"github.com/paddockcache/paddock/storetest"
)

// names are the Redis keys of one cache key K tagged T (named like K, so
// in K's slot) and R (another slot on Cluster), under a prefix.
type names struct {
	entry, fresh, version, lease string
	tagT, tagR                   string
	marker, markerR, seq         string // markerR: R's slot (Cluster)
}

func layoutNames(prefix, key, remote string, cluster bool) names {
	hk := func(s string) string { return prefix + "{" + redisstore.Esc(s) + "}:" }
	n := names{
		entry: hk(key) + "e", fresh: hk(key) + "f", version: hk(key) + "v", lease: hk(key) + "l",
		tagT: hk(key) + "t", tagR: hk(remote) + "t",
		marker: prefix + "{_}:ep", markerR: prefix + "{_}:ep", seq: prefix + "{_}:seq",
	}
	if cluster {
		n.marker = prefix + "{" + redisstore.SlotTag(redisstore.SlotOf(key)) + "}:ep"
		n.markerR = prefix + "{" + redisstore.SlotTag(redisstore.SlotOf(remote)) + "}:ep"
	}
	return n
}

// What a corruption case does before it corrupts: the invalidation (or
// loss) whose record it then damages.
const (
	prepNone      = iota
	prepInvalT    // hard-invalidate tag T: the entry stays in Redis, unservable
	prepInvalR    // hard-invalidate tag R
	prepInvalKey  // invalidate the key: version above the old ticket
	prepDropEntry // the entry is gone: the lookup takes the lease
)

type corruptCase struct {
	name    string
	prep    int
	cluster int // 0 both layouts, 1 Cluster only, -1 standalone only
	// corrupt damages the data in Redis through a raw client.
	corrupt func(ctx context.Context, r redis.Cmdable, n names) error
	// seen: the first Lookup reads the damaged key and reports Corrupt.
	seen bool
}

func wrongType(pick func(names) string) func(context.Context, redis.Cmdable, names) error {
	return func(ctx context.Context, r redis.Cmdable, n names) error {
		k := pick(n)
		if err := r.Del(ctx, k).Err(); err != nil {
			return err
		}
		return r.RPush(ctx, k, "x").Err()
	}
}

func set(pick func(names) string, value string) func(context.Context, redis.Cmdable, names) error {
	return func(ctx context.Context, r redis.Cmdable, n names) error {
		return r.Set(ctx, pick(n), value, 0).Err()
	}
}

// editEntry rewrites the entry with edit, keeping its expiry.
func editEntry(edit func(b []byte, n names) []byte) func(context.Context, redis.Cmdable, names) error {
	return func(ctx context.Context, r redis.Cmdable, n names) error {
		b, err := r.Get(ctx, n.entry).Bytes()
		if err != nil {
			return err
		}
		return r.Set(ctx, n.entry, edit(b, n), redis.KeepTTL).Err()
	}
}

// setNum writes v over the entry's 8-byte number at off.
func setNum(off int, v uint64) func(context.Context, redis.Cmdable, names) error {
	return editEntry(func(b []byte, _ names) []byte {
		binary.BigEndian.PutUint64(b[off:], v)
		return b
	})
}

// editLists rewrites the entry's lists and value.
func editLists(edit func(tags, tagKeys string, value []byte, n names) (string, string, []byte)) func(context.Context, redis.Cmdable, names) error {
	return editEntry(func(b []byte, n names) []byte {
		fixed, tags, tk, value, ok := redisstore.SplitEntry(b)
		if !ok {
			panic("the entry does not parse before it is damaged")
		}
		tags, tk, value = edit(tags, tk, value, n)
		return redisstore.JoinEntry(fixed, tags, tk, value)
	})
}

var (
	entryKey   = func(n names) string { return n.entry }
	freshKey   = func(n names) string { return n.fresh }
	versionKey = func(n names) string { return n.version }
	leaseKey   = func(n names) string { return n.lease }
	tagTKey    = func(n names) string { return n.tagT }
	tagRKey    = func(n names) string { return n.tagR }
	markerKey  = func(n names) string { return n.marker }
	markerRKey = func(n names) string { return n.markerR }
	seqKey     = func(n names) string { return n.seq }
)

func corruptCases() []corruptCase {
	const tooLarge = 1 << 53
	var cs []corruptCase
	for _, f := range []struct {
		name string
		off  int
	}{
		{"epoch", redisstore.EntryEpoch}, {"g", redisstore.EntryGuard}, {"a", redisstore.EntryLead},
		{"d", redisstore.EntryLoad}, {"q", redisstore.EntryQ}, {"c", redisstore.EntryCreated},
		{"f", redisstore.EntryFresh}, {"s", redisstore.EntryStale}, {"x", redisstore.EntryError},
	} {
		cs = append(cs,
			corruptCase{name: "entry/" + f.name + "=too-large", corrupt: setNum(f.off, tooLarge), seen: true},
			corruptCase{name: "entry/" + f.name + "=too-small", corrupt: setNum(f.off, -tooLarge&(1<<64-1)), seen: true})
	}
	lists := func(tags, tk string, value []byte) func(context.Context, redis.Cmdable, names) error {
		return editLists(func(string, string, []byte, names) (string, string, []byte) { return tags, tk, value })
	}
	cs = append(cs,
		corruptCase{name: "entry/garbage", corrupt: set(entryKey, "garbage"), seen: true},
		corruptCase{name: "entry/empty", corrupt: set(entryKey, ""), seen: true},
		corruptCase{name: "entry/magic", corrupt: editEntry(func(b []byte, _ names) []byte { b[0] = 'x'; return b }), seen: true},
		corruptCase{name: "entry/format", corrupt: editEntry(func(b []byte, _ names) []byte { b[2]++; return b }), seen: true},
		corruptCase{name: "entry/flags", corrupt: editEntry(func(b []byte, _ names) []byte { b[redisstore.EntryFlags] = 4; return b }), seen: true},
		corruptCase{name: "entry/g=negative", corrupt: setNum(redisstore.EntryGuard, 1<<64-5), seen: true},
		corruptCase{name: "entry/truncated-head", corrupt: editEntry(func(b []byte, _ names) []byte { return b[:redisstore.EntryHead-1] }), seen: true},
		corruptCase{name: "entry/no-lists", corrupt: editEntry(func(b []byte, _ names) []byte { return b[:redisstore.EntryHead] }), seen: true},
		corruptCase{name: "entry/list-too-long", corrupt: editEntry(func(b []byte, _ names) []byte {
			binary.BigEndian.PutUint32(b[redisstore.EntryHead:], uint32(len(b)))
			return b
		}), seen: true},
		corruptCase{name: "entry/negative-with-value", corrupt: editEntry(func(b []byte, _ names) []byte {
			b[redisstore.EntryFlags] |= 1
			return b
		}), seen: true},
		corruptCase{name: "entry/tags=garbage", corrupt: editLists(func(_, tk string, v []byte, _ names) (string, string, []byte) {
			return "zz", tk, v
		}), seen: true},
		corruptCase{name: "entry/tags=short", corrupt: editLists(func(_, tk string, v []byte, _ names) (string, string, []byte) {
			return "9:ab", tk, v
		}), seen: true},
		corruptCase{name: "entry/tags=signed", corrupt: editLists(func(_, tk string, v []byte, _ names) (string, string, []byte) {
			return "+1:a", tk, v
		}), seen: true},
		corruptCase{name: "entry/tags=fewer", corrupt: editLists(func(tags, tk string, v []byte, _ names) (string, string, []byte) {
			l, _ := redisstore.DecodeList(tags)
			return redisstore.EncodeList(l[1:]), tk, v
		}), seen: true},
		corruptCase{name: "entry/tk=garbage", corrupt: editLists(func(tags, _ string, v []byte, _ names) (string, string, []byte) {
			return tags, "3:ab", v
		}), seen: true},
		corruptCase{name: "entry/tk=another-key", corrupt: editLists(func(tags, _ string, v []byte, _ names) (string, string, []byte) {
			return tags, redisstore.EncodeList([]string{"foo"}), v
		}), seen: true},
		corruptCase{name: "entry/tk=empty", corrupt: editLists(func(tags, _ string, v []byte, _ names) (string, string, []byte) {
			return tags, "", v
		}), seen: true},
		// On Cluster tk lists the tags of the key's slot only: one of
		// another slot is checked by the client, never by the script.
		corruptCase{name: "entry/tk=other-slot", cluster: 1, corrupt: editLists(func(tags, _ string, v []byte, n names) (string, string, []byte) {
			return tags, redisstore.EncodeList([]string{n.tagT, n.tagR}), v
		}), seen: true},
		corruptCase{name: "entry/wrong-type", corrupt: wrongType(entryKey), seen: true},
		corruptCase{name: "entry/wrong-type/invalidated", prep: prepInvalT, corrupt: wrongType(entryKey), seen: true},

		corruptCase{name: "fresh/garbage", corrupt: set(freshKey, "garbage"), seen: true},
		corruptCase{name: "fresh/bad-token", corrupt: set(freshKey, "1:x"), seen: true},
		corruptCase{name: "fresh/after-freshness", corrupt: set(freshKey, "9007199254740991"), seen: true},
		corruptCase{name: "fresh/wrong-type", corrupt: wrongType(freshKey), seen: true},

		corruptCase{name: "version/garbage", prep: prepInvalKey, corrupt: set(versionKey, "garbage"), seen: true},
		corruptCase{name: "version/too-large", prep: prepInvalKey, corrupt: set(versionKey, "99999999999999999999"), seen: true},
		corruptCase{name: "version/wrong-type", prep: prepInvalKey, corrupt: wrongType(versionKey), seen: true},

		corruptCase{name: "lease/garbage", prep: prepDropEntry, corrupt: set(leaseKey, "garbage"), seen: true},
		corruptCase{name: "lease/bad-expiry", prep: prepDropEntry, corrupt: set(leaseKey, "5:soon"), seen: true},
		corruptCase{name: "lease/wrong-type", prep: prepDropEntry, corrupt: wrongType(leaseKey), seen: true},

		corruptCase{name: "tag-local/garbage", prep: prepInvalT, corrupt: set(tagTKey, "garbage"), seen: true},
		corruptCase{name: "tag-local/h=garbage", prep: prepInvalT, corrupt: set(tagTKey, "x:5"), seen: true},
		corruptCase{name: "tag-local/s=garbage", prep: prepInvalT, corrupt: set(tagTKey, "5:x"), seen: true},
		corruptCase{name: "tag-local/wrong-type", prep: prepInvalT, corrupt: wrongType(tagTKey), seen: true},
		corruptCase{name: "tag-other/h=garbage", prep: prepInvalR, corrupt: set(tagRKey, "x:5"), seen: true},
		corruptCase{name: "tag-other/wrong-type", prep: prepInvalR, corrupt: wrongType(tagRKey), seen: true},

		corruptCase{name: "marker/garbage", corrupt: set(markerKey, "garbage"), seen: true},
		corruptCase{name: "marker/e=garbage", corrupt: set(markerKey, "x:0:"), seen: true},
		corruptCase{name: "marker/wrong-type", corrupt: wrongType(markerKey), seen: true},
		corruptCase{name: "marker/wrong-type/invalidated", prep: prepInvalT, corrupt: wrongType(markerKey), seen: true},
		corruptCase{name: "marker/f=garbage", cluster: 1, prep: prepInvalT, corrupt: set(markerKey, "5:x:"), seen: true},
		corruptCase{name: "marker-other/e=garbage", cluster: 1, prep: prepInvalR, corrupt: set(markerRKey, "x:0:"), seen: true},
		corruptCase{name: "marker-other/f=garbage", cluster: 1, prep: prepInvalR, corrupt: set(markerRKey, "5:x:"), seen: true},
		corruptCase{name: "marker-other/wrong-type", cluster: 1, prep: prepInvalR, corrupt: wrongType(markerRKey), seen: true},
		// The sequence is not the key's data: it is repaired (restarted
		// ahead) without a Corrupt report.
		corruptCase{name: "seq/garbage", prep: prepDropEntry, corrupt: set(seqKey, "garbage")},
		corruptCase{name: "seq/wrong-type", prep: prepDropEntry, corrupt: wrongType(seqKey)},
		corruptCase{name: "seq/wrong-type/invalidated", prep: prepInvalKey, corrupt: wrongType(seqKey)},
	)
	_ = lists
	return cs
}

// testCorrupt damages, one at a time, each field and key the store keeps
// for a key, then checks that the store heals: no operation returns an
// error, a lookup that reads the damage reports a Corrupt miss, no entry
// or fill older than the invalidation whose record was damaged is ever
// served or accepted, the next fill replaces the entry and hits, and the
// key can be invalidated. Three orders: the damage is met first by a
// Lookup, a Fill, or an Invalidate.
//
// via gives the store the cases run on: the Store itself, or
// storetest.Batched of it (every Lookup and Fill through the batch).
func testCorrupt(t *testing.T, client, raw redis.UniversalClient, cluster bool, via func(*redisstore.Store) store.Store,
	pick func(i int) (key, remote string), opts ...redisstore.Option) {
	// One prefix for all cases (on the Cluster layout a new prefix costs
	// a fence of every slot), a key and a tag of their own for each.
	prefix := fmt.Sprintf("cor%d:", corruptPrefixes.Add(1))
	s := via(newStore(t, client, append([]redisstore.Option{redisstore.Prefix(prefix)}, opts...)...))
	i := 0
	for _, c := range corruptCases() {
		if c.cluster == 1 && !cluster || c.cluster == -1 && cluster {
			continue
		}
		for _, order := range []string{"lookup", "fill", "invalidate"} {
			i++
			key, remote := pick(i)
			t.Run(c.name+"/first="+order, func(t *testing.T) {
				runCorrupt(t, s, raw, layoutNames(prefix, key, remote, cluster), c, order, key, remote)
			})
		}
	}
}

var corruptPrefixes atomic.Int64

func runCorrupt(t *testing.T, s store.Store, raw redis.UniversalClient, nm names, c corruptCase, order, key, remote string) {
	ctx := t.Context()
	tags := []string{key, remote}
	lookup := func(tok uint64) store.Lookup {
		t.Helper()
		lk, err := s.Lookup(ctx, key, store.LookupRequest{Lease: tok, LeaseTTL: time.Hour})
		if err != nil {
			t.Fatalf("Lookup: %v", err)
		}
		if lk.Entry != nil && string(lk.Entry.Value) == "old" && lk.State != store.StateMiss {
			t.Fatalf("the old entry is served (%v) after its record was damaged", lk.State)
		}
		return lk
	}
	fill := func(v string, t0 store.Ticket, tok uint64) bool {
		t.Helper()
		ok, err := s.Fill(ctx, key, &store.Fill{Value: []byte(v), Ticket: t0, Lease: tok, Tags: tags, TTL: time.Hour, Stale: time.Hour})
		if err != nil {
			t.Fatalf("Fill %q: %v", v, err)
		}
		return ok
	}
	invalidate := func(inv store.Invalidation) {
		t.Helper()
		if err := s.Invalidate(ctx, inv); err != nil {
			t.Fatalf("Invalidate(%+v): %v", inv, err)
		}
	}

	// The old entry, and the ticket of a load that began with it.
	lk := lookup(1)
	if !lk.Lease {
		t.Fatalf("first lookup: %+v", lk)
	}
	old := lk.Ticket
	if !fill("old", old, 1) {
		t.Fatal("the first fill was refused")
	}
	invalidated := true
	switch c.prep {
	case prepInvalT:
		invalidate(store.Invalidation{Tags: []string{key}})
	case prepInvalR:
		invalidate(store.Invalidation{Tags: []string{remote}})
	case prepInvalKey:
		invalidate(store.Invalidation{Keys: []string{key}})
	case prepDropEntry:
		invalidated = false
		if err := raw.Del(ctx, nm.entry).Err(); err != nil {
			t.Fatal(err)
		}
	default:
		invalidated = false
	}
	if err := c.corrupt(ctx, raw, nm); err != nil {
		t.Fatalf("corrupt: %v", err)
	}

	var first store.Lookup
	switch order {
	case "lookup":
		first = lookup(2)
		if first.State != store.StateMiss || first.Entry != nil {
			t.Fatalf("lookup after the damage: %v with entry %v, want a miss", first.State, first.Entry != nil)
		}
		if first.Corrupt != c.seen {
			t.Fatalf("lookup after the damage: Corrupt = %v, want %v", first.Corrupt, c.seen)
		}
		if !first.Lease {
			t.Fatalf("lookup after the damage: no lease: %+v", first)
		}
	case "fill":
		// Giving back a lease nobody holds works whatever is there.
		if err := s.Release(ctx, key, 7); err != nil {
			t.Fatalf("Release: %v", err)
		}
	case "invalidate":
		invalidate(store.Invalidation{Keys: []string{key}, Tags: tags})
		invalidated = true
	}
	// A load that took its ticket before the invalidation fills nothing,
	// whatever became of the invalidation's record.
	if ok := fill("stale", old, 0); ok && invalidated {
		t.Fatal("a fill older than the invalidation was accepted after its record was damaged")
	}
	if lk := lookup(0); invalidated && lk.Entry != nil && string(lk.Entry.Value) == "stale" && lk.State != store.StateMiss {
		t.Fatalf("a fill older than the invalidation is served (%v)", lk.State)
	}

	// The next load fills and hits. When the lookup met the damage, the
	// load it granted fills; otherwise the fill or invalidation that met
	// it may have refused one more load (a version repaired as very high
	// refuses every ticket taken before the repair).
	want := "new"
	if order == "lookup" {
		if !fill("new", first.Ticket, 2) {
			t.Fatal("the load granted by the lookup that met the damage was refused")
		}
	} else {
		filled := false
		for try := uint64(0); try < 2 && !filled; try++ {
			lk := lookup(10 + try)
			if lk.State == store.StateFresh && !invalidated {
				// The "stale" fill was accepted: nothing had invalidated
				// its load.
				want, filled = "stale", true
			} else if lk.Lease {
				filled = fill("new", lk.Ticket, 10+try)
			}
		}
		if !filled {
			t.Fatal("no fill was accepted after the damage")
		}
	}
	if lk := lookup(0); lk.State != store.StateFresh || string(lk.Entry.Value) != want || lk.Corrupt {
		t.Fatalf("after the new fill: %+v", lk)
	}
	invalidate(store.Invalidation{Keys: []string{key}, Tags: tags})
	if lk := lookup(0); lk.Entry != nil {
		t.Fatalf("after the invalidation: %+v", lk)
	}
}

func TestCorrupt(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	pick := func(i int) (string, string) { return fmt.Sprintf("k%d", i), fmt.Sprintf("r%d", i) }
	t.Run("layout=standalone", func(t *testing.T) {
		testCorrupt(t, client, client, false, direct, pick)
	})
	t.Run("layout=cluster", func(t *testing.T) {
		testCorrupt(t, client, client, true, direct, pick, redisstore.ForceCluster())
	})
	t.Run("layout=standalone/via=batch", func(t *testing.T) {
		testCorrupt(t, client, client, false, batched, pick)
	})
	t.Run("layout=cluster/via=batch", func(t *testing.T) {
		testCorrupt(t, client, client, true, batched, pick, redisstore.ForceCluster())
	})
}

// direct and batched are the two ways to run a test on a Store: its own
// calls, or every Lookup and Fill through LookupMany and FillMany.
func direct(s *redisstore.Store) store.Store  { return s }
func batched(s *redisstore.Store) store.Store { return storetest.Batched(s) }

// TestPreviousLayout: keys the previous layout wrote (hashes for the
// entry, the epoch marker and a tag's versions) are of another type for
// this one: each is read as corrupt data once, as any damage is, and
// replaced; nothing of the old layout is served, and an old tag record
// refuses the fills it might have fenced.
func TestPreviousLayout(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	ctx := t.Context()
	s := newStore(t, client, redisstore.Prefix("old:"))
	for k, fields := range map[string][]any{
		"old:{k}:e":  {"e", "1", "q", "5", "g", "5", "c", "0", "f", "9999999999999999", "s", "9999999999999999", "x", "0", "d", "0", "tg", "1:t", "tk", "8:old:{t}:t", "v", "old"},
		"old:{_}:ep": {"e", "1", "r", "", "n", "5"},
		"old:{t}:t":  {"s", "4", "h", "4"},
	} {
		if err := client.HSet(ctx, k, fields...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	lk, err := s.Lookup(ctx, "k", store.LookupRequest{Lease: 1, LeaseTTL: time.Minute})
	if err != nil || !lk.Corrupt || lk.Entry != nil || !lk.Lease {
		t.Fatalf("first lookup: %+v, %v; want a corrupt miss with the lease", lk, err)
	}
	// The old tag record is repaired as very high: a load that took its
	// ticket before the repair does not fill with it.
	if ok, err := s.Fill(ctx, "k", &store.Fill{Value: []byte("new"), Ticket: lk.Ticket, Lease: 1, TTL: time.Hour, Tags: []string{"t"}}); ok || err != nil {
		t.Fatalf("fill with the old tag record: %v, %v; want refused", ok, err)
	}
	lk, err = s.Lookup(ctx, "k", store.LookupRequest{Lease: 2, LeaseTTL: time.Minute})
	if err != nil || !lk.Lease {
		t.Fatalf("second lookup: %+v, %v", lk, err)
	}
	if ok, err := s.Fill(ctx, "k", &store.Fill{Value: []byte("new"), Ticket: lk.Ticket, Lease: 2, TTL: time.Hour, Tags: []string{"t"}}); !ok || err != nil {
		t.Fatalf("fill: %v, %v", ok, err)
	}
	if lk, err := s.Lookup(ctx, "k", store.LookupRequest{}); err != nil || lk.State != store.StateFresh || string(lk.Entry.Value) != "new" || lk.Corrupt {
		t.Fatalf("after the fill: %+v, %v", lk, err)
	}
}
