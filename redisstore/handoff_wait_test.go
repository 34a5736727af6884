package redisstore_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// probe wraps a Store as a waiting process's: it counts the lookups sent
// to Redis, holds the lookups after the first until a gate opens, can
// answer them with the last Held reply without Redis (a holder still
// loading), can hold its watches' wake-ups back as a slow subscription
// would, and records what the wake-ups handed over.
type probe struct {
	*redisstore.Store

	mu      sync.Mutex
	real    int            // lookups sent to Redis
	fake    bool           // answer lookups with last, without Redis
	last    store.Lookup   // the last Held reply from Redis
	gate    chan struct{}  // lookups after the first wait for it
	blocked chan struct{}  // closed when a lookup waits for gate
	hold    bool           // wake-ups wait for release
	watches []*probeWatch  // the watches on
	handed  []store.Lookup // what handed returned with ok
	// answered, if set, is called with each reply before it is returned
	// (real: it came from Redis).
	answered func(lk store.Lookup, real bool)
	// watchGate, if set, holds the first WatchFill back until it is
	// closed, once watching is; a wake-up that has arrived by then is
	// passed on before WatchFill returns.
	watchGate, watching chan struct{}
	watched             bool
}

type probeWatch struct {
	real   <-chan struct{}
	mine   chan struct{}
	closed bool
}

func newProbe(s *redisstore.Store) *probe {
	return &probe{Store: s, gate: make(chan struct{}), blocked: make(chan struct{})}
}

func (p *probe) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	p.mu.Lock()
	first := p.real == 0 && !p.fake
	p.mu.Unlock()
	if !first {
		select {
		case <-p.blocked:
		default:
			close(p.blocked)
		}
		select {
		case <-p.gate:
		case <-ctx.Done():
			return store.Lookup{}, ctx.Err()
		}
	}
	p.mu.Lock()
	fake, lk := p.fake, p.last
	p.mu.Unlock()
	var err error
	if !fake {
		lk, err = p.Store.Lookup(ctx, key, req)
		p.mu.Lock()
		p.real++
		if err == nil && lk.Held {
			p.last = lk
		}
		p.mu.Unlock()
	}
	if err == nil && p.answered != nil {
		p.answered(lk, !fake)
	}
	return lk, err
}

func (p *probe) WatchFill(key string) (<-chan struct{}, func() (store.Lookup, bool), func()) {
	real, handed, stop := p.Store.WatchFill(key)
	w := &probeWatch{real: real, mine: make(chan struct{})}
	done := make(chan struct{})
	p.mu.Lock()
	p.watches = append(p.watches, w)
	first := !p.watched
	p.watched = true
	p.mu.Unlock()
	if first && p.watchGate != nil {
		close(p.watching)
		<-p.watchGate
		select {
		case <-real:
			p.mu.Lock()
			p.deliverLocked(w)
			p.mu.Unlock()
		default:
		}
	}
	go func() {
		select {
		case <-real:
		case <-done:
			return
		}
		p.mu.Lock()
		if !p.hold {
			p.deliverLocked(w)
		}
		p.mu.Unlock()
	}()
	return w.mine, func() (store.Lookup, bool) {
			select {
			case <-w.mine:
			default:
				return store.Lookup{}, false // not delivered yet
			}
			lk, ok := handed()
			if ok {
				p.mu.Lock()
				p.handed = append(p.handed, lk)
				p.mu.Unlock()
			}
			return lk, ok
		}, func() {
			close(done)
			stop()
			p.mu.Lock()
			p.watches = slices.DeleteFunc(p.watches, func(x *probeWatch) bool { return x == w })
			p.mu.Unlock()
		}
}

// deliverLocked passes w's wake-up on. The caller holds p.mu.
func (p *probe) deliverLocked(w *probeWatch) {
	if !w.closed {
		w.closed = true
		close(w.mine)
	}
}

// release ends the hold: the wake-ups that arrived meanwhile are passed
// on before release returns.
func (p *probe) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold = false
	for _, w := range p.watches {
		select {
		case <-w.real:
			p.deliverLocked(w)
		default:
		}
	}
}

// arrived waits until a wake-up has reached the Store's subscription for
// one of the watches on, held back or not.
func (p *probe) arrived(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		p.mu.Lock()
		for _, w := range p.watches {
			select {
			case <-w.real:
				p.mu.Unlock()
				return
			default:
			}
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for a wake-up")
		}
		time.Sleep(time.Millisecond) // polling a state, not ordering events
	}
}

// handedCount is how many answers the wake-ups handed over.
func (p *probe) handedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.handed)
}

// loaderValue is s as a Loader[string] of version 0 stores it: the
// loader's version, a uvarint, then the bytes.
func loaderValue(s string) []byte { return append([]byte{0}, s...) }

// getAsync runs l.Get(key) on a goroutine whose load fails the Get: the
// caller must be served what another process loaded.
func getAsync(ctx context.Context, l *paddock.Loader[string], key string) (done <-chan struct{}, val *string, err *error) {
	ch := make(chan struct{})
	val, err = new(string), new(error)
	go func() {
		defer close(ch)
		*val, *err = l.Get(ctx, key, func(context.Context) (string, error) {
			return "", errors.New("loaded: the wait did not end with another process's fill")
		})
	}()
	return ch, val, err
}

// TestHandoffServesWaiters: a Cache waiting for another process's load is
// served the entry its fill's wake-up carried, without looking the key up
// again. The waiter's second lookup is held until the fill's wake-up has
// reached it, and then answers "still held" without Redis, so only the
// wake-up can end the wait.
func TestHandoffServesWaiters(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	opts := []redisstore.Option{redisstore.Prefix("hs:")}
	raw := newStore(t, srv.Client(t, nil), opts...)
	bs := newProbe(newStore(t, srv.Client(t, nil), opts...))
	wait(t, redisstore.Subscribed(bs.Store), "b's subscription")
	b := newLoader(t, newCache(t, bs), "n", paddock.TTL(time.Minute))
	const key = "n:k"

	tk := lease(t, raw, key, 1)
	bs.hold = true
	bs.answered = func(_ store.Lookup, real bool) {
		if !real {
			bs.release()
		}
	}
	bDone, bVal, bErr := getAsync(ctx, b, "k")
	wait(t, bs.blocked, "b's second lookup") // its watch is on
	if ok, err := raw.Fill(ctx, key, &store.Fill{Value: loaderValue("from a"), Ticket: tk, Lease: 1, TTL: time.Minute}); !ok || err != nil {
		t.Fatalf("a's fill: %v, %v", ok, err)
	}
	bs.arrived(t)
	bs.mu.Lock()
	bs.fake = true // the lease is "still held"
	bs.mu.Unlock()
	close(bs.gate)
	wait(t, bDone, "b's Get")
	if *bErr != nil || *bVal != "from a" {
		t.Fatalf("b: %q, %v; want a's value", *bVal, *bErr)
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.real != 1 || len(bs.handed) != 1 {
		t.Fatalf("b sent %d lookups to Redis and was handed %d entries; want 1 and 1", bs.real, len(bs.handed))
	}
}

// TestHandoffOlderThanTheLookupIgnored: a wake-up that arrives late, after
// the waiter's next lookup, may carry an entry that an invalidation has
// dropped since: here a's fill wakes b, but before its wake-up reaches b
// the key is invalidated, c takes the lease, and b's next lookup finds it
// held with a later ticket. The entry handed over is older than that
// lookup: b must not serve it, and serves c's.
func TestHandoffOlderThanTheLookupIgnored(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	opts := []redisstore.Option{redisstore.Prefix("hi:")}
	raw := newStore(t, srv.Client(t, nil), opts...)
	bs := newProbe(newStore(t, srv.Client(t, nil), opts...))
	wait(t, redisstore.Subscribed(bs.Store), "b's subscription")
	b := newLoader(t, newCache(t, bs), "n", paddock.TTL(time.Minute))
	const key = "n:k"

	tkA := lease(t, raw, key, 1)
	bs.hold = true
	var second store.Ticket
	bs.answered = func(lk store.Lookup, real bool) {
		bs.mu.Lock()
		n := bs.real
		bs.mu.Unlock()
		if n == 2 {
			second = lk.Ticket
			bs.release() // the held wake-up reaches b now, before this reply
		}
	}
	bDone, bVal, bErr := getAsync(ctx, b, "k")
	wait(t, bs.blocked, "b's second lookup") // its watch is on
	if ok, err := raw.Fill(ctx, key, &store.Fill{Value: loaderValue("a"), Ticket: tkA, Lease: 1, TTL: time.Minute}); !ok || err != nil {
		t.Fatalf("a's fill: %v, %v", ok, err)
	}
	bs.arrived(t)
	if err := raw.Invalidate(ctx, store.Invalidation{Keys: []string{key}}); err != nil {
		t.Fatal(err)
	}
	tkC := lease(t, raw, key, 3)
	close(bs.gate) // b's second lookup finds the lease held by c
	deadline := time.Now().Add(time.Minute)
	for bs.handedCount() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("b was never handed a's entry")
		}
		time.Sleep(time.Millisecond) // polling a state, not ordering events
	}
	if ok, err := raw.Fill(ctx, key, &store.Fill{Value: loaderValue("c"), Ticket: tkC, Lease: 3, TTL: time.Minute}); !ok || err != nil {
		t.Fatalf("c's fill: %v, %v", ok, err)
	}
	wait(t, bDone, "b's Get")
	if *bErr != nil || *bVal != "c" {
		t.Fatalf("b: %q, %v; want c's value (a's was invalidated)", *bVal, *bErr)
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if h := bs.handed[0]; string(h.Entry.Value) != string(loaderValue("a")) || h.Ticket.AtLeast(second) {
		t.Fatalf("first handed %+v; want a's entry, older than b's second lookup (%+v)", h, second)
	}
}

// failingInvalidations is a probe whose invalidations never reach Redis:
// its Cache keeps them pending.
type failingInvalidations struct{ *probe }

func (failingInvalidations) Invalidate(context.Context, store.Invalidation) error {
	return errors.New("the invalidation was lost")
}

// TestHandoffCoveredByPendingInvalidationIgnored: an entry handed over
// that an invalidation pending in the waiting process covers is not
// served, as a lookup's reply would not be: b invalidates the key while it
// waits (Redis never hears of it), a fills, and b, handed a's entry, looks
// the key up again, takes the lease and loads its own value.
func TestHandoffCoveredByPendingInvalidationIgnored(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	opts := []redisstore.Option{redisstore.Prefix("hp:")}
	raw := newStore(t, srv.Client(t, nil), opts...)
	bs := newProbe(newStore(t, srv.Client(t, nil), opts...))
	wait(t, redisstore.Subscribed(bs.Store), "b's subscription")
	bc := newCache(t, failingInvalidations{bs})
	b := newLoader(t, bc, "n", paddock.TTL(time.Minute))
	const key = "n:k"

	tk := lease(t, raw, key, 1)
	bs.hold = true
	bs.answered = func(_ store.Lookup, real bool) {
		if !real {
			bs.mu.Lock()
			bs.fake = false // one "still held", then Redis again
			bs.mu.Unlock()
			bs.release()
		}
	}
	loaded := make(chan struct{}, 1)
	bDone := make(chan struct{})
	var (
		bVal string
		bErr error
	)
	go func() {
		defer close(bDone)
		bVal, bErr = b.Get(ctx, "k", func(context.Context) (string, error) {
			loaded <- struct{}{}
			return "from b", nil
		})
	}()
	wait(t, bs.blocked, "b's second lookup") // its watch is on
	if err := bc.Invalidate(ctx, key); !errors.Is(err, paddock.ErrStoreUnavailable) {
		t.Fatalf("b's invalidation: %v; want it pending", err)
	}
	if ok, err := raw.Fill(ctx, key, &store.Fill{Value: loaderValue("from a"), Ticket: tk, Lease: 1, TTL: time.Minute}); !ok || err != nil {
		t.Fatalf("a's fill: %v, %v", ok, err)
	}
	bs.arrived(t)
	bs.mu.Lock()
	bs.fake = true
	bs.mu.Unlock()
	close(bs.gate)
	wait(t, bDone, "b's Get")
	if bErr != nil || bVal != "from b" || len(loaded) != 1 {
		t.Fatalf("b: %q, %v (loads %d); want its own load's value", bVal, bErr, len(loaded))
	}
	if n := bs.handedCount(); n != 1 {
		t.Fatalf("b was handed %d entries; want a's", n)
	}
}

// TestHandoffNotAfterThePlansLookup: a flight whose first wait is ended by
// a fill's wake-up does not serve the entry handed over, but looks the key
// up once for all its callers: the lookup it was started with was sent
// before its joiners came, and they could not take the entry (each would
// look it up on its own). Here 64 callers of one process wait for another
// process's lease, and the fill's wake-up is in before the flight's first
// wait begins.
func TestHandoffNotAfterThePlansLookup(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	opts := []redisstore.Option{redisstore.Prefix("hn:")}
	raw := newStore(t, srv.Client(t, nil), opts...)
	bs := newProbe(newStore(t, srv.Client(t, nil), opts...))
	close(bs.gate)
	bs.watchGate, bs.watching = make(chan struct{}), make(chan struct{})
	wait(t, redisstore.Subscribed(bs.Store), "b's subscription")
	b := newLoader(t, newCache(t, bs), "n", paddock.TTL(time.Minute))
	const key = "n:k"

	tk := lease(t, raw, key, 1)
	const callers = 64
	var entered, done sync.WaitGroup
	entered.Add(callers)
	vals := make([]string, callers)
	for i := range callers {
		done.Go(func() {
			entered.Done()
			v, err := b.Get(ctx, "k", func(context.Context) (string, error) {
				return "", errors.New("b loaded")
			})
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
			}
			vals[i] = v
		})
	}
	entered.Wait()
	wait(t, bs.watching, "b's flight to watch the key")
	if ok, err := raw.Fill(ctx, key, &store.Fill{Value: loaderValue("from a"), Ticket: tk, Lease: 1, TTL: time.Minute}); !ok || err != nil {
		t.Fatalf("a's fill: %v, %v", ok, err)
	}
	bs.arrived(t)
	close(bs.watchGate)
	done.Wait()
	for i, v := range vals {
		if v != "from a" {
			t.Fatalf("caller %d: %q; want a's value", i, v)
		}
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if len(bs.handed) != 0 || bs.real > callers/4 {
		t.Fatalf("%d entries handed over, %d lookups sent to Redis for %d callers; want none handed and one lookup after the wake-up (and a few for callers that came late)",
			len(bs.handed), bs.real, callers)
	}
	t.Logf("%d lookups for %d callers", bs.real, callers)
}
