package proptest

import (
	"context"
	"testing"
	"time"

	"github.com/paddockcache/paddock/store"
)

// callTimeout bounds one call to a store outside the bubble, in real time.
const callTimeout = 5 * time.Second

// outside runs functions on goroutines outside every synctest bubble. A
// bubbled goroutine that waits for one is not durably blocked, so
// synctest.Wait waits for the call to finish, and the network code runs
// on the real clock (inside a bubble, time.Now is fake, and socket
// deadlines computed from it would lie in the past).
type outside struct {
	work  chan func()
	dones chan chan struct{} // a pool of reply channels made outside the bubble
	// back carries functions that a call running outside hands back to
	// the bubble (see inside), to the bubbled goroutines waiting in do.
	back chan func()
}

func newOutside(t *testing.T) *outside {
	o := &outside{work: make(chan func()), dones: make(chan chan struct{}, 64), back: make(chan func())}
	for range cap(o.dones) {
		o.dones <- make(chan struct{}, 1)
	}
	go func() {
		for f := range o.work {
			go f()
		}
	}()
	t.Cleanup(func() { close(o.work) })
	return o
}

// do runs f outside the bubble and waits for it. A panic in f is raised
// again in the caller.
func (o *outside) do(f func()) {
	done := <-o.dones
	var p any
	o.work <- func() {
		defer func() {
			p = recover()
			done <- struct{}{}
		}()
		f()
	}
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case g := <-o.back:
			g()
		}
	}
	o.dones <- done
	if p != nil {
		panic(p)
	}
}

// inside runs f, from a call running outside the bubble, on a bubbled
// goroutine waiting in do (the caller's, say) and waits for it: a store
// outside the bubble calls hooks.FillGap from its Fill, and the racing
// invalidation that the machine runs there must run in the bubble, where
// the Cache's channels belong.
func (o *outside) inside(f func()) {
	done := <-o.dones
	var p any
	o.back <- func() {
		defer func() {
			p = recover()
			done <- struct{}{}
		}()
		f()
	}
	<-done
	o.dones <- done
	if p != nil {
		panic(p)
	}
}

// outsideStore calls a store from outside the bubble. It drops the
// callers' contexts (their deadlines are on the bubble's clock) for a real
// timeout of its own.
type outsideStore struct {
	out  *outside
	s    store.Store
	tick func() // publishes the bubble's clock to the store's offset
}

var _ store.Remote = (*outsideStore)(nil)

func (p *outsideStore) Remote() bool { return true }

func (p *outsideStore) call(f func(ctx context.Context)) {
	p.tick()
	p.out.do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		f(ctx)
	})
}

func (p *outsideStore) Lookup(_ context.Context, key string, req store.LookupRequest) (lk store.Lookup, err error) {
	p.call(func(ctx context.Context) { lk, err = p.s.Lookup(ctx, key, req) })
	return lk, err
}

func (p *outsideStore) Fill(_ context.Context, key string, f *store.Fill) (ok bool, err error) {
	p.call(func(ctx context.Context) { ok, err = p.s.Fill(ctx, key, f) })
	return ok, err
}

func (p *outsideStore) Release(_ context.Context, key string, lease uint64) (err error) {
	p.call(func(ctx context.Context) { err = p.s.Release(ctx, key, lease) })
	return err
}

func (p *outsideStore) Invalidate(_ context.Context, inv store.Invalidation) (err error) {
	p.call(func(ctx context.Context) { err = p.s.Invalidate(ctx, inv) })
	return err
}

func (p *outsideStore) Close() error { return p.s.Close() }
