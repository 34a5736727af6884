package paddock

import (
	"context"
	"errors"
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
		if lazy.Err() != nil || lazy.Value(ctxKey{}) != "v" || scopeOf(lazy) != sc {
			t.Fatalf("Err %v, value %v, scope %v", lazy.Err(), lazy.Value(ctxKey{}), scopeOf(lazy) == sc)
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
