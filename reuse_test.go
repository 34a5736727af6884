package paddock

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
)

// A miss's flight goes back to its Loader's pool once its owner is done
// with it (see group.reuse). These tests check the two ways a reused
// flight could leak into the next: a load that kept its context, and a
// caller that joined the flight. Each runs with an owner whose context
// cannot end (the flight runs on its goroutine) and with one whose context
// can (the flight runs on a goroutine of the Cache).

// withOwnerContexts runs f in a bubble once with each kind of context for
// the owner.
func withOwnerContexts(t *testing.T, f func(t *testing.T, ctx context.Context)) {
	for _, name := range []string{"inline", "spawned"} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				if name == "spawned" {
					var cancel context.CancelFunc
					ctx, cancel = context.WithCancel(ctx)
					defer cancel()
				}
				f(t, ctx)
			})
		})
	}
}

// TestReusedFlightIgnoresKeptContext: a load that keeps its context past
// its end and calls Private with it later does not make private the load
// of another key whose flight is the one it ran on, reused.
func TestReusedFlightIgnoresKeptContext(t *testing.T) {
	withOwnerContexts(t, reusedFlightIgnoresKeptContext)
}

func reusedFlightIgnoresKeptContext(t *testing.T, ctx context.Context) {
	c := testCache(t)
	l, err := NewLoader[string](c, "reuse")
	if err != nil {
		t.Fatal(err)
	}
	for attempt := range 100 {
		a, b := fmt.Sprint("a", attempt), fmt.Sprint("b", attempt)
		var (
			kept     context.Context
			flA, flB privatizer
		)
		if _, err := l.Get(ctx, a, func(ctx context.Context) (string, error) {
			kept, flA = ctx, flightOf(ctx)
			return "A", nil
		}); err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		done := make(chan string)
		go func() {
			v, _ := l.Get(ctx, b, func(ctx context.Context) (string, error) {
				flB = flightOf(ctx)
				<-release
				return "B", nil
			})
			done <- v
		}()
		synctest.Wait() // b's load runs, and waits
		if flB != flA {
			// The pool gave b's miss another flight (under the race
			// detector it drops some of what it is given): try again.
			close(release)
			<-done
			continue
		}
		Private(kept)
		Tag(kept, "t")
		// b's flight is still b's: a second caller joins it.
		joined := make(chan string)
		go func() {
			v, _ := l.Get(ctx, b, func(context.Context) (string, error) { return "second load", nil })
			joined <- v
		}()
		synctest.Wait()
		close(release)
		if v := <-done; v != "B" {
			t.Fatalf("Get(b) = %q, want B", v)
		}
		if v := <-joined; v != "B" {
			t.Fatalf("second Get(b) = %q, want B from the first one's load: the kept context reached b's flight", v)
		}
		if err := c.InvalidateTags(ctx, "t"); err != nil {
			t.Fatal(err)
		}
		if _, found, err := l.Peek(ctx, b); !found || err != nil {
			t.Fatalf("Peek(b) = %v, %v after invalidating a's late tag, want b's entry", found, err)
		}
		return
	}
	t.Fatal("no miss reused a flight in 100 tries")
}

// TestJoinedFlightNotReused: a flight that another caller joined is not
// reused while that caller has yet to take its outcome.
func TestJoinedFlightNotReused(t *testing.T) {
	withOwnerContexts(t, joinedFlightNotReused)
}

func joinedFlightNotReused(t *testing.T, ctx context.Context) {
	c := testCache(t)
	l, err := NewLoader[string](c, "reuse")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		key := fmt.Sprint("k", i)
		release := make(chan struct{})
		owner := make(chan string)
		go func() {
			v, _ := l.Get(ctx, key, func(context.Context) (string, error) {
				<-release
				return "v", nil
			})
			owner <- v
		}()
		synctest.Wait() // the owner's load runs, on its goroutine
		joiner := make(chan string)
		go func() {
			v, err := l.Get(ctx, key, func(context.Context) (string, error) { return "joiner's load", nil })
			if err != nil {
				v = err.Error()
			}
			joiner <- v
		}()
		synctest.Wait() // the joiner waits on the owner's flight
		close(release)
		if v := <-owner; v != "v" {
			t.Fatalf("owner's Get = %q, want v", v)
		}
		// The owner is done; a miss of another key may take a flight
		// from the pool meanwhile.
		if _, err := l.Get(ctx, fmt.Sprint("other", i), func(context.Context) (string, error) { return "other", nil }); err != nil {
			t.Fatal(err)
		}
		if v := <-joiner; v != "v" {
			t.Fatalf("joiner's Get = %q, want v from the owner's load", v)
		}
	}
}

// flightOf returns the flight of the load whose context is ctx.
func flightOf(ctx context.Context) privatizer {
	s := scopeOf(ctx).lock()
	if s == nil {
		return nil
	}
	defer s.mu.Unlock()
	return s.fl
}
