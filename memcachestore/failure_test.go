package memcachestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/memcachestore/internal/memcachedtest"
	"github.com/paddockcache/paddock/store"
)

func lease(t *testing.T, s *Store, key string, token uint64) store.Lookup {
	t.Helper()
	r, err := s.Lookup(t.Context(), key, store.LookupRequest{Lease: token, LeaseTTL: time.Minute})
	if err != nil {
		t.Fatalf("Lookup(%q): %v", key, err)
	}
	return r
}

func fill(t *testing.T, s *Store, key, value string, tk store.Ticket, token uint64, tags ...string) bool {
	t.Helper()
	ok, err := s.Fill(t.Context(), key, &store.Fill{Value: []byte(value), Ticket: tk, Lease: token, TTL: time.Hour, Tags: tags})
	if err != nil {
		t.Fatalf("Fill(%q): %v", key, err)
	}
	return ok
}

// filled fills key with value and returns the ticket it filled with.
func filled(t *testing.T, s *Store, key, value string, tags ...string) store.Ticket {
	t.Helper()
	r := lease(t, s, key, 1)
	if !r.Lease || !fill(t, s, key, value, r.Ticket, 1, tags...) {
		t.Fatalf("fill of %q refused (lease %v)", key, r.Lease)
	}
	return r.Ticket
}

func TestKilledServer(t *testing.T) {
	srv := memcachedtest.Start(t)
	s, _ := newTestStore(t, []string{srv.Socket})
	defer s.Close()
	old := filled(t, s, "k", "v")
	srv.Kill()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := s.Lookup(ctx, "k", store.LookupRequest{}); err == nil {
		t.Fatal("Lookup on a killed server: no error")
	}
	if _, err := s.Fill(ctx, "k", &store.Fill{Value: []byte("x"), Ticket: old, TTL: time.Hour}); err == nil {
		t.Fatal("Fill on a killed server: no error")
	}
	if err := s.Invalidate(ctx, store.Invalidation{Keys: []string{"k"}}); err == nil {
		t.Fatal("Invalidate on a killed server: no error")
	}
	srv.Restart(t)
	r := lease(t, s, "k", 2)
	if r.Entry != nil || !r.Lease {
		t.Fatalf("after a restart: entry %v, lease %v; want a miss with the lease", r.Entry, r.Lease)
	}
	if r.Ticket.Epoch == old.Epoch {
		t.Fatalf("the epoch %d survived a restart", old.Epoch)
	}
	if fill(t, s, "k", "old", old, 0) {
		t.Fatal("a fill with a ticket from before the restart was accepted")
	}
}

// TestPausedServer: a server stopped with SIGSTOP holds the connection
// open; a call returns with its context, and the store works again once
// the server is continued, with its data.
func TestPausedServer(t *testing.T) {
	srv := memcachedtest.Start(t)
	s, _ := newTestStore(t, []string{srv.Socket})
	defer s.Close()
	filled(t, s, "k", "v")
	srv.Pause()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	_, err := s.Lookup(ctx, "k", store.LookupRequest{})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lookup on a paused server: %v, want DeadlineExceeded", err)
	}
	srv.Cont()
	r, err := s.Lookup(t.Context(), "k", store.LookupRequest{})
	if err != nil {
		t.Fatalf("Lookup after SIGCONT: %v", err)
	}
	if r.State != store.StateFresh || string(r.Entry.Value) != "v" {
		t.Fatalf("after SIGCONT: %v %+v, want the fresh entry", r.State, r.Entry)
	}
}

func TestFlushAll(t *testing.T) {
	srv := memcachedtest.Start(t)
	s, _ := newTestStore(t, []string{srv.Socket})
	defer s.Close()
	filled(t, s, "k", "v", "tag")
	inflight := lease(t, s, "other", 2)
	if err := s.Invalidate(t.Context(), store.Invalidation{Tags: []string{"tag"}}); err != nil {
		t.Fatal(err)
	}
	srv.FlushAll(t)
	r := lease(t, s, "k", 3)
	if r.Entry != nil || !r.Lease {
		t.Fatalf("after flush_all: entry %v, lease %v; want a miss with the lease", r.Entry, r.Lease)
	}
	if r.Ticket.Epoch == inflight.Ticket.Epoch {
		t.Fatal("the epoch survived flush_all")
	}
	// The invalidation of tag is forgotten, but the load that began
	// before it took its ticket in the lost epoch: refused.
	if fill(t, s, "other", "old", inflight.Ticket, 2, "tag") {
		t.Fatal("a fill with a ticket from before flush_all was accepted")
	}
}

// TestEvictedVersions: an entry whose key's or tag's versions item is
// gone (evicted) is a miss, never an entry whose invalidations are
// forgotten; the next fill recreates the versions.
func TestEvictedVersions(t *testing.T) {
	srv := memcachedtest.Start(t)
	s, _ := newTestStore(t, []string{srv.Socket})
	defer s.Close()
	for _, c := range []struct{ key, item string }{
		{"k1", s.name(kindVersions, "k1")},
		{"k2", s.name(kindTag, "tag2")},
	} {
		filled(t, s, c.key, "v", "tag2")
		if r := lease(t, s, c.key, 9); r.State != store.StateFresh {
			t.Fatalf("%s: %v before the eviction, want fresh", c.key, r.State)
		}
		o := del(c.item, "")
		if err := s.keyNode(c.key).do(t.Context(), []*op{o}); err != nil || o.status != "HD" {
			t.Fatalf("deleting %s: %v %s", c.item, err, o.status)
		}
		r := lease(t, s, c.key, 2)
		if r.Entry != nil || r.State != store.StateMiss || !r.Lease {
			t.Fatalf("%s with %s evicted: %v %+v lease %v, want a miss with the lease", c.key, c.item, r.State, r.Entry, r.Lease)
		}
		if !fill(t, s, c.key, "new", r.Ticket, 2, "tag2") {
			t.Fatalf("%s: the fill after the eviction was refused", c.key)
		}
		if r := lease(t, s, c.key, 3); r.State != store.StateFresh || string(r.Entry.Value) != "new" {
			t.Fatalf("%s: %v %+v after the refill, want fresh %q", c.key, r.State, r.Entry, "new")
		}
	}
}

// TestNames: keys and tags memcached cannot take as they are (too long,
// with spaces or control bytes) are hashed, and work like any other.
func TestNames(t *testing.T) {
	srv := memcachedtest.Start(t)
	s, _ := newTestStore(t, []string{srv.Socket})
	defer s.Close()
	long := strings.Repeat("x", 300)
	for _, key := range []string{long, "with space", "ctl\x01\r\n", "é"} {
		tag := "tag " + key
		filled(t, s, key, "v:"+key, tag)
		r := lease(t, s, key, 2)
		if r.State != store.StateFresh || string(r.Entry.Value) != "v:"+key {
			t.Fatalf("%q: %v %+v, want fresh", key, r.State, r.Entry)
		}
		if err := s.Invalidate(t.Context(), store.Invalidation{Tags: []string{tag}}); err != nil {
			t.Fatal(err)
		}
		if r := lease(t, s, key, 3); r.Entry != nil {
			t.Fatalf("%q: entry after its tag was invalidated", key)
		}
	}
	if a, b := s.name(kindEntry, long), s.name(kindEntry, long+"y"); a == b || len(a) > 250 {
		t.Fatalf("hashed names %q, %q", a, b)
	}
}

// TestServerTooLarge: a value the store lets through but the server
// refuses (its -I is below MaxItemBytes) is store.ErrTooLarge.
func TestServerTooLarge(t *testing.T) {
	srv := memcachedtest.Start(t, "-I", "1m")
	s, _ := newTestStore(t, []string{srv.Socket}, MaxItemBytes(8<<20))
	defer s.Close()
	r := lease(t, s, "k", 1)
	_, err := s.Fill(t.Context(), "k", &store.Fill{Value: make([]byte, 2<<20), Ticket: r.Ticket, Lease: 1, TTL: time.Hour})
	if !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("Fill of 2 MiB on a server of 1 MiB items: %v, want ErrTooLarge", err)
	}
	// The store still works on the same connection pool.
	filled(t, s, "k2", "v")
}

// TestMembership: a store over another server list trusts none of the
// entries and tickets of the old one.
func TestMembership(t *testing.T) {
	a, b := memcachedtest.Start(t), memcachedtest.Start(t)
	s1, _ := New([]string{a.Socket}, Prefix("m:"))
	defer s1.Close()
	tk := filled(t, s1, "k", "v")
	s2, _ := New([]string{a.Socket, b.Socket}, Prefix("m:"))
	defer s2.Close()
	for i := range 20 {
		key := "m" + string(rune('a'+i))
		filled(t, s1, key, "v")
		r := lease(t, s2, key, 5)
		if r.Entry != nil {
			t.Fatalf("%s: the store over two servers served the one-server store's entry", key)
		}
		if r.Ticket.Epoch == tk.Epoch {
			t.Fatal("two server lists share an epoch")
		}
	}
	if ok, _ := s2.Fill(t.Context(), "k", &store.Fill{Value: []byte("x"), Ticket: tk, TTL: time.Hour}); ok {
		t.Fatal("a ticket of another membership was accepted")
	}
}

func TestNewOptions(t *testing.T) {
	for _, c := range []struct {
		name  string
		addrs []string
		opts  []Option
	}{
		{"no servers", nil, nil},
		{"duplicate", []string{"a:1", "a:1"}, nil},
		{"empty", []string{""}, nil},
		{"nil option", []string{"a:1"}, []Option{nil}},
		{"prefix", []string{"a:1"}, []Option{Prefix("a b")}},
		{"item", []string{"a:1"}, []Option{MaxItemBytes(10)}},
		{"timeout", []string{"a:1"}, []Option{Timeout(-1)}},
		{"dial", []string{"a:1"}, []Option{DialTimeout(0)}},
		{"offset", []string{"a:1"}, []Option{TimeOffset(nil)}},
	} {
		if _, err := New(c.addrs, c.opts...); !errors.Is(err, store.ErrInvalidOption) {
			t.Errorf("%s: %v, want ErrInvalidOption", c.name, err)
		}
	}
}

// evict deletes the item name from the server of route, as memcached's
// LRU would when it evicts it.
func evict(t *testing.T, s *Store, n *node, name string) {
	t.Helper()
	o := del(name, "")
	if err := n.do(t.Context(), []*op{o}); err != nil || o.status != "HD" {
		t.Fatalf("deleting %s: %v %s", name, err, o.status)
	}
}

// TestEvictedVersionFencesOldFill: a load that began before an
// invalidation, and finishes after the version that invalidation wrote was
// evicted, is refused: the version is recreated at the current sequence,
// above the load's ticket, and no stale value is served.
func TestEvictedVersionFencesOldFill(t *testing.T) {
	srv := memcachedtest.Start(t)
	s, _ := newTestStore(t, []string{srv.Socket})
	defer s.Close()
	for _, c := range []struct {
		name string
		inv  func(key string) store.Invalidation
		item func(key string) (*node, string)
	}{
		{"key", func(k string) store.Invalidation { return store.Invalidation{Keys: []string{k}} },
			func(k string) (*node, string) { return s.keyNode(k), s.name(kindVersions, k) }},
		{"tag", func(k string) store.Invalidation { return store.Invalidation{Tags: []string{"tag:" + k}} },
			func(k string) (*node, string) { return s.tagNode("tag:" + k), s.name(kindTag, "tag:"+k) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := "fenced-" + c.name
			filled(t, s, k, "v0", "tag:"+k)
			// Bump the entry out (a hard key invalidation, or a tag's)
			// while a load with the old ticket runs.
			old := lease(t, s, k+"-probe", 1).Ticket // any ticket taken now
			r := lease(t, s, k, 2)
			if r.State != store.StateFresh {
				t.Fatalf("before: %v, want fresh", r.State)
			}
			if err := s.Invalidate(t.Context(), c.inv(k)); err != nil {
				t.Fatal(err)
			}
			n, item := c.item(k)
			evict(t, s, n, item)
			if fill(t, s, k, "stale", old, 0, "tag:"+k) {
				t.Fatal("the old load's fill was accepted after its invalidation's version was evicted")
			}
			if r, err := s.Lookup(t.Context(), k, store.LookupRequest{}); err != nil || r.Entry != nil {
				t.Fatalf("after the refused fill: %+v, %v; want no entry", r.Entry, err)
			}
			// A load that begins now fills.
			r = lease(t, s, k, 3)
			if !r.Lease || !fill(t, s, k, "new", r.Ticket, 3, "tag:"+k) {
				t.Fatal("a load after the eviction could not fill")
			}
			if r := lease(t, s, k, 4); r.State != store.StateFresh || string(r.Entry.Value) != "new" {
				t.Fatalf("after the refill: %v %+v, want fresh %q", r.State, r.Entry, "new")
			}
			// The old load, finishing last, is still refused.
			if fill(t, s, k, "stale", old, 0, "tag:"+k) {
				t.Fatal("the old load's fill was accepted after the refill")
			}
		})
	}
}

// TestEvictedVersionStaysHard: an entry whose tag was hard-invalidated is
// not served again, not even as stale, after the tag's version is evicted
// and recreated by a soft invalidation or by a fill of another key.
func TestEvictedVersionStaysHard(t *testing.T) {
	srv := memcachedtest.Start(t)
	s, _ := newTestStore(t, []string{srv.Socket})
	defer s.Close()
	for _, recreate := range []string{"soft", "fill"} {
		t.Run(recreate, func(t *testing.T) {
			k, tag := "hard-"+recreate, "hardtag-"+recreate
			filled(t, s, k, "v0", tag)
			if err := s.Invalidate(t.Context(), store.Invalidation{Tags: []string{tag}}); err != nil {
				t.Fatal(err)
			}
			evict(t, s, s.tagNode(tag), s.name(kindTag, tag))
			switch recreate {
			case "soft":
				if err := s.Invalidate(t.Context(), store.Invalidation{Tags: []string{tag}, Soft: true}); err != nil {
					t.Fatal(err)
				}
			case "fill":
				filled(t, s, k+"-other", "x", tag)
			}
			if v, ok := parseVersionsOf(t, s, s.tagNode(tag), s.name(kindTag, tag)); !ok || v.hard <= filledSeq(t, s, k) {
				t.Fatalf("recreated versions %+v (ok %v), want hard above the entry's ticket", v, ok)
			}
			if r, err := s.Lookup(t.Context(), k, store.LookupRequest{}); err != nil || r.Entry != nil {
				t.Fatalf("entry of a hard-invalidated tag after its version was recreated: %v %+v, %v", r.State, r.Entry, err)
			}
		})
	}
}

// parseVersionsOf reads the versions item name of the current epoch.
func parseVersionsOf(t *testing.T, s *Store, n *node, name string) (versions, bool) {
	t.Helper()
	seq, o := s.readSeq(), get(name, "v")
	if err := s.stages(t.Context(), batch{s.seqNode(): {seq}}, batch{n: {o}}); err != nil {
		t.Fatal(err)
	}
	cur, err := seqValue(seq)
	if err != nil {
		t.Fatal(err)
	}
	return parseVersions(o, cur)
}

// filledSeq is the ticket of key's entry item, read directly (the store
// may no longer serve it).
func filledSeq(t *testing.T, s *Store, key string) uint64 {
	t.Helper()
	o := get(s.name(kindEntry, key), "v")
	if err := s.keyNode(key).do(t.Context(), []*op{o}); err != nil || o.status != "VA" {
		t.Fatalf("reading %s's entry: %v %s", key, err, o.status)
	}
	var e store.Entry
	if err := e.UnmarshalBinary(o.value); err != nil {
		t.Fatal(err)
	}
	return e.Ticket.Seq
}

// TestNewKeyFillsAcrossInvalidations: the lookup that grants the lease of
// a key without versions writes them at its ticket, so that the load's
// fill is not refused because other keys were invalidated meanwhile.
func TestNewKeyFillsAcrossInvalidations(t *testing.T) {
	srv := memcachedtest.Start(t)
	s, _ := newTestStore(t, []string{srv.Socket})
	defer s.Close()
	r := lease(t, s, "new", 1)
	if !r.Lease {
		t.Fatal("no lease on a new key")
	}
	if err := s.Invalidate(t.Context(), store.Invalidation{Keys: []string{"elsewhere"}}); err != nil {
		t.Fatal(err)
	}
	if !fill(t, s, "new", "v", r.Ticket, 1) {
		t.Fatal("the fill of a new key was refused after an invalidation of another key")
	}
}

// TestFillSecondRead: an invalidation of a tag that lands between a Set's
// check and its write (hooks.FillGap) refuses the Set through the
// versions' second read, after the write; with that read switched off
// (hooks.FillTagGap) the Set is accepted, and its entry, whose ticket is
// above the invalidation, served.
func TestFillSecondRead(t *testing.T) {
	srv := memcachedtest.Start(t)
	s, _ := newTestStore(t, []string{srv.Socket})
	defer s.Close()
	t.Cleanup(hooks.Reset)
	for _, skip := range []bool{false, true} {
		key, tag := fmt.Sprintf("set-%v", skip), fmt.Sprintf("tag-%v", skip)
		filled(t, s, key+"-warm", "x", tag) // the tag has versions
		r := lease(t, s, key, 1)
		gap := func() {
			if err := s.Invalidate(context.Background(), store.Invalidation{Tags: []string{tag}}); err != nil {
				t.Error(err)
			}
		}
		hooks.FillGap.Store(&gap)
		hooks.FillTagGap.Store(skip)
		ok, err := s.Fill(t.Context(), key, &store.Fill{Value: []byte("v"), Tags: []string{tag}, Ticket: r.Ticket, Lease: 1, TTL: time.Hour, Set: true})
		hooks.Reset()
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Lookup(t.Context(), key, store.LookupRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if skip {
			if !ok || got.Entry == nil {
				t.Fatalf("without the second read: accepted %v, entry %+v; want the Set accepted and served", ok, got.Entry)
			}
		} else if ok || got.Entry != nil {
			t.Fatalf("a Set raced by a tag invalidation in its gap: accepted %v, entry %+v; want refused, no entry", ok, got.Entry)
		}
	}
}

// TestCanceledCall: a call to a server that does not answer returns when
// its context is canceled, before its deadline, whether the cancel comes
// before the call or during it (the store watches the context of a slow
// pipeline).
func TestCanceledCall(t *testing.T) {
	srv := memcachedtest.Start(t)
	s, _ := newTestStore(t, []string{srv.Socket}, Timeout(time.Minute))
	defer s.Close()
	filled(t, s, "k", "v")
	srv.Pause()
	defer srv.Cont()
	for _, before := range []bool{true, false} {
		ctx, cancel := context.WithCancel(t.Context())
		if before {
			cancel()
		}
		errc := make(chan error, 1)
		go func() {
			_, err := s.Lookup(ctx, "k", store.LookupRequest{})
			errc <- err
		}()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("Lookup canceled (before the call: %v) on a paused server: %v, want Canceled", before, err)
		}
	}
}

// TestShortEntryOutlivesItsWindow: memcached's clock ticks once a second
// and an item of TTL n lives between n-1 and n seconds, so the item of an
// entry whose last window is 200ms away gets two: read right after the
// write, its countdown is at least 2 (or 1, if the server's clock ticked
// in between, which cannot happen on both of two tries), and a lookup
// finds the entry fresh.
func TestShortEntryOutlivesItsWindow(t *testing.T) {
	srv := memcachedtest.Start(t)
	s, _ := New([]string{srv.Socket}, Prefix("short:"))
	defer s.Close()
	var counts []int64
	for i := range 2 {
		key := fmt.Sprintf("k%d", i)
		r := lease(t, s, key, 1)
		ok, err := s.Fill(t.Context(), key, &store.Fill{Value: []byte("v"), Ticket: r.Ticket, Lease: 1, TTL: 200 * time.Millisecond})
		if err != nil || !ok {
			t.Fatalf("Fill: %v %v", ok, err)
		}
		o := get(s.name(kindEntry, key), "t")
		if err := s.keyNode(key).do(t.Context(), []*op{o}); err != nil || o.status != "HD" {
			t.Fatalf("reading the item: %v %s", err, o.status)
		}
		counts = append(counts, o.int('t'))
		if r, err := s.Lookup(t.Context(), key, store.LookupRequest{}); err != nil || r.State != store.StateFresh {
			t.Fatalf("Lookup right after the fill: %v, %v; want fresh", r.State, err)
		}
	}
	if max(counts[0], counts[1]) < 2 {
		t.Fatalf("items of an entry 200ms from its end: countdowns %v, want 2 (one may read 1)", counts)
	}
}

// TestFillAfterDrop: an early refresh whose fill read the old entry, which
// a lookup then dropped as past its end, writes its entry all the same
// (the gap between the fill's read and its write is hooks.FillGap's); an
// invalidation of the key in the same gap still refuses it.
func TestFillAfterDrop(t *testing.T) {
	srv := memcachedtest.Start(t)
	s, _ := newTestStore(t, []string{srv.Socket})
	defer s.Close()
	t.Cleanup(hooks.Reset)
	for _, c := range []struct {
		name   string
		gap    func(key string)
		accept bool
	}{
		{"dropped", func(key string) { evict(t, s, s.keyNode(key), s.name(kindEntry, key)) }, true},
		{"invalidated", func(key string) {
			if err := s.Invalidate(context.Background(), store.Invalidation{Keys: []string{key}}); err != nil {
				t.Error(err)
			}
		}, false},
	} {
		key := "refresh-" + c.name
		filled(t, s, key, "old")
		r := lease(t, s, key+"-ticket", 1) // a ticket of now
		gap := func() { c.gap(key) }
		hooks.FillGap.Store(&gap)
		ok := fill(t, s, key, "new", r.Ticket, 0)
		hooks.Reset()
		got, err := s.Lookup(t.Context(), key, store.LookupRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if c.accept {
			if !ok || got.Entry == nil || string(got.Entry.Value) != "new" {
				t.Fatalf("%s: accepted %v, entry %+v; want the fill accepted and served", c.name, ok, got.Entry)
			}
		} else if ok || got.Entry != nil {
			t.Fatalf("%s: accepted %v, entry %+v; want refused, no entry", c.name, ok, got.Entry)
		}
	}
}
