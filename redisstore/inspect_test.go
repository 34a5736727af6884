package redisstore_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
)

// inspectEnv fills a few entries through a Cache and returns the store,
// with a clock offset the test moves.
func inspectEnv(t *testing.T, client redis.UniversalClient) (*redisstore.Store, *paddock.Cache, *offset) {
	t.Helper()
	off := new(offset)
	s := newStore(t, client, redisstore.TimeOffset(off.get))
	c := newCache(t, s)
	l := newLoader(t, c, "art")
	ctx := context.Background()
	for _, k := range []string{"1", "2", "x{y}"} {
		if _, err := l.Get(ctx, k, func(ctx context.Context) (string, error) { return "v" + k, nil },
			paddock.TTL(time.Minute), paddock.Stale(time.Hour), paddock.Tags("art:"+k, "arts")); err != nil {
			t.Fatal(err)
		}
	}
	return s, c, off
}

func TestInspect(t *testing.T) {
	srv := redistest.Start(t)
	testInspect(t, srv.Client(t, nil))
}

func TestInspectCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	testInspect(t, cl.Client(t))
}

func testInspect(t *testing.T, client redis.UniversalClient) {
	s, c, off := inspectEnv(t, client)
	ctx := context.Background()
	state := func(key string) *redisstore.Inspection {
		t.Helper()
		in, err := s.Inspect(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	in := state("art:1")
	if in.State != redisstore.StateFresh || in.Entry == nil || !in.EpochFound || in.Entry.Ticket.Epoch != in.Epoch {
		t.Fatalf("fresh entry: %+v", in)
	}
	if !slices.Equal(in.Entry.Tags, []string{"art:1", "arts"}) || len(in.TagVersions) != 2 {
		t.Fatalf("tags: %v, versions %v", in.Entry.Tags, in.TagVersions)
	}
	if in.Size <= len(in.Entry.Value) || in.FreshMarker.IsZero() || in.Entry.FreshUntil.Sub(in.Entry.Created) != time.Minute {
		t.Fatalf("size %d, marker %v, windows %v..%v", in.Size, in.FreshMarker, in.Entry.Created, in.Entry.FreshUntil)
	}
	if in := state("art:x{y}"); in.State != redisstore.StateFresh {
		t.Fatalf("key with braces: %+v", in)
	}
	if in := state("art:nope"); in.State != redisstore.StateMissing || in.Entry != nil {
		t.Fatalf("missing: %+v", in)
	}

	if err := c.MarkStaleTags(ctx, "art:2"); err != nil {
		t.Fatal(err)
	}
	if in := state("art:2"); in.State != redisstore.StateSoft {
		t.Fatalf("after a soft tag invalidation: %+v", in)
	}
	if err := c.InvalidateTags(ctx, "art:1"); err != nil {
		t.Fatal(err)
	}
	in = state("art:1")
	if in.State != redisstore.StateInvalidated || in.TagVersions["art:1"].Hard <= in.Entry.Ticket.Seq {
		t.Fatalf("after a tag invalidation: %+v", in)
	}
	if err := c.Invalidate(ctx, "art:x{y}"); err != nil {
		t.Fatal(err)
	}
	if in := state("art:x{y}"); in.State != redisstore.StateMissing || in.Version == 0 {
		t.Fatalf("after a key invalidation: %+v", in)
	}

	off.advance(2 * time.Minute)
	if in := state("art:2"); in.State != redisstore.StateSoft {
		t.Fatalf("soft, past freshness: %+v", in)
	}
	tv, err := s.TagVersions(ctx, "arts", "art:2", "never")
	if err != nil {
		t.Fatal(err)
	}
	if tv["arts"].Any != 0 || tv["art:2"].Any == 0 || tv["art:2"].Hard != 0 || tv["never"].Found {
		t.Fatalf("tag versions: %+v", tv)
	}
	off.advance(2 * time.Hour)
	if in := state("art:2"); in.State != redisstore.StateExpired {
		t.Fatalf("past every window: %+v", in)
	}

	// Corrupt bytes under an entry's name are reported, not repaired.
	if err := client.Set(ctx, s.Prefix()+"{art:bad}:e", "junk", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if in := state("art:bad"); in.State != redisstore.StateCorrupt {
		t.Fatalf("corrupt: %+v", in)
	}
	if n, _ := client.Exists(ctx, s.Prefix()+"{art:bad}:e").Result(); n != 1 {
		t.Fatal("Inspect deleted the corrupt entry")
	}
}

func TestScan(t *testing.T) {
	srv := redistest.Start(t)
	testScan(t, srv.Client(t, nil))
}

func TestScanCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	testScan(t, cl.Client(t))
}

func testScan(t *testing.T, client redis.UniversalClient) {
	s, c, _ := inspectEnv(t, client)
	ctx := context.Background()
	other := newLoader(t, c, "user")
	for i := range 50 {
		k := string(rune('a'+i%26)) + string(rune('a'+i/26))
		if _, err := other.Get(ctx, k, func(ctx context.Context) (string, error) { return "u", nil }); err != nil {
			t.Fatal(err)
		}
	}
	scan := func(match string, limit int) ([]string, bool) {
		t.Helper()
		var keys []string
		complete, err := s.Scan(ctx, match, limit, func(e redisstore.ScannedEntry) error {
			if e.Corrupt {
				t.Errorf("%s: corrupt", e.Key)
			}
			if e.Key == "art:1" && !slices.Equal(e.Tags, []string{"art:1", "arts"}) {
				t.Errorf("art:1 tags %v", e.Tags)
			}
			keys = append(keys, e.Key)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(keys)
		return slices.Compact(keys), complete
	}
	keys, complete := scan("art:*", 100000)
	if !complete || !slices.Equal(keys, []string{"art:1", "art:2", "art:x{y}"}) {
		t.Fatalf("art:*: %v, complete %v", keys, complete)
	}
	if keys, _ := scan(`art:x\{*`, 100000); !slices.Equal(keys, []string{"art:x{y}"}) {
		t.Fatalf(`art:x\{*: %v`, keys)
	}
	if keys, _ := scan("", 100000); len(keys) != 53 {
		t.Fatalf("every key: %d keys", len(keys))
	}
	if _, complete := scan("", 5); complete {
		t.Fatal("a scan bounded to 5 of more than 100 keys reports that it is complete")
	}
	if _, err := s.Scan(ctx, "", 0, nil); err == nil {
		t.Fatal("limit 0 accepted")
	}
}

func TestEpochMarkers(t *testing.T) {
	srv := redistest.Start(t)
	s, _, _ := inspectEnv(t, srv.Client(t, nil))
	ms, complete, err := s.EpochMarkers(context.Background(), 1000)
	if err != nil || !complete || len(ms) != 1 || !ms[0].Trusted() || ms[0].Slot != -1 || ms[0].Epoch == 0 {
		t.Fatalf("%+v %v %v", ms, complete, err)
	}
	bad := ms[0]
	bad.ServerReplID = "other"
	if bad.Trusted() {
		t.Fatal("a marker of another replication ID is trusted")
	}
}

func TestEpochMarkersCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	s, _, _ := inspectEnv(t, cl.Client(t))
	ms, complete, err := s.EpochMarkers(context.Background(), 1<<20)
	if err != nil || !complete || len(ms) == 0 {
		t.Fatalf("%d markers, complete %v, %v", len(ms), complete, err)
	}
	for _, m := range ms {
		if m.Slot < 0 || !m.Trusted() || m.ReplID == "" {
			t.Fatalf("%+v", m)
		}
	}
}
