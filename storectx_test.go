package paddock

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

type storeCtxKey struct{}

// A storeCtx keeps its caller's values, reports its exact deadline, and
// ends within deadlineSlack after it: Err is nil until Done is closed and
// DeadlineExceeded after.
func TestStoreCtxEndsAfterItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ds deadlines
		parent := context.WithValue(context.Background(), storeCtxKey{}, "v")
		start := time.Now()
		x := &storeCtx{parent: parent, deadline: start.Add(100 * time.Millisecond), ds: &ds}
		// A second call whose deadline is a little later shares the slice.
		y := &storeCtx{parent: parent, deadline: start.Add(100*time.Millisecond + deadlineSlack/2), ds: &ds}

		if d, ok := x.Deadline(); !ok || !d.Equal(start.Add(100*time.Millisecond)) {
			t.Fatalf("Deadline() = %v, %v; want the call's deadline", d, ok)
		}
		if got := x.Value(storeCtxKey{}); got != "v" {
			t.Fatalf("Value = %v, want the caller's value", got)
		}
		if d1, d2 := x.Done(), x.Done(); d1 != d2 {
			t.Fatal("Done returned two channels")
		}
		if x.Done() != y.Done() {
			t.Fatal("two deadlines within the slack got two channels")
		}
		if err := x.Err(); err != nil {
			t.Fatalf("Err() = %v before the deadline", err)
		}

		time.Sleep(100*time.Millisecond - time.Nanosecond)
		synctest.Wait()
		if err := x.Err(); err != nil {
			t.Fatalf("Err() = %v before the deadline", err)
		}
		<-x.Done()
		if late := time.Since(start.Add(100 * time.Millisecond)); late < 0 || late > deadlineSlack {
			t.Fatalf("Done closed %v after the deadline, want within %v", late, deadlineSlack)
		}
		if err := x.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Err() = %v after Done, want DeadlineExceeded", err)
		}
		// A deadline past the slice gets a slice of its own.
		z := &storeCtx{parent: parent, deadline: time.Now().Add(time.Second), ds: &ds}
		select {
		case <-z.Done():
			t.Fatal("a later deadline's Done is already closed")
		default:
		}
		<-z.Done()
	})
}

// Err asked first (no Done yet) judges by the same channel.
func TestStoreCtxErrWithoutDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ds deadlines
		x := &storeCtx{parent: context.Background(), deadline: time.Now().Add(time.Second), ds: &ds}
		time.Sleep(time.Second + deadlineSlack)
		synctest.Wait()
		if err := x.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Err() = %v past the deadline and its slack", err)
		}
	})
}

// A caller whose context can end keeps a context that ends with it.
func TestStoreContextFollowsCancelableCaller(t *testing.T) {
	c := &Cache{remote: true}
	c.cfg.storeTimeout = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	sctx, done := c.storeContext(ctx)
	defer done()
	if _, ok := sctx.(*storeCtx); ok {
		t.Fatal("a cancelable caller got a storeCtx, which would not end with it")
	}
	cancel()
	<-sctx.Done()

	sctx, done = c.storeContext(context.Background())
	defer done()
	if _, ok := sctx.(*storeCtx); !ok {
		t.Fatalf("a caller that cannot end got %T, want a storeCtx", sctx)
	}
}

// context.AfterFunc and derived contexts follow a storeCtx's end without a
// goroutine of their own waiting for it, and stop cleanly.
func TestStoreCtxAfterFunc(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ds deadlines
		x := &storeCtx{parent: context.Background(), deadline: time.Now().Add(time.Second), ds: &ds}
		ran := make(chan error, 1)
		context.AfterFunc(x, func() { ran <- x.Err() })
		child, cancel := context.WithCancel(x)
		defer cancel()
		stopped := context.AfterFunc(x, func() { t.Error("a stopped AfterFunc ran") })
		if !stopped() {
			t.Fatal("stop reported the function already started")
		}
		synctest.Wait()
		select {
		case <-ran:
			t.Fatal("AfterFunc ran before the deadline")
		default:
		}
		time.Sleep(time.Second + deadlineSlack)
		if err := <-ran; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("AfterFunc ran with Err() = %v, want DeadlineExceeded", err)
		}
		<-child.Done()
		if !errors.Is(child.Err(), context.DeadlineExceeded) {
			t.Fatalf("derived context ended with %v", child.Err())
		}
		// Past its end, f runs at once.
		late := make(chan struct{})
		context.AfterFunc(x, func() { close(late) })
		<-late
	})
}
