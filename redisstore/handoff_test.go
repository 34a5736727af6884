package redisstore_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// handoff makes the waiter's side of a wake-up: holder takes key's lease,
// waiter watches key and finds the lease held, end ends the lease through
// holder, and once the waiter is woken, handoff returns what the wake-up
// handed over and the ticket of the waiter's lookup.
func handoff(t *testing.T, holder, waiter *redisstore.Store, key string, end func(tk store.Ticket) error) (lk store.Lookup, ok bool, held store.Ticket) {
	t.Helper()
	tk := lease(t, holder, key, 1)
	wake, handed, stop := waiter.WatchFill(key)
	defer stop()
	w, err := waiter.Lookup(t.Context(), key, store.LookupRequest{Lease: 2, LeaseTTL: time.Minute})
	if err != nil || !w.Held {
		t.Fatalf("%s: the waiter's lookup: %+v, %v; want held", key, w, err)
	}
	if _, ok := handed(); ok {
		t.Fatalf("%s: handed an answer before the wake-up", key)
	}
	if err := end(tk); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	wait(t, wake, key+"'s wake-up")
	lk, ok = handed()
	return lk, ok, w.Ticket
}

// TestWatchFillHandsTheEntry: the wake-up of a fill that Redis accepted
// hands the entry it wrote to the processes waiting for its lease, as a
// lookup made in the fill's place would have answered (standalone): fresh,
// the same entry, and the sequence then, no older than the waiter's own
// lookup. A release, an invalidation, a refused fill, an entry larger than
// HandoffSize, one due for early refresh at once, or one no longer fresh
// by the waiter's reading of the server's clock hands nothing, and neither
// does any fill on the Cluster layout.
func TestWatchFillHandsTheEntry(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	var off offset
	opts := []redisstore.Option{redisstore.Prefix("ho:"), redisstore.HandoffSize(1024)}
	holder := newStore(t, srv.Client(t, nil), opts...)
	waiter := newStore(t, srv.Client(t, nil), opts...)
	late := newStore(t, srv.Client(t, nil), append(opts, redisstore.TimeOffset(off.get))...)
	wait(t, redisstore.Subscribed(waiter), "the waiter's subscription")
	wait(t, redisstore.Subscribed(late), "the late waiter's subscription")
	fill := func(key string, f store.Fill) func(store.Ticket) error {
		return func(tk store.Ticket) error {
			f.Ticket, f.Lease = tk, 1
			ok, err := holder.Fill(ctx, key, &f)
			if err == nil && !ok {
				err = errors.New("fill refused")
			}
			return err
		}
	}

	t.Run("fill", func(t *testing.T) {
		const key = "h:{fill}"
		lk, ok, held := handoff(t, holder, waiter, key, fill(key, store.Fill{Value: []byte("v1"), Tags: []string{"ta", "t{b}"}, TTL: time.Minute, Stale: time.Hour, LoadDuration: time.Millisecond}))
		if !ok {
			t.Fatal("the fill's wake-up handed nothing")
		}
		if lk.State != store.StateFresh || lk.Lease || lk.Held || lk.Entry == nil || string(lk.Entry.Value) != "v1" ||
			!slices.Equal(lk.Entry.Tags, []string{"ta", "t{b}"}) || !lk.Ticket.AtLeast(held) {
			t.Fatalf("handed %+v (entry %+v); want fresh, v1, its tags, a ticket at least %+v", lk, lk.Entry, held)
		}
		// What a lookup now answers: the same entry, the same sequence
		// (no invalidation since), and the clock then.
		now, err := waiter.Lookup(ctx, key, store.LookupRequest{})
		if err != nil || now.State != store.StateFresh {
			t.Fatalf("lookup after the fill: %+v, %v", now, err)
		}
		a, b := *lk.Entry, *now.Entry
		if string(a.Value) != string(b.Value) || !slices.Equal(a.Tags, b.Tags) || a.Ticket != b.Ticket || !a.Created.Equal(b.Created) ||
			!a.FreshUntil.Equal(b.FreshUntil) || !a.StaleUntil.Equal(b.StaleUntil) || a.LoadDuration != b.LoadDuration {
			t.Fatalf("handed entry %+v, the lookup's %+v", a, b)
		}
		if lk.Ticket.Seq > now.Ticket.Seq || !lk.Now.Equal(a.Created) || now.Now.Before(lk.Now) {
			t.Fatalf("handed ticket %+v at %v; the lookup's %+v at %v", lk.Ticket, lk.Now, now.Ticket, now.Now)
		}
		lk.Entry.Value[0] = 'x' // the caller's own copy
		if again, ok := handedAgain(t, waiter, key); ok && string(again) != "v1" {
			t.Fatalf("the handed value aliased the store's: %q", again)
		}
	})
	t.Run("negative", func(t *testing.T) {
		const key = "h:{negative}"
		lk, ok, _ := handoff(t, holder, waiter, key, fill(key, store.Fill{Negative: true, TTL: time.Minute}))
		if !ok || lk.Entry == nil || !lk.Entry.Negative || lk.State != store.StateFresh {
			t.Fatalf("handed %+v, %v; want a fresh negative entry", lk, ok)
		}
	})
	t.Run("set", func(t *testing.T) {
		const key = "h:{set}"
		lk, ok, held := handoff(t, holder, waiter, key, fill(key, store.Fill{Value: []byte("s"), TTL: time.Minute, Set: true}))
		if !ok || string(lk.Entry.Value) != "s" || lk.Entry.Ticket.Seq <= held.Seq || lk.Ticket.Seq < lk.Entry.Ticket.Seq {
			t.Fatalf("handed %+v, %v; want the Set's entry with its own sequence number, above %+v", lk, ok, held)
		}
	})

	for _, c := range []struct {
		name string
		end  func(key string) func(store.Ticket) error
	}{
		{"release", func(key string) func(store.Ticket) error {
			return func(store.Ticket) error { return holder.Release(ctx, key, 1) }
		}},
		{"invalidate", func(key string) func(store.Ticket) error {
			return func(store.Ticket) error { return holder.Invalidate(ctx, store.Invalidation{Keys: []string{key}}) }
		}},
		{"refused-fill", func(key string) func(store.Ticket) error {
			return func(tk store.Ticket) error {
				// A tag invalidated while the load ran: the fill is refused
				// and gives the lease back.
				if err := holder.Invalidate(ctx, store.Invalidation{Tags: []string{"late"}}); err != nil {
					return err
				}
				ok, err := holder.Fill(ctx, key, &store.Fill{Value: []byte("old"), Tags: []string{"late"}, Ticket: tk, Lease: 1, TTL: time.Minute})
				if ok {
					return errors.New("the fill was accepted")
				}
				return err
			}
		}},
		{"too-large", func(key string) func(store.Ticket) error {
			return fill(key, store.Fill{Value: []byte(strings.Repeat("v", 1024)), TTL: time.Minute})
		}},
		{"due-early-at-once", func(key string) func(store.Ticket) error {
			return fill(key, store.Fill{Value: []byte("v"), TTL: time.Minute, Early: time.Minute})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := "h:{" + c.name + "}"
			if lk, ok, _ := handoff(t, holder, waiter, key, c.end(key)); ok {
				t.Fatalf("handed %+v (entry %+v); want nothing", lk, lk.Entry)
			}
		})
	}

	t.Run("expired-by-the-waiter's-clock", func(t *testing.T) {
		const key = "h:{expired}"
		end := func(tk store.Ticket) error {
			err := fill(key, store.Fill{Value: []byte("v"), TTL: time.Minute})(tk)
			off.advance(2 * time.Minute) // past the entry's freshness, for the waiter only
			return err
		}
		if lk, ok, _ := handoff(t, holder, late, key, end); ok {
			t.Fatalf("handed %+v (entry %+v); want nothing", lk, lk.Entry)
		}
	})
	t.Run("off", func(t *testing.T) {
		off := newStore(t, srv.Client(t, nil), redisstore.Prefix("ho:"), redisstore.HandoffSize(0))
		const key = "h:{off}"
		lease := func(tk store.Ticket) error {
			_, err := off.Fill(ctx, key, &store.Fill{Value: []byte("v"), Ticket: tk, Lease: 1, TTL: time.Minute})
			return err
		}
		if lk, ok, _ := handoff(t, off, waiter, key, lease); ok {
			t.Fatalf("HandoffSize(0): handed %+v", lk)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		copts := []redisstore.Option{redisstore.Prefix("hoc:"), redisstore.ForceCluster()}
		h, w := newStore(t, srv.Client(t, nil), copts...), newStore(t, srv.Client(t, nil), copts...)
		wait(t, redisstore.Subscribed(w), "the Cluster waiter's subscription")
		const key = "h:{cluster}"
		end := func(tk store.Ticket) error {
			_, err := h.Fill(ctx, key, &store.Fill{Value: []byte("v"), Ticket: tk, Lease: 1, TTL: time.Minute})
			return err
		}
		if lk, ok, _ := handoff(t, h, w, key, end); ok {
			t.Fatalf("Cluster: handed %+v", lk)
		}
	})
}

// handedAgain makes a second waiter's watch of key see nothing handed: a
// watch made after the wake-up is not woken by it. It returns the value a
// lookup reads, for the aliasing check.
func handedAgain(t *testing.T, s *redisstore.Store, key string) ([]byte, bool) {
	t.Helper()
	_, handed, stop := s.WatchFill(key)
	defer stop()
	if lk, ok := handed(); ok {
		t.Fatalf("a watch made after the wake-up handed %+v", lk)
	}
	lk, err := s.Lookup(t.Context(), key, store.LookupRequest{})
	if err != nil || lk.Entry == nil {
		return nil, false
	}
	return lk.Entry.Value, true
}
