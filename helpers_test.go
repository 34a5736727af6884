package paddock_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/store"
)

// newMem returns a memstore closed when the test ends.
func newMem(t testing.TB, opts ...memstore.Option) *memstore.Store {
	t.Helper()
	s, err := memstore.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newCache returns a Cache over store (a new memstore if nil), closed when
// the test ends.
func newCache(t testing.TB, store store.Store, opts ...paddock.Option) *paddock.Cache {
	t.Helper()
	if store == nil {
		store = newMem(t)
	}
	c, err := paddock.New(store, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newLoader[T any](t testing.TB, c *paddock.Cache, ns string, opts ...paddock.LoaderOption) *paddock.Loader[T] {
	t.Helper()
	l, err := paddock.NewLoader[T](c, ns, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// gatedLoad is a load that counts its calls and, while gate is open,
// blocks until the test releases it.
type gatedLoad[T any] struct {
	calls   atomic.Int64
	started chan struct{} // receives one value per call, if non-nil
	release chan struct{} // each call waits for it to be closed, if non-nil
	value   func(n int64) (T, error)
}

func (g *gatedLoad[T]) load(ctx context.Context) (T, error) {
	n := g.calls.Add(1)
	if g.started != nil {
		g.started <- struct{}{}
	}
	if g.release != nil {
		<-g.release
	}
	return g.value(n)
}

// faultStore wraps a real store to inject failures and to pause calls.
type faultStore struct {
	store.Store

	mu        sync.Mutex
	fail      error        // returned by every call while set
	beforeFil func()       // runs before each Fill reaches the store
	calls     atomic.Int64 // store calls attempted
	lookups   atomic.Int64
}

var errDown = errors.New("store down")

func (f *faultStore) setFail(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

func (f *faultStore) err() error {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail
}

func (f *faultStore) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	f.lookups.Add(1)
	if err := f.err(); err != nil {
		return store.Lookup{}, err
	}
	return f.Store.Lookup(ctx, key, req)
}

func (f *faultStore) Fill(ctx context.Context, key string, fl *store.Fill) (bool, error) {
	if err := f.err(); err != nil {
		return false, err
	}
	f.mu.Lock()
	hook := f.beforeFil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return f.Store.Fill(ctx, key, fl)
}

func (f *faultStore) Release(ctx context.Context, key string, lease uint64) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Store.Release(ctx, key, lease)
}

func (f *faultStore) Invalidate(ctx context.Context, inv store.Invalidation) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Store.Invalidate(ctx, inv)
}

func memstoreMaxEntry(n int) memstore.Option { return memstore.MaxEntryBytes(n) }
