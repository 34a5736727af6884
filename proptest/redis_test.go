package proptest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// TestRedis runs the machine on redisstore over a real, standalone
// redis-server, with FLUSHALL, server restarts and outages among the
// faults.
func TestRedis(t *testing.T) { runMachine(t, redisBackend(standalone, 120)) }

// TestRedisCluster runs the machine on redisstore over a Redis Cluster of
// three masters, where a key's entry and its tags' versions live on
// different nodes.
func TestRedisCluster(t *testing.T) { runMachine(t, redisBackend(cluster, 30)) }

func init() {
	// The outages make go-redis log every failed dial.
	redis.SetLogger(quiet{})
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// A redisDeployment is a running Redis and what the machine can do to it.
// Its functions panic if they fail.
type redisDeployment struct {
	client    func() redis.UniversalClient // a new client
	flushAll  func()
	setDown   func(down bool) // nil: the machine cuts the nodes off instead
	restart   func()          // nil: not supported
	flushNode func(i int)     // nil: not supported
}

func standalone(t *testing.T) redisDeployment {
	srv := redistest.Start(t)
	ft := fatalPanics{t}
	options := func() *redis.Options {
		o := srv.Options()
		// Fail fast while the server is away: no retries.
		o.MaxRetries, o.DialerRetries, o.DialerRetryTimeout = -1, 1, time.Millisecond
		// After PoolSize failed dials in a row, go-redis fails every dial
		// with the last error until a probe, once a second of real time,
		// gets through: the server would look down for up to a second
		// after it is back, while the bubble's clock runs on, and a
		// pending invalidation's retry would land later than the model
		// allows. A check's outages never fail this many dials in a row.
		o.PoolSize = 1 << 14
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = time.Second, 2*time.Second, 2*time.Second
		return o
	}
	admin := redis.NewClient(options())
	t.Cleanup(func() { admin.Close() })
	return redisDeployment{
		client: func() redis.UniversalClient { return redis.NewClient(options()) },
		flushAll: func() {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			if err := admin.FlushAll(ctx).Err(); err != nil {
				panic(fmt.Sprintf("FLUSHALL: %v", err))
			}
		},
		// Down, the server keeps its data; new connections fail at once
		// and open ones are closed.
		setDown: func(down bool) {
			if down {
				srv.Disconnect(ft)
			} else {
				srv.Reconnect(ft)
			}
		},
		// Restart kills the server and starts an empty one on the same
		// socket.
		restart: func() { srv.Restart(ft) },
	}
}

func cluster(t *testing.T) redisDeployment {
	c := redistest.StartCluster(t, 3)
	ft := fatalPanics{t}
	return redisDeployment{
		client: func() redis.UniversalClient {
			o := c.Options()
			o.MaxRetries, o.DialerRetries, o.DialerRetryTimeout = -1, 1, time.Millisecond
			return redis.NewClusterClient(o)
		},
		flushAll: func() { c.FlushAll(ft) },
		// One master (i modulo their number) loses its data, the others
		// keep theirs.
		flushNode: func(i int) { c.FlushNode(ft, c.Addrs[i%len(c.Addrs)]) },
	}
}

// redisBackend runs each check on a fresh prefix of one deployment,
// emptied with FLUSHALL first, with a client of its own.
//
// Time: the store's clock is the server's TIME plus a TimeOffset that
// follows the bubble's clock (the bubble's time since the check began, as
// last seen by a store call, which never goes back). So the store's clock
// is the bubble's plus the real time the check has taken: it may run a
// little ahead of the model, never behind. The invariants are written so
// that a store clock ahead of the bubble's only makes them easier to keep
// (entries and leases expire a little early); the lease check compares
// the store's own readings (Lookup.Now).
func redisBackend(deploy func(*testing.T) redisDeployment, checks int) backend {
	return backend{
		checks: checks,
		setup: func(t *testing.T) func(*rapid.T) *env {
			d := deploy(t)
			out := newOutside(t)
			var n atomic.Int64
			return func(rt *rapid.T) *env {
				clock := NewBubbleClock()
				// A client per check, made outside the bubble: its
				// pool's state (a dial error remembered from an outage)
				// stays with the check.
				var client redis.UniversalClient
				out.do(func() { client = d.client() })
				s, err := redisstore.New(client,
					redisstore.Prefix(fmt.Sprintf("pt%d:", n.Add(1))),
					redisstore.TimeOffset(clock.Offset))
				if err != nil {
					rt.Fatalf("redisstore.New: %v", err)
				}
				flush := func() {
					out.do(d.flushAll)
				}
				flush()
				p := &outsideStore{out: out, s: s, tick: clock.Tick}
				e := &env{
					store:   p,
					advance: func(time.Duration) {},
					peek: func(ctx context.Context, key string) (store.Lookup, error) {
						return p.Lookup(ctx, key, store.LookupRequest{})
					},
					flush: flush,
					close: func() {
						s.Close()
						out.do(func() { client.Close() })
					},
				}
				if d.setDown != nil {
					e.setDown = func(down bool) { out.do(func() { d.setDown(down) }) }
				}
				if d.restart != nil {
					e.restart = func() { out.do(d.restart) }
				}
				if d.flushNode != nil {
					e.flushNode = func(i int) { out.do(func() { d.flushNode(i) }) }
				}
				return e
			}
		},
	}
}

// fatalPanics is the t of the redistest calls that the machine makes
// through outside.do. They run on goroutines of their own, where t.Fatal
// must not be called, so a failure panics instead; outside.do raises the
// panic again in the check, where rapid reports it.
type fatalPanics struct{ testing.TB }

func (fatalPanics) Helper()                           {}
func (fatalPanics) FailNow()                          { panic("redistest: FailNow") }
func (fatalPanics) Fatal(args ...any)                 { panic(fmt.Sprint(args...)) }
func (fatalPanics) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
