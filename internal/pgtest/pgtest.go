// Package pgtest starts real PostgreSQL servers for tests: initdb in a
// fresh temporary directory, then postgres listening only on a unix socket
// in that directory (no port to collide with), without fsync. A server is
// stopped and its directory removed when the test ends, or by
// [Server.Stop].
//
// The binaries are looked up on PATH, then in /usr/lib/postgresql/*/bin
// (the newest version first). Without them the tests are skipped, except
// under CI=true, where that is a failure. PostgreSQL refuses to run as
// root: as root, the server runs as the postgres user, which owns its
// directory.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paddockcache/paddock/internal/servertest"
)

// startupWait bounds how long initdb plus the server's start may take.
const startupWait = 60 * time.Second

// port names the socket file (.s.PGSQL.port); nothing listens on TCP.
const port = 5432

// binaries are the programs a Server runs, all from one directory.
var binaries = []string{"initdb", "postgres", "pg_isready", "createdb"}

// Find returns the directory that holds initdb, postgres, pg_isready and
// createdb, or an error saying why there is none. An initdb on PATH is
// followed through its symbolic links to the directory of the others.
func Find() (string, error) {
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(real))
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	installed, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest first: "9.6" < "15" numerically, not as strings.
	slices.SortFunc(installed, func(a, b string) int {
		va, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(a)), 64)
		vb, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(b)), 64)
		return -cmpFloat(va, vb)
	})
	dirs = append(dirs, installed...)
	for _, d := range dirs {
		if hasAll(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("no directory with %s on PATH or in /usr/lib/postgresql/*/bin", strings.Join(binaries, ", "))
}

func hasAll(dir string) bool {
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return false
		}
	}
	return true
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Require returns the directory of the PostgreSQL binaries. Without them
// it skips tb, or fails it when the environment variable CI is "true".
func Require(tb testing.TB) string {
	tb.Helper()
	dir, err := Find()
	if err != nil {
		servertest.Missing(tb, "pgtest: PostgreSQL is not installed: %v", err)
	}
	return dir
}

// Server is one PostgreSQL server on a unix socket.
type Server struct {
	// Dir is the directory of the server's socket (and of its data).
	Dir string

	bin     string
	cred    *syscall.Credential // the postgres user's, when run as root
	cmd     *exec.Cmd
	exited  <-chan struct{}
	log     *logBuffer
	stop    sync.Once
	mu      sync.Mutex
	created int
}

// Start starts a server for tb and stops it when tb ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := Require(tb)
	s, err := New(bin)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// New starts a server with the binaries in bin (see [Find]). The caller
// stops it with [Server.Stop]; for a server shared by a package's tests,
// from TestMain.
func New(bin string) (*Server, error) {
	// A unix socket path is limited to about 100 bytes: a short
	// directory under the system's temporary one, which every user can
	// reach (a test's TempDir is not reachable by the postgres user).
	dir, err := os.MkdirTemp("", "pg")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, bin: bin, log: new(logBuffer)}
	if os.Geteuid() == 0 {
		if s.cred, err = postgresUser(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		if err := os.Chown(dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := s.start(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// postgresUser returns the credential of the postgres user.
func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and no postgres user to run the server as: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("postgres user: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// command returns a command of one of the binaries, run in the server's
// directory as the server's user.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

func (s *Server) start() error {
	data := filepath.Join(s.Dir, "data")
	initdb := s.command("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
	if err := initdb.Run(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, s.log)
	}
	s.cmd = s.command("postgres", "-D", data, "-k", s.Dir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200")
	// Its own process group: a signal to the test's group (^C) does not
	// race the Stop below.
	if s.cmd.SysProcAttr == nil {
		s.cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	s.cmd.SysProcAttr.Setpgid = true
	exited, err := servertest.Start(s.cmd)
	if err != nil {
		s.cmd = nil
		return fmt.Errorf("start postgres: %w", err)
	}
	s.exited = exited
	return s.waitReady()
}

// waitReady polls pg_isready until the server accepts connections, exits,
// or startupWait passes.
func (s *Server) waitReady() error {
	err := servertest.WaitReady(s.exited, startupWait, 5*time.Second, func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, filepath.Join(s.bin, "pg_isready"),
			"-q", "-h", s.Dir, "-p", strconv.Itoa(port), "-U", "postgres").CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_isready: %v %s", err, out)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: %w\n%s", err, s.log)
	}
	return nil
}

// DSN returns a connection string (key=value, as libpq and pgx read it)
// for database name on the server, as the postgres superuser.
func (s *Server) DSN(name string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", s.Dir, port, name)
}

// CreateDatabase creates a new, empty database for tb and returns its DSN.
// Each call makes another database, so tests sharing a server do not see
// each other's tables.
func (s *Server) CreateDatabase(tb testing.TB) string {
	tb.Helper()
	s.mu.Lock()
	s.created++
	name := "test" + strconv.Itoa(s.created)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(s.bin, "createdb"),
		"-h", s.Dir, "-p", strconv.Itoa(port), "-U", "postgres", "-T", "template0", name).CombinedOutput()
	if err != nil {
		tb.Fatalf("pgtest: createdb %s: %v\n%s", name, err, out)
	}
	return s.DSN(name)
}

// Stop stops the server at once (an immediate shutdown: its data is
// thrown away with its directory) and waits for it to exit. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.stop.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			// SIGQUIT: immediate shutdown; the postmaster ends its
			// children before it exits.
			_ = s.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-s.exited:
			case <-time.After(30 * time.Second):
				_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
				<-s.exited
			}
		}
		_ = os.RemoveAll(s.Dir)
	})
}

// Log returns what the server and its tools printed so far.
func (s *Server) Log() string { return s.log.String() }

// logBuffer is a bytes.Buffer that the server's output goroutine writes
// while a test may read it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
