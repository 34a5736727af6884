package paddock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/store"
)

// feedStore is a memstore shared by several Caches as a fleet shares
// Redis: it is Remote (so no Cache keeps a hot tier over it unless told
// NearCache) and has a Feed whose changes reach each listener only when the
// test delivers them, as a Redis channel delivers them one hop later.
type feedStore struct {
	store.Store
	lookups atomic.Int64
	// block, if set, is called by Lookup after the store answered and
	// before the answer reaches the Cache.
	block atomic.Pointer[func()]

	mu        sync.Mutex
	listeners []*feedListener
}

type feedListener struct {
	changed func(keys, tags []string)
	up      func(bool)
	queue   [][2][]string
}

func newFeedStore(t *testing.T) *feedStore {
	s := &feedStore{Store: newMem(t)}
	s.Store.(store.Notifier).Subscribe(func(keys, tags []string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, l := range s.listeners {
			l.queue = append(l.queue, [2][]string{keys, tags})
		}
	})
	return s
}

func (s *feedStore) Remote() bool { return true }

func (s *feedStore) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	s.lookups.Add(1)
	lk, err := s.Store.Lookup(ctx, key, req)
	if f := s.block.Load(); f != nil {
		(*f)()
	}
	return lk, err
}

func (s *feedStore) Listen(changed func(keys, tags []string), up func(bool)) (cancel func()) {
	l := &feedListener{changed: changed, up: up}
	up(false)
	s.mu.Lock()
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	return func() {}
}

// setUp tells every listener that the feed is up or down.
func (s *feedStore) setUp(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		l.up(up)
	}
}

// deliver hands every listener the changes queued for it.
func (s *feedStore) deliver() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		for _, c := range l.queue {
			l.changed(c[0], c[1])
		}
		l.queue = nil
	}
}

// hit reads key through l and reports whether the store was asked.
func nearGet(t *testing.T, s *feedStore, l *paddock.Loader[string], key, fresh string) (string, bool) {
	t.Helper()
	before := s.lookups.Load()
	v, err := l.Get(context.Background(), key, func(context.Context) (string, error) { return fresh, nil })
	if err != nil {
		t.Fatal(err)
	}
	return v, s.lookups.Load() != before
}

func TestNearCacheNeedsAFeed(t *testing.T) {
	_, err := paddock.New(remoteMem{newMem(t)}, paddock.NearCache(time.Second))
	if !errors.Is(err, paddock.ErrInvalidOption) {
		t.Fatalf("New(a remote store without a feed, NearCache) = %v, want ErrInvalidOption", err)
	}
	if _, err := paddock.New(newFeedStore(t), paddock.NearCache(0)); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Fatalf("NearCache(0) = %v, want ErrInvalidOption", err)
	}
}

type remoteMem struct{ store.Store }

func (remoteMem) Remote() bool { return true }

// Two Caches on one shared store, as two processes on one Redis: each
// keeps its copies until an invalidation reaches it. The invalidating one
// drops its own at once; the other when the feed delivers the change.
func TestNearCacheAcrossProcesses(t *testing.T) {
	s := newFeedStore(t)
	a := newLoader[string](t, newCache(t, s, paddock.NearCache(time.Hour)), "p")
	b := newLoader[string](t, newCache(t, s, paddock.NearCache(time.Hour)), "p")
	s.setUp(true)

	if v, asked := nearGet(t, s, a, "k", "v1"); v != "v1" || !asked {
		t.Fatalf("first Get = %q (store asked %v)", v, asked)
	}
	// A copy is taken from a store hit (a fill takes none).
	nearGet(t, s, a, "k", "unused")
	nearGet(t, s, b, "k", "unused")
	for _, l := range []*paddock.Loader[string]{a, b} {
		if v, asked := nearGet(t, s, l, "k", "unused"); v != "v1" || asked {
			t.Fatalf("warm Get = %q (store asked %v), want v1 from the near cache", v, asked)
		}
	}

	if err := a.Invalidate(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if v, _ := nearGet(t, s, a, "k", "v2"); v != "v2" {
		t.Fatalf("the invalidating process read %q after Invalidate returned, want v2", v)
	}
	if v, asked := nearGet(t, s, b, "k", "v3"); v != "v1" || asked {
		t.Fatalf("another process before the feed delivered: %q (store asked %v); want its old copy", v, asked)
	}
	s.deliver()
	if v, asked := nearGet(t, s, b, "k", "v3"); v != "v2" || !asked {
		t.Fatalf("another process after the feed delivered: %q (store asked %v), want v2 from the store", v, asked)
	}
}

// Tags and Set reach the near cache too.
func TestNearCacheTagsAndSet(t *testing.T) {
	s := newFeedStore(t)
	c := newCache(t, s, paddock.NearCache(time.Hour))
	l := newLoader[string](t, c, "p")
	s.setUp(true)
	ctx := context.Background()
	if _, err := l.Get(ctx, "k", func(context.Context) (string, error) { return "v1", nil }, paddock.Tags("t")); err != nil {
		t.Fatal(err)
	}
	nearGet(t, s, l, "k", "x") // a store hit: the copy
	if _, asked := nearGet(t, s, l, "k", "x"); asked {
		t.Fatal("warm Get asked the store")
	}
	if err := c.InvalidateTags(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if v, asked := nearGet(t, s, l, "k", "v2"); v != "v2" || !asked {
		t.Fatalf("after InvalidateTags: %q (store asked %v), want v2 from a load", v, asked)
	}
	if err := l.Set(ctx, "k", "v3"); err != nil {
		t.Fatal(err)
	}
	if v, asked := nearGet(t, s, l, "k", "x"); v != "v3" || !asked {
		t.Fatalf("after Set: %q (store asked %v), want v3 from the store", v, asked)
	}
}

// While the feed is down the near cache is empty and takes nothing; once
// it is back, copies are taken again.
func TestNearCacheFeedDown(t *testing.T) {
	s := newFeedStore(t)
	l := newLoader[string](t, newCache(t, s, paddock.NearCache(time.Hour)), "p")
	// Not yet confirmed: down.
	nearGet(t, s, l, "k", "v1")
	nearGet(t, s, l, "k", "x") // a store hit, which takes no copy while down
	if _, asked := nearGet(t, s, l, "k", "x"); !asked {
		t.Fatal("a copy was taken before the feed was up")
	}
	s.setUp(true)
	nearGet(t, s, l, "k", "x")
	if _, asked := nearGet(t, s, l, "k", "x"); asked {
		t.Fatal("no copy once the feed was up")
	}
	s.setUp(false)
	if _, asked := nearGet(t, s, l, "k", "x"); !asked {
		t.Fatal("a copy was served while the feed was down")
	}
	if _, asked := nearGet(t, s, l, "k", "x"); !asked {
		t.Fatal("a copy was taken while the feed was down")
	}
	s.setUp(true)
	nearGet(t, s, l, "k", "x")
	if _, asked := nearGet(t, s, l, "k", "x"); asked {
		t.Fatal("no copy once the feed was back")
	}
}

// A copy is served at most maxStale after the store read it came from,
// even if no invalidation ever reaches the process.
func TestNearCacheMaxStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFeedStore(t)
		l := newLoader[string](t, newCache(t, s, paddock.NearCache(time.Second)), "p")
		s.setUp(true)
		nearGet(t, s, l, "k", "v1")
		nearGet(t, s, l, "k", "x") // a store hit: the copy, read now
		time.Sleep(999 * time.Millisecond)
		if _, asked := nearGet(t, s, l, "k", "x"); asked {
			t.Fatal("the copy was not served within maxStale")
		}
		time.Sleep(time.Millisecond)
		if _, asked := nearGet(t, s, l, "k", "x"); !asked {
			t.Fatal("the copy was served maxStale after its store read")
		}
	})
}

// An invalidation that reaches the process while a lookup is on its way
// back keeps that lookup's entry out of the near cache: it may be the old
// value.
func TestNearCacheInsertFencedByFeed(t *testing.T) {
	s := newFeedStore(t)
	a := newLoader[string](t, newCache(t, s, paddock.NearCache(time.Hour)), "p")
	other := newLoader[string](t, newCache(t, s, paddock.NearCache(time.Hour)), "p")
	s.setUp(true)
	nearGet(t, s, other, "k", "v1") // the entry is in the store
	once := sync.OnceFunc(func() {
		// Between the store's answer and its arrival: another process
		// invalidates, and the change reaches a.
		if err := other.Invalidate(context.Background(), "k"); err != nil {
			t.Error(err)
		}
		s.deliver()
	})
	block := func() { once() }
	s.block.Store(&block)
	if v, _ := nearGet(t, s, a, "k", "x"); v != "v1" {
		t.Fatalf("the racing read = %q, want the old v1 it read", v)
	}
	s.block.Store(nil)
	if v, asked := nearGet(t, s, a, "k", "v2"); v != "v2" || !asked {
		t.Fatalf("after the invalidation reached it: %q (store asked %v); the racing read's copy was kept", v, asked)
	}
}

// A caller waiting for another process's lease (two Caches on one
// memstore) is woken by the holder's fill, at once, rather than at its
// next poll.
func TestWaiterWokenByFill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newMem(t)
		a := newLoader[string](t, newCache(t, s), "p")
		b := newLoader[string](t, newCache(t, s), "p")
		started, release := make(chan struct{}), make(chan struct{})
		go func() {
			_, _ = a.Get(context.Background(), "k", func(context.Context) (string, error) {
				close(started)
				<-release
				return "a's", nil
			})
		}()
		<-started
		var got string
		var took time.Duration
		done := make(chan struct{})
		go func() {
			defer close(done)
			t0 := time.Now()
			v, err := b.Get(context.Background(), "k", func(context.Context) (string, error) { return "b's", nil })
			if err != nil {
				t.Error(err)
			}
			got, took = v, time.Since(t0)
		}()
		time.Sleep(20 * time.Millisecond) // b polls a few times meanwhile
		synctest.Wait()                   // b waits for its next poll
		close(release)
		<-done
		if got != "a's" {
			t.Fatalf("the waiter got %q, want the holder's value", got)
		}
		if took != 20*time.Millisecond {
			t.Fatalf("the waiter returned %v after it began; the fill came at 20ms: it was not woken by it", took)
		}
	})
}

// lookupGate holds the first lookup that is granted the lease, after the
// store answered it and before the Cache sees the answer: the window in
// which another caller of the process finds the lease held and no flight
// to join.
type lookupGate struct {
	store.Store
	once    sync.Once
	granted chan struct{}
	proceed chan struct{}
}

func (s *lookupGate) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	lk, err := s.Store.Lookup(ctx, key, req)
	if lk.Lease {
		s.once.Do(func() {
			close(s.granted)
			<-s.proceed
		})
	}
	return lk, err
}

// A caller that finds the lease held by a caller of its own process that
// has not registered its flight yet shares that caller's load once it
// registers, rather than loading again after it: here with a value that
// is not stored (NoStore), which the store could not hand it.
func TestPollerFollowsHolderOfItsProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &lookupGate{Store: newMem(t), granted: make(chan struct{}), proceed: make(chan struct{})}
		l := newLoader[string](t, newCache(t, s), "p")
		var loads atomic.Int64
		load := func(ctx context.Context) (string, error) {
			paddock.NoStore(ctx)
			return fmt.Sprint("load ", loads.Add(1)), nil
		}
		got := make(chan string, 2)
		get := func() {
			v, err := l.Get(context.Background(), "k", load)
			if err != nil {
				t.Error(err)
			}
			got <- v
		}
		go get()
		<-s.granted // the holder's lookup answered, its flight not registered
		go get()
		synctest.Wait() // the second caller polls for the holder's fill
		close(s.proceed)
		a, b := <-got, <-got
		if a != "load 1" || b != "load 1" || loads.Load() != 1 {
			t.Fatalf("the two callers got %q and %q from %d loads, want one load shared", a, b, loads.Load())
		}
	})
}
