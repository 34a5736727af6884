// Package memcachedtest starts real memcached processes for tests, each on
// a unix socket in a short temporary directory, killed when the test ends.
//
// Without memcached on PATH the tests are skipped, except under CI=true,
// where that is a failure.
package memcachedtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paddockcache/paddock/internal/servertest"
)

// Require returns the path of memcached. Without one it skips tb, or fails
// it when the environment variable CI is "true".
func Require(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("memcached")
	if err != nil {
		servertest.Missing(tb, "memcachedtest: memcached is not on PATH: %v", err)
	}
	return path
}

// startupWait bounds how long a server may take to accept its first
// connection.
const startupWait = 20 * time.Second

// Server is one memcached listening on a unix socket.
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
}

// Start starts a memcached for tb and kills it when tb ends. extra are
// more command-line arguments (-m 64, -I 2m).
func Start(tb testing.TB, extra ...string) *Server {
	tb.Helper()
	bin := Require(tb)
	// A unix socket path is limited to about 100 bytes: a short
	// directory, not tb.TempDir().
	dir, err := os.MkdirTemp("", "mc")
	if err != nil {
		tb.Fatalf("memcachedtest: %v", err)
	}
	s := &Server{Socket: filepath.Join(dir, "s"), bin: bin, dir: dir}
	s.args = []string{"-s", s.Socket, "-a", "0700", "-U", "0", "-t", "2"}
	if os.Geteuid() == 0 {
		s.args = append(s.args, "-u", "root") // memcached refuses root otherwise
	}
	s.args = append(s.args, extra...)
	tb.Cleanup(func() {
		s.Stop()
		_ = os.RemoveAll(dir)
	})
	if err := s.start(); err != nil {
		tb.Fatalf("memcachedtest: %v", err)
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
		return fmt.Errorf("start memcached: %w", err)
	}
	s.cmd, s.exited, s.log = cmd, exited, log
	// roundTrip bounds its own dial and reply.
	if err := servertest.WaitReady(exited, startupWait, 5*time.Second, func(context.Context) error {
		return s.roundTrip("mn\r\n", "MN")
	}); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("memcached on %s: %w\n%s", s.Socket, err, log)
	}
	return nil
}

// roundTrip sends cmd on a new connection and checks that the reply's
// first line starts with want.
func (s *Server) roundTrip(cmd, want string) error {
	c, err := net.DialTimeout("unix", s.Socket, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(cmd)); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, want) {
		return fmt.Errorf("%q: got %q", strings.TrimSpace(cmd), line)
	}
	return nil
}

// FlushAll drops every item, as flush_all does.
func (s *Server) FlushAll(tb testing.TB) {
	tb.Helper()
	if err := s.roundTrip("flush_all\r\n", "OK"); err != nil {
		tb.Fatalf("memcachedtest: flush_all: %v", err)
	}
}

// Kill kills the server (SIGKILL) and waits for it to exit.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Stop kills the server; it is what the cleanup calls.
func (s *Server) Stop() { s.Cont(); s.Kill() }

// Restart kills the server and starts an empty one on the same socket.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Kill()
	if err := s.start(); err != nil {
		tb.Fatalf("memcachedtest: restart: %v", err)
	}
}

// Pause stops the server with SIGSTOP: connections stay open and requests
// hang until Cont. The signal is delivered asynchronously, so a thread of
// the server could still answer a request sent just after kill(2)
// returns: on Linux, Pause waits until /proc shows every thread of the
// server stopped.
func (s *Server) Pause() {
	s.signal(syscall.SIGSTOP)
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	servertest.WaitStopped(cmd.Process.Pid, startupWait)
}

// Cont resumes a paused server with SIGCONT.
func (s *Server) Cont() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}
