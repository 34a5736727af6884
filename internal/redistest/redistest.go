// Package redistest starts real redis-server processes for tests: a
// standalone server on a unix socket in a short temporary directory, and a
// Redis Cluster of masters on loopback ports. Servers run without
// persistence and are killed when the test ends.
//
// Without redis-server on PATH the tests are skipped, except under
// CI=true, where that is a failure.
package redistest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock/internal/servertest"
)

// Require returns the path of redis-server. Without one it skips tb, or
// fails it when the environment variable CI is "true".
func Require(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		servertest.Missing(tb, "redistest: redis-server is not on PATH: %v", err)
	}
	return path
}

// startupWait bounds how long a server may take to answer its first PING.
const startupWait = 20 * time.Second

// adminWait bounds one administrative command (FLUSHALL, CLIENT KILL), so
// that a hung server fails the test instead of hanging it.
const adminWait = 5 * time.Second

// Server is one standalone redis-server listening on a unix socket.
type Server struct {
	// Socket is the path of the server's unix socket.
	Socket string

	bin  string
	dir  string
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited <-chan struct{}
	log    *bytes.Buffer
	off    bool // disconnected: the socket is at offSocket
}

// Start starts a redis-server for tb and kills it when tb ends. extra are
// more command-line arguments.
func Start(tb testing.TB, extra ...string) *Server {
	tb.Helper()
	bin := Require(tb)
	// A unix socket path is limited to about 100 bytes: a short
	// directory, not tb.TempDir().
	dir, err := os.MkdirTemp("", "rd")
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	s := &Server{Socket: filepath.Join(dir, "s"), bin: bin, dir: dir}
	s.args = append([]string{
		"--port", "0", "--unixsocket", s.Socket, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", dir,
	}, extra...)
	tb.Cleanup(func() {
		s.Stop()
		_ = os.RemoveAll(dir)
	})
	if err := s.start(); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return s
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = os.Remove(s.Socket)
	cmd := exec.Command(s.bin, s.args...)
	log := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = log, log
	exited, err := servertest.Start(cmd)
	if err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	s.cmd, s.exited, s.log = cmd, exited, log
	if err := waitReady(exited, func(ctx context.Context) error {
		c := redis.NewClient(&redis.Options{Network: "unix", Addr: s.Socket, MaxRetries: -1})
		defer c.Close()
		return c.Ping(ctx).Err()
	}); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("redis-server on %s: %w\n%s", s.Socket, err, log)
	}
	return nil
}

// waitReady waits until ready succeeds, the process exits, or startupWait
// passes; each call of ready gets a second.
func waitReady(exited <-chan struct{}, ready func(context.Context) error) error {
	return servertest.WaitReady(exited, startupWait, time.Second, ready)
}

// Options returns client options for the server, with
// ContextTimeoutEnabled set.
func (s *Server) Options() *redis.Options {
	return &redis.Options{Network: "unix", Addr: s.Socket, ContextTimeoutEnabled: true}
}

// Client returns a client of the server, closed when tb ends. edit, if
// non-nil, changes its options first.
func (s *Server) Client(tb testing.TB, edit func(*redis.Options)) *redis.Client {
	tb.Helper()
	o := s.Options()
	if edit != nil {
		edit(o)
	}
	c := redis.NewClient(o)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop kills the server (SIGKILL: no save, no goodbye) and waits for it to
// exit. Its data is gone. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd, s.off = nil, false
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Restart starts the server again on the same socket, empty.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
}

// Pause stops the server process (SIGSTOP): it keeps its connections but
// answers nothing until [Server.Resume]. The signal is delivered
// asynchronously: on Linux, Pause waits until /proc shows every thread of
// the server stopped. The cleanup kills it either way.
func (s *Server) Pause(tb testing.TB) {
	tb.Helper()
	s.signal(tb, syscall.SIGSTOP)
	s.mu.Lock()
	pid := s.cmd.Process.Pid // signal failed tb if it was not running
	s.mu.Unlock()
	servertest.WaitStopped(pid, startupWait)
}

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume(tb testing.TB) {
	tb.Helper()
	s.signal(tb, syscall.SIGCONT)
}

// Disconnect makes the server unreachable on its socket while it keeps
// running with its data: the socket is renamed, so new connections fail at
// once (no such file), and its open client connections are closed (CLIENT
// KILL). Unlike [Server.Pause], clients get errors right away, and nothing
// they sent meanwhile runs later. [Server.Reconnect] undoes it, and so do
// [Server.Stop] and [Server.Restart]. Disconnecting a disconnected server
// does nothing. A port opened with [Server.ListenTCP] stays reachable.
func (s *Server) Disconnect(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		tb.Fatal("redistest: server not running")
	}
	if s.off {
		return
	}
	if err := os.Rename(s.Socket, s.offSocket()); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	s.off = true
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: s.offSocket(), MaxRetries: -1, ContextTimeoutEnabled: true})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), adminWait)
	defer cancel()
	if err := c.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		tb.Fatalf("redistest: CLIENT KILL: %v", err)
	}
}

// Reconnect makes a disconnected server reachable again: its socket is
// back under its name. Reconnecting a connected server does nothing.
func (s *Server) Reconnect(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.off {
		return
	}
	if err := os.Rename(s.offSocket(), s.Socket); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	s.off = false
}

// offSocket is where the socket is while the server is disconnected.
func (s *Server) offSocket() string { return s.Socket + ".off" }

func (s *Server) signal(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		tb.Fatal("redistest: server not running")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		tb.Fatalf("redistest: signal %v: %v", sig, err)
	}
}

// Cluster is a Redis Cluster of masters without replicas on loopback TCP
// ports.
type Cluster struct {
	// Addrs are the masters' "127.0.0.1:port" addresses.
	Addrs []string

	nodes []*exec.Cmd
	waits []<-chan struct{}
}

// StartCluster starts a cluster of n masters (at least 3) for tb, waits
// until every node reports cluster_state:ok, and kills them all when tb
// ends. Ports are picked free and the whole start is retried if one was
// taken in between.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	bin := Require(tb)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		servertest.Missing(tb, "redistest: redis-cli is not on PATH: %v", err)
	}
	if n < 3 {
		tb.Fatalf("redistest: a cluster needs at least 3 masters, got %d", n)
	}
	var lastErr error
	for range 5 {
		c := &Cluster{}
		lastErr = c.start(tb, bin, cli, n)
		if lastErr == nil {
			tb.Cleanup(c.stop)
			return c
		}
		c.stop()
	}
	tb.Fatalf("redistest: cluster: %v", lastErr)
	return nil
}

func (c *Cluster) start(tb testing.TB, bin, cli string, n int) error {
	dir, err := os.MkdirTemp("", "rc")
	if err != nil {
		return err
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	ports, err := freePorts(n)
	if err != nil {
		return err
	}
	logs := make([]*bytes.Buffer, n)
	for i, port := range ports {
		nd := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(nd, 0o700); err != nil {
			return err
		}
		cmd := exec.Command(bin,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000",
			"--save", "", "--appendonly", "no", "--dir", nd)
		logs[i] = new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = logs[i], logs[i]
		w, err := servertest.Start(cmd)
		if err != nil {
			return err
		}
		c.nodes, c.waits = append(c.nodes, cmd), append(c.waits, w)
		c.Addrs = append(c.Addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}
	for i, addr := range c.Addrs {
		if err := waitReady(c.waits[i], func(ctx context.Context) error {
			cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
			defer cl.Close()
			return cl.Ping(ctx).Err()
		}); err != nil {
			return fmt.Errorf("node %s: %w\n%s", addr, err, logs[i])
		}
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for i, addr := range c.Addrs {
		if err := waitReady(c.waits[i], func(ctx context.Context) error {
			cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
			defer cl.Close()
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("cluster_state is not ok")
			}
			return nil
		}); err != nil {
			return fmt.Errorf("node %s: %w\n%s", addr, err, logs[i])
		}
	}
	return nil
}

func (c *Cluster) stop() {
	for i, cmd := range c.nodes {
		_ = cmd.Process.Kill()
		<-c.waits[i]
	}
	c.nodes, c.waits = nil, nil
}

// Options returns client options for the cluster, with
// ContextTimeoutEnabled set.
func (c *Cluster) Options() *redis.ClusterOptions {
	return &redis.ClusterOptions{Addrs: c.Addrs, ContextTimeoutEnabled: true}
}

// Client returns a cluster client, closed when tb ends.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	cl := redis.NewClusterClient(c.Options())
	tb.Cleanup(func() { _ = cl.Close() })
	return cl
}

// FlushAll empties every master: what a whole cluster restarted without
// persistence looks like.
func (c *Cluster) FlushAll(tb testing.TB) {
	tb.Helper()
	for _, addr := range c.Addrs {
		c.FlushNode(tb, addr)
	}
}

// FlushNode empties the master at addr only: one node that lost its data.
func (c *Cluster) FlushNode(tb testing.TB, addr string) {
	tb.Helper()
	cl := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), adminWait)
	defer cancel()
	if err := cl.FlushAll(ctx).Err(); err != nil {
		tb.Fatalf("redistest: FLUSHALL on %s: %v", addr, err)
	}
}

// freePorts picks n free loopback ports by listening and closing. Another
// process may take one before the server binds it; StartCluster retries.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for try := 0; len(ports) < n && try < 10*n; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		port := l.Addr().(*net.TCPAddr).Port
		if port+10000 > 65535 { // the cluster bus listens on port+10000
			continue
		}
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("found %d usable ports of %d", len(ports), n)
	}
	return ports, nil
}

// ListenTCP makes the server also listen on a free loopback port (which
// replication and Sentinel need) and returns its "127.0.0.1:port" address.
func (s *Server) ListenTCP(tb testing.TB) string {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: s.Socket})
	defer c.Close()
	ctx := context.Background()
	if err := c.ConfigSet(ctx, "bind", "127.0.0.1").Err(); err != nil {
		tb.Fatalf("redistest: CONFIG SET bind: %v", err)
	}
	var lastErr error
	for range 5 {
		ports, err := freePorts(1)
		if err != nil {
			tb.Fatalf("redistest: %v", err)
		}
		port := strconv.Itoa(ports[0])
		if lastErr = c.ConfigSet(ctx, "port", port).Err(); lastErr == nil {
			return net.JoinHostPort("127.0.0.1", port)
		}
	}
	tb.Fatalf("redistest: CONFIG SET port: %v", lastErr)
	return ""
}

// Sentinel is one redis-server in Sentinel mode monitoring a master.
type Sentinel struct {
	// Addr is the Sentinel's "127.0.0.1:port" address.
	Addr string
	// MasterName is the name under which it monitors the master.
	MasterName string
}

// StartSentinel starts a Sentinel (quorum 1) that monitors the master at
// masterAddr (see [Server.ListenTCP]) for tb, waits until it knows the
// master, and kills it when tb ends.
func StartSentinel(tb testing.TB, masterAddr string) *Sentinel {
	tb.Helper()
	bin := Require(tb)
	host, port, err := net.SplitHostPort(masterAddr)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	var lastErr error
	for range 5 {
		dir, err := os.MkdirTemp("", "rs")
		if err != nil {
			tb.Fatalf("redistest: %v", err)
		}
		tb.Cleanup(func() { _ = os.RemoveAll(dir) })
		ports, err := freePorts(1)
		if err != nil {
			tb.Fatalf("redistest: %v", err)
		}
		sn := &Sentinel{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), MasterName: "paddock"}
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 1000\n",
			ports[0], dir, sn.MasterName, host, port, sn.MasterName)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			tb.Fatalf("redistest: %v", err)
		}
		cmd := exec.Command(bin, conf, "--sentinel")
		log := new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = log, log
		exited, err := servertest.Start(cmd)
		if err != nil {
			tb.Fatalf("redistest: start sentinel: %v", err)
		}
		stop := func() {
			_ = cmd.Process.Kill()
			<-exited
		}
		lastErr = waitReady(exited, func(ctx context.Context) error {
			c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, MaxRetries: -1})
			defer c.Close()
			_, err := c.GetMasterAddrByName(ctx, sn.MasterName).Result()
			return err
		})
		if lastErr == nil {
			tb.Cleanup(stop)
			return sn
		}
		stop()
		lastErr = fmt.Errorf("%w\n%s", lastErr, log)
	}
	tb.Fatalf("redistest: sentinel: %v", lastErr)
	return nil
}

// Client returns a Sentinel failover client of the monitored master, with
// ContextTimeoutEnabled set, closed when tb ends.
func (sn *Sentinel) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: sn.MasterName, SentinelAddrs: []string{sn.Addr}, ContextTimeoutEnabled: true,
	})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}
