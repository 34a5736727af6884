package paddock

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"testing/synctest"
	"time"

	"github.com/paddockcache/paddock/memstore"
)

type ctxKey struct{}

func testCache(t *testing.T) *Cache {
	t.Helper()
	s, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A load's context ends at its deadline whether or not Done was asked
// for, carries the caller's values and the scope, and is detached from the
// caller's cancellation.
func TestLoadCtxDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testCache(t)
		parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
		lazy, sc := c.newLoadCtx(parent, time.Second, time.Now())
		armed, _ := c.newLoadCtx(parent, time.Second, time.Now())
		late, _ := c.newLoadCtx(parent, time.Second, time.Now())
		done := armed.Done()
		cancelParent()
		if lazy.Err() != nil || lazy.Value(ctxKey{}) != "v" || scopeOf(lazy).s != sc {
			t.Fatalf("Err %v, value %v, scope %v", lazy.Err(), lazy.Value(ctxKey{}), scopeOf(lazy).s == sc)
		}
		if d, ok := lazy.Deadline(); !ok || !d.Equal(time.Now().Add(time.Second)) {
			t.Errorf("Deadline %v %v", d, ok)
		}
		time.Sleep(time.Second)
		synctest.Wait() // the armed context's timer has run
		if !errors.Is(lazy.Err(), context.DeadlineExceeded) {
			t.Errorf("past the deadline, never armed: Err %v", lazy.Err())
		}
		select {
		case <-done:
		default:
			t.Fatal("past the deadline: Done not closed")
		}
		if !errors.Is(armed.Err(), context.DeadlineExceeded) {
			t.Errorf("armed: Err %v", armed.Err())
		}
		select {
		case <-late.Done(): // first asked after the deadline: closed at once
		default:
			t.Error("Done first asked after the deadline is not closed")
		}
		select {
		case <-lazy.Done(): // armed after the end: closed at once
		default:
			t.Error("Done asked after the deadline is not closed")
		}
	})
}

// Closing the Cache ends its loads' contexts, armed or not; contexts
// derived from a load's context end with it.
func TestLoadCtxClosing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testCache(t)
		lazy, _ := c.newLoadCtx(context.Background(), time.Hour, time.Now())
		armed, _ := c.newLoadCtx(context.Background(), time.Hour, time.Now())
		child, cancelChild := context.WithTimeout(armed, time.Minute)
		defer cancelChild()
		ran := make(chan struct{})
		stop := context.AfterFunc(armed, func() { close(ran) })
		defer stop()
		c.Close()
		synctest.Wait()
		if !errors.Is(lazy.Err(), context.Canceled) || !errors.Is(armed.Err(), context.Canceled) {
			t.Errorf("after Close: %v, %v", lazy.Err(), armed.Err())
		}
		<-ran
		<-child.Done()
		if !errors.Is(child.Err(), context.Canceled) {
			t.Errorf("derived context: %v", child.Err())
		}
	})
}

// A derived context's own, earlier deadline still rules it; the load's
// cancel at the end of the load ends everything derived.
func TestLoadCtxDerived(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testCache(t)
		lctx, _ := c.newLoadCtx(context.Background(), time.Hour, time.Now())
		short, cancel := context.WithTimeout(lctx, time.Second)
		defer cancel()
		time.Sleep(time.Second)
		<-short.Done()
		if !errors.Is(short.Err(), context.DeadlineExceeded) || lctx.Err() != nil {
			t.Errorf("short %v, load %v", short.Err(), lctx.Err())
		}
		long, cancel2 := context.WithCancel(lctx)
		defer cancel2()
		stopped := context.AfterFunc(lctx, func() {})
		if !stopped() {
			t.Error("stop of a pending AfterFunc returned false")
		}
		lctx.finish()
		<-long.Done()
		if !errors.Is(lctx.Err(), context.Canceled) {
			t.Errorf("after cancel: %v", lctx.Err())
		}
	})
}

// finish, the end of the load, ends its context whether Done or AfterFunc
// armed it before, after, or at the same time.
func TestLoadCtxFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testCache(t)
		lazy, _ := c.newLoadCtx(context.Background(), time.Hour, time.Now())
		armed, _ := c.newLoadCtx(context.Background(), time.Hour, time.Now())
		done := armed.Done()
		ran := make(chan struct{})
		context.AfterFunc(armed, func() { close(ran) })
		lazy.finish()
		armed.finish()
		<-done
		<-ran
		if !errors.Is(lazy.Err(), context.Canceled) || !errors.Is(armed.Err(), context.Canceled) {
			t.Fatalf("after finish: Err %v (never armed), %v (armed)", lazy.Err(), armed.Err())
		}
		late := make(chan struct{})
		context.AfterFunc(lazy, func() { close(late) })
		<-lazy.Done() // armed after the end: closed at once
		<-late
	})
	// Armed on another goroutine while the load ends: either finish sees
	// the context armed or arm sees it ended, so Done is always closed.
	c := testCache(t)
	for range 1000 {
		lctx, _ := c.newLoadCtx(context.Background(), time.Hour, time.Now())
		got := make(chan (<-chan struct{}))
		go func() { got <- lctx.Done() }()
		lctx.finish()
		select {
		case <-<-got:
		case <-time.After(time.Minute):
			t.Fatal("Done armed while the load ended is never closed")
		}
	}
}

// Once its load is done with it, the state of a load's context goes to
// the next load. A context the old load kept then behaves as an ended
// one (Err, Done, AfterFunc), keeps its values and deadline, and reaches
// nothing of the new load's scope: its tags, windows, NoStore and Private
// are dropped.
func TestLoadCtxReused(t *testing.T) {
	c := testCache(t)
	parent := context.WithValue(context.Background(), ctxKey{}, "v")
	for range 100 {
		old, osc := c.newLoadCtx(parent, time.Hour, time.Now())
		deadline, _ := old.Deadline()
		Tag(old, "early")
		old.finish()
		c.doneLoading(old)

		next, nsc := c.newLoadCtx(context.Background(), time.Hour, time.Now())
		if nsc != osc {
			// The pool gave another state (under the race detector it
			// drops some of what it is given): try again.
			next.finish()
			continue
		}
		if len(nsc.tags) != 0 {
			t.Fatalf("a reused scope starts with tags %q", nsc.tags)
		}
		if !errors.Is(old.Err(), context.Canceled) {
			t.Errorf("kept context of a reused state: Err %v, want Canceled", old.Err())
		}
		select {
		case <-old.Done():
		default:
			t.Error("kept context of a reused state: Done not closed")
		}
		if d, ok := old.Deadline(); !ok || !d.Equal(deadline) || old.Value(ctxKey{}) != "v" {
			t.Errorf("kept context: Deadline %v %v (want %v), Value %v", d, ok, deadline, old.Value(ctxKey{}))
		}
		ran := make(chan struct{})
		if stop := context.AfterFunc(old, func() { close(ran) }); stop() {
			t.Error("AfterFunc of an ended context: stop reports it pending")
		}
		<-ran
		Tag(old, "late")
		SetTTL(old, 0)
		SetStale(old, 0)
		SetStaleIfError(old, 0)
		KeepAtMost(old, 0)
		NoStore(old)
		Private(old)
		if s := scopeOf(old).lock(); s != nil {
			t.Error("kept context still names a scope")
			s.mu.Unlock()
		}
		if Refreshing(old) {
			t.Error("kept context: Refreshing")
		}
		nsc.mu.Lock()
		got := nsc.scopeFields
		got.tags = nil
		touched := !reflect.DeepEqual(got, scopeFields{}) || len(nsc.tags) != 0
		nsc.mu.Unlock()
		if touched {
			t.Fatalf("a kept context wrote to the next load's scope: %+v", nsc.scopeFields)
		}
		if next.Err() != nil {
			t.Errorf("the next load's context: Err %v", next.Err())
		}
		next.finish()
		return
	}
	t.Fatal("no load context was reused in 100 tries")
}

// A load's context that was armed (Done, AfterFunc) is reused once its
// load has ended, as any other: the kept view's Done stays closed, its
// AfterFuncs have run, and its timer, were it to fire late, ends nothing
// of the next load's.
func TestLoadCtxArmedReused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testCache(t)
		for range 100 {
			armed, asc := c.newLoadCtx(context.Background(), time.Second, time.Now())
			done := armed.Done()
			ran := make(chan struct{})
			stop := context.AfterFunc(armed, func() { close(ran) })
			armed.finish()
			<-done
			<-ran
			c.doneLoading(armed)
			next, nsc := c.newLoadCtx(context.Background(), time.Hour, time.Now())
			if nsc != asc {
				next.finish()
				c.doneLoading(next)
				continue
			}
			if stop() {
				t.Error("stop of an AfterFunc that ran reports it pending")
			}
			if !errors.Is(armed.Err(), context.Canceled) {
				t.Errorf("kept armed context: Err %v", armed.Err())
			}
			select {
			case <-armed.Done():
			default:
				t.Error("kept armed context: Done not closed")
			}
			time.Sleep(2 * time.Second) // past the old deadline
			synctest.Wait()
			if err := next.Err(); err != nil {
				t.Fatalf("the next load's context, on the reused state: Err %v", err)
			}
			select {
			case <-next.Done():
				t.Fatal("the next load's context is done")
			default:
			}
			next.finish()
			return
		}
		t.Fatal("no armed load context was reused in 100 tries")
	})
}

// A flight does not take the tags of the next load that reuses its
// load's scope for its own: an invalidation of them does not doom it.
func TestFlightForgetsReusedScope(t *testing.T) {
	c := testCache(t)
	g := newGroup[string]()
	for range 100 {
		x, sc := c.newLoadCtx(context.Background(), time.Hour, time.Now())
		f := g.newFlight("k", nil, true)
		f.loading(0, sc)
		Tag(x, "mine")
		if !f.knows([]string{"mine"}) {
			t.Fatal("a flight does not know its load's tag")
		}
		x.finish()
		c.doneLoading(x) // the flight has not let go of the scope yet
		next, nsc := c.newLoadCtx(context.Background(), time.Hour, time.Now())
		Tag(next, "theirs")
		reused := nsc == sc
		next.finish()
		if !reused {
			continue
		}
		if f.knows([]string{"theirs"}) || f.knows([]string{"mine"}) {
			t.Fatal("a flight knows the tags of the load that reused its scope")
		}
		return
	}
	t.Fatal("no load context was reused in 100 tries")
}

// A load that saw its context's deadline pass does not give its state
// back: its kept context's Err stays DeadlineExceeded.
func TestLoadCtxTimedOutNotReused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testCache(t)
		x, _ := c.newLoadCtx(context.Background(), time.Second, time.Now())
		time.Sleep(time.Second)
		if !errors.Is(x.Err(), context.DeadlineExceeded) {
			t.Fatalf("past the deadline: Err %v", x.Err())
		}
		x.finish()
		c.doneLoading(x)
		for range 20 {
			y, _ := c.newLoadCtx(context.Background(), time.Hour, time.Now())
			if y.st == x.st {
				t.Fatal("the state of a load that saw its deadline pass was reused")
			}
			y.finish()
			c.doneLoading(y)
		}
		if !errors.Is(x.Err(), context.DeadlineExceeded) {
			t.Errorf("kept context after its load: Err %v, want DeadlineExceeded still", x.Err())
		}
	})
}

// Giving a load's context back twice changes nothing the second time: the
// state, and its batch of views, may already be the next load's.
func TestLoadCtxDoneTwice(t *testing.T) {
	c := testCache(t)
	for range 100 {
		x, _ := c.newLoadCtx(context.Background(), time.Hour, time.Now())
		x.finish()
		c.doneLoading(x)
		y, _ := c.newLoadCtx(context.Background(), time.Hour, time.Now())
		if y.st != x.st {
			y.finish()
			continue
		}
		views := len(y.st.views)
		c.doneLoading(x)
		if len(y.st.views) != views || y.Err() != nil {
			t.Fatalf("a second doneLoading of an old load took the next load's views (%d left of %d) or ended it (%v)", len(y.st.views), views, y.Err())
		}
		y.finish()
		return
	}
	t.Fatal("no load context was reused in 100 tries")
}
