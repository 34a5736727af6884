package proptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/redisstore"
)

// TestRedis runs the machine on redisstore over a real, standalone
// redis-server, with FLUSHALL, server restarts and outages among the
// faults.
func TestRedis(t *testing.T) { runMachine(t, redisBackend(standalone, 150)) }

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

// redisCallTimeout bounds one store call, in real time.
const redisCallTimeout = 5 * time.Second

// A redisDeployment is a running Redis and what the machine can do to it.
type redisDeployment struct {
	client    func() redis.UniversalClient // a new client
	flushAll  func() error
	setDown   func(down bool) // nil: the machine cuts the nodes off instead
	restart   func()          // nil: not supported
	flushNode func(i int)     // nil: not supported
}

func standalone(t *testing.T) redisDeployment {
	srv := startRedis(t)
	admin := redis.NewClient(srv.options())
	t.Cleanup(func() { admin.Close() })
	return redisDeployment{
		client: func() redis.UniversalClient { return redis.NewClient(srv.options()) },
		flushAll: func() error {
			ctx, cancel := context.WithTimeout(context.Background(), redisCallTimeout)
			defer cancel()
			return admin.FlushAll(ctx).Err()
		},
		setDown: srv.setDown,
		restart: srv.restart,
	}
}

func cluster(t *testing.T) redisDeployment {
	c := startCluster(t, 3)
	return redisDeployment{
		client: func() redis.UniversalClient {
			return redis.NewClusterClient(&redis.ClusterOptions{
				Addrs: c.addrs, ContextTimeoutEnabled: true,
				MaxRetries: -1, DialerRetries: 1, DialerRetryTimeout: time.Millisecond,
			})
		},
		flushAll:  c.flushAll,
		flushNode: c.flushNode,
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
				start := time.Now() // the bubble's clock
				var elapsed atomic.Int64
				tick := func() {
					d := int64(time.Since(start))
					for {
						old := elapsed.Load()
						if d <= old || elapsed.CompareAndSwap(old, d) {
							return
						}
					}
				}
				// A client per check, made outside the bubble: its
				// pool's state (a dial error remembered from an outage)
				// stays with the check.
				var client redis.UniversalClient
				out.do(func() { client = d.client() })
				s, err := redisstore.New(client,
					redisstore.Prefix(fmt.Sprintf("pt%d:", n.Add(1))),
					redisstore.TimeOffset(func() time.Duration { return time.Duration(elapsed.Load()) }))
				if err != nil {
					rt.Fatalf("redisstore.New: %v", err)
				}
				flush := func() {
					out.do(func() {
						if err := d.flushAll(); err != nil {
							panic(fmt.Sprintf("FLUSHALL: %v", err))
						}
					})
				}
				flush()
				p := &outsideStore{out: out, s: s, tick: tick}
				e := &env{
					store:   p,
					advance: func(time.Duration) {},
					peek: func(ctx context.Context, key string) (paddock.Lookup, error) {
						return p.Lookup(ctx, key, paddock.LookupRequest{})
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

// outside runs functions on goroutines outside every synctest bubble. A
// bubbled goroutine that waits for one is not durably blocked, so
// synctest.Wait waits for the call to finish, and the network code runs
// on the real clock (inside a bubble, time.Now is fake, and socket
// deadlines computed from it would lie in the past).
type outside struct {
	work  chan func()
	dones chan chan struct{} // a pool of reply channels made outside the bubble
}

func newOutside(t *testing.T) *outside {
	o := &outside{work: make(chan func()), dones: make(chan chan struct{}, 64)}
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
	s    paddock.Store
	tick func() // publishes the bubble's clock to the store's offset
}

var _ paddock.Remote = (*outsideStore)(nil)

func (p *outsideStore) Remote() bool { return true }

func (p *outsideStore) call(f func(ctx context.Context)) {
	p.tick()
	p.out.do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), redisCallTimeout)
		defer cancel()
		f(ctx)
	})
}

func (p *outsideStore) Lookup(_ context.Context, key string, req paddock.LookupRequest) (lk paddock.Lookup, err error) {
	p.call(func(ctx context.Context) { lk, err = p.s.Lookup(ctx, key, req) })
	return lk, err
}

func (p *outsideStore) Fill(_ context.Context, key string, f *paddock.Fill) (ok bool, err error) {
	p.call(func(ctx context.Context) { ok, err = p.s.Fill(ctx, key, f) })
	return ok, err
}

func (p *outsideStore) Release(_ context.Context, key string, lease uint64) (err error) {
	p.call(func(ctx context.Context) { err = p.s.Release(ctx, key, lease) })
	return err
}

func (p *outsideStore) Invalidate(_ context.Context, inv paddock.Invalidation) (err error) {
	p.call(func(ctx context.Context) { err = p.s.Invalidate(ctx, inv) })
	return err
}

func (p *outsideStore) Close() error { return p.s.Close() }

// redisServer is a redis-server on a unix socket in a short temporary
// directory, without persistence, killed when the test ends.
//
// (redisstore/internal/redistest does the same for redisstore's own tests;
// an internal package there cannot be imported from here.)
type redisServer struct {
	bin, dir, sock string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	log    *bytes.Buffer
	down   bool
	admin  *redis.Client // on the hidden socket while the server is "down"
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is not on PATH (CI=true): %v", err)
		}
		t.Skipf("redis-server is not on PATH: %v", err)
	}
	// A unix socket path is limited to about 100 bytes: a short
	// directory, not t.TempDir().
	dir, err := os.MkdirTemp("", "pt")
	if err != nil {
		t.Fatal(err)
	}
	s := &redisServer{bin: bin, dir: dir, sock: filepath.Join(dir, "s")}
	t.Cleanup(func() {
		s.stop()
		os.RemoveAll(dir)
	})
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *redisServer) options() *redis.Options {
	return &redis.Options{
		Network: "unix", Addr: s.sock, ContextTimeoutEnabled: true,
		// Fail fast while the server is away: no retries.
		MaxRetries: -1, DialerRetries: 1, DialerRetryTimeout: time.Millisecond,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
	}
}

func (s *redisServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	os.Remove(s.sock)
	cmd := exec.Command(s.bin, "--port", "0", "--unixsocket", s.sock, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", s.dir)
	log := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited, s.log = cmd, exited, log
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: s.sock, MaxRetries: -1})
	defer c.Close()
	for backoff, deadline := 5*time.Millisecond, time.Now().Add(20*time.Second); ; backoff = min(2*backoff, 200*time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited: %v\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server not ready: %v\n%s", err, log)
		}
		time.Sleep(backoff) // polling a starting process, not ordering events
	}
}

func (s *redisServer) stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	if s.admin != nil {
		s.admin.Close()
		s.admin = nil
	}
	s.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		<-exited
	}
}

// restart kills the server and starts an empty one on the same socket.
func (s *redisServer) restart() {
	s.stop()
	if err := s.start(); err != nil {
		panic(err)
	}
}

// setDown makes the server unreachable, keeping its data: new connections
// fail at once (its socket is renamed) and open ones are closed (CLIENT
// KILL). Up again, the socket is back under its name.
func (s *redisServer) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if down == s.down {
		return
	}
	s.down = down
	hidden := s.sock + ".off"
	ctx, cancel := context.WithTimeout(context.Background(), redisCallTimeout)
	defer cancel()
	if down {
		if err := os.Rename(s.sock, hidden); err != nil {
			panic(err)
		}
		s.admin = redis.NewClient(&redis.Options{Network: "unix", Addr: hidden})
		if err := s.admin.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
			panic(fmt.Sprintf("CLIENT KILL: %v", err))
		}
		return
	}
	if s.admin != nil {
		s.admin.Close()
		s.admin = nil
	}
	if err := os.Rename(hidden, s.sock); err != nil {
		panic(err)
	}
}

// redisCluster is a Redis Cluster of masters without replicas on loopback
// ports, killed when the test ends.
type redisCluster struct {
	addrs []string
	cmds  []*exec.Cmd
	waits []chan struct{}
}

func startCluster(t *testing.T, n int) *redisCluster {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err == nil {
		_, err = exec.LookPath("redis-cli")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server or redis-cli is not on PATH (CI=true): %v", err)
		}
		t.Skipf("redis-server or redis-cli is not on PATH: %v", err)
	}
	var last error
	for range 5 { // a port picked free may be taken before the server binds it
		c := &redisCluster{}
		if last = c.start(t, bin, n); last == nil {
			t.Cleanup(c.stop)
			return c
		}
		c.stop()
	}
	t.Fatalf("redis cluster: %v", last)
	return nil
}

func (c *redisCluster) start(t *testing.T, bin string, n int) error {
	dir := t.TempDir()
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port+10000 > 65535 { // the cluster bus listens on port+10000
			return fmt.Errorf("port %d too high for a cluster bus", port)
		}
		nd := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(nd, 0o700); err != nil {
			return err
		}
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
			"--save", "", "--appendonly", "no", "--dir", nd)
		if err := cmd.Start(); err != nil {
			return err
		}
		w := make(chan struct{})
		go func() {
			cmd.Wait()
			close(w)
		}()
		c.cmds, c.waits = append(c.cmds, cmd), append(c.waits, w)
		c.addrs = append(c.addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}
	if err := c.each(func(cl *redis.Client) error { return cl.Ping(context.Background()).Err() }); err != nil {
		return err
	}
	args := append([]string{"--cluster", "create"}, c.addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	return c.each(func(cl *redis.Client) error {
		info, err := cl.ClusterInfo(context.Background()).Result()
		if err == nil && !strings.Contains(info, "cluster_state:ok") {
			err = errors.New("cluster_state is not ok")
		}
		return err
	})
}

// each runs f on a client of every master until it succeeds on all, or
// twenty seconds pass.
func (c *redisCluster) each(f func(*redis.Client) error) error {
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range c.addrs {
		cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		for {
			err := f(cl)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				cl.Close()
				return fmt.Errorf("%s: %v", addr, err)
			}
			time.Sleep(20 * time.Millisecond) // polling a starting server, not ordering events
		}
		cl.Close()
	}
	return nil
}

func (c *redisCluster) flushAll() error {
	return c.each(func(cl *redis.Client) error {
		ctx, cancel := context.WithTimeout(context.Background(), redisCallTimeout)
		defer cancel()
		return cl.FlushAll(ctx).Err()
	})
}

// flushNode empties master i (modulo their number): one node that lost its
// data, the others keeping theirs.
func (c *redisCluster) flushNode(i int) {
	cl := redis.NewClient(&redis.Options{Addr: c.addrs[i%len(c.addrs)], MaxRetries: -1})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), redisCallTimeout)
	defer cancel()
	if err := cl.FlushAll(ctx).Err(); err != nil {
		panic(fmt.Sprintf("FLUSHALL on %s: %v", c.addrs[i%len(c.addrs)], err))
	}
}

func (c *redisCluster) stop() {
	for i, cmd := range c.cmds {
		cmd.Process.Kill()
		<-c.waits[i]
	}
	c.cmds, c.waits = nil, nil
}
