package redisstore_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := checkGoroutines(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// checkGoroutines fails when goroutines of paddock or go-redis outlive the
// tests that started them (every test closes its caches and clients). It
// polls for a while: a goroutine may be on its way out.
func checkGoroutines() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "checkGoroutines") || strings.Contains(g, "testing.(*M)") {
				continue
			}
			if strings.Contains(g, "github.com/paddockcache/paddock") || strings.Contains(g, "github.com/redis/go-redis") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d goroutines leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond) // polling for goroutines to end, not ordering events
	}
}

// calls records the commands a client sends: one entry per round trip, a
// command or a pipeline. Scripts are named by what they do.
type calls struct {
	mu   sync.Mutex
	list []string
}

func (c *calls) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *calls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.add(cmdName(cmd))
		return next(ctx, cmd)
	}
}

func (c *calls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, cmd := range cmds {
			names[i] = cmdName(cmd)
		}
		c.add("pipeline(" + strings.Join(names, ",") + ")")
		return next(ctx, cmds)
	}
}

func (c *calls) add(s string) {
	c.mu.Lock()
	c.list = append(c.list, s)
	c.mu.Unlock()
}

// take returns the calls since the last take.
func (c *calls) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.list
	c.list = nil
	return l
}

func (c *calls) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.list)
}

func cmdName(cmd redis.Cmder) string {
	name := cmd.Name()
	if name == "evalsha" || name == "eval" {
		if a := cmd.Args(); len(a) > 1 {
			if n, ok := redisstore.ScriptNames()[fmt.Sprint(a[1])]; ok {
				return n
			}
		}
	}
	return name
}

// watched wraps a Store and reports when a lookup finds the lease held by
// someone else: the caller is then waiting on another process's load.
type watched struct {
	*redisstore.Store
	once sync.Once
	held chan struct{} // closed at the first Held lookup
	n    atomic.Int64  // Held lookups
}

func watch(s *redisstore.Store) *watched { return &watched{Store: s, held: make(chan struct{})} }

func (w *watched) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	lk, err := w.Store.Lookup(ctx, key, req)
	if err == nil && lk.Held {
		w.n.Add(1)
		w.once.Do(func() { close(w.held) })
	}
	return lk, err
}

// offset is a shared store clock offset for TimeOffset.
type offset struct{ d atomic.Int64 }

func (o *offset) get() time.Duration      { return time.Duration(o.d.Load()) }
func (o *offset) advance(d time.Duration) { o.d.Add(int64(d)) }

func newStore(t testing.TB, client redis.UniversalClient, opts ...redisstore.Option) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(client, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newCache(t testing.TB, s store.Store, opts ...paddock.Option) *paddock.Cache {
	t.Helper()
	// These tests check the protocol, not the timeouts: a store timeout
	// of seconds keeps a busy test machine from sending Gets around the
	// store. Tests of the failure paths pass their own (later options win).
	opts = append([]paddock.Option{paddock.StoreTimeout(5 * time.Second)}, opts...)
	c, err := paddock.New(s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newLoader(t testing.TB, c *paddock.Cache, ns string, opts ...paddock.LoaderOption) *paddock.Loader[string] {
	t.Helper()
	l, err := paddock.NewLoader[string](c, ns, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// wait blocks until ch is closed, failing the test after a generous bound
// (a hang is a bug; the bound is not a timing assertion).
func wait(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// gate is a channel-based barrier for loads.
type gate chan struct{}

func (g gate) open() { close(g) }

func (g gate) wait(ctx context.Context) error {
	select {
	case <-g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Minute):
		return fmt.Errorf("gate never opened")
	}
}
