package proptest

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/memstore"
)

// TestStaleIfErrorJoinerPastWindow is a counterexample the machine found
// for invariant 3, written out by hand as a regression test (the core now
// judges the window when the load fails; it did not when this was found).
//
// A flight that loads over an entry inside its stale-if-error window keeps
// the lookup that started it; when the load fails, it hands out the old
// value as stale-if-error if the entry was inside its window *at that
// lookup*. A Get that began after the window closed, whose own lookup
// found nothing servable and the lease held, joins that flight and takes
// the value (the join rule's ticket check passes: no invalidation
// happened), though every window of the value ended before it began. One
// node, one key:
//
//	 0s  Set b=v1            fresh until 10s, stale until 30s, error until 50s
//	49s  Get G1              v1 is in its error window: G1 takes the lease, loads
//	53s  Get G2              v1 is past every window (dropped); the lease is G1's:
//	                         G2 joins G1's flight
//	     G1's load fails     the flight's outcome: v1 as stale-if-error (judged at 49s)
//	     G2 returns v1 (stale-if-error), 3s after the value's last window closed
//
// G2 must not get v1. (G1 may get v1 or the error: it began inside the
// window, but its load failed after the window closed.)
func TestStaleIfErrorJoinerPastWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store, err := memstore.New(memstore.MaxBytes(1<<20), memstore.MaxEntryBytes(4<<10))
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		c, err := paddock.New(store, paddock.LeaseTTL(leaseTTL))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		l, err := paddock.NewLoader[string](c, "row",
			paddock.TTL(ttl), paddock.Stale(staleFor), paddock.StaleIfError(40*time.Second),
			paddock.Beta(0), paddock.LoadTimeout(45*time.Second))
		if err != nil {
			t.Fatal(err)
		}

		gate := make(chan error)
		load := func(ctx context.Context) (string, error) {
			select {
			case err := <-gate:
				return "v2", err
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		type res struct {
			r   paddock.Result[string]
			err error
		}
		fetch := func() chan res {
			ch := make(chan res, 1)
			go func() {
				r, err := l.Fetch(ctx, "b", load)
				ch <- res{r, err}
			}()
			synctest.Wait()
			return ch
		}

		if err := l.Set(ctx, "b", "v1"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(49 * time.Second)
		g1 := fetch() // loads
		time.Sleep(4 * time.Second)
		g2 := fetch()                    // joins G1's flight
		gate <- errors.New("db is down") // G1's load fails
		synctest.Wait()

		r1 := <-g1
		t.Logf("G1 returned %q (%v), %v", r1.r.Value, r1.r.Status, r1.err)
		select {
		case r := <-g2:
			if r.err == nil && r.r.Value == "v1" {
				t.Errorf("G2, which began at 53s, returned v1 as %v; v1's stale-if-error window ended at 50s", r.r.Status)
			}
		default: // still waiting (for a load of its own): fine
			gate <- nil
			synctest.Wait()
			r := <-g2
			t.Logf("G2 returned %q (%v), %v", r.r.Value, r.r.Status, r.err)
		}
	})
}
