// Package pgtest starts a real PostgreSQL server for tests: a fresh cluster
// (initdb) in a temporary directory, listening only on a unix socket there,
// without fsync, stopped and removed by Stop.
//
// Without initdb and postgres (on PATH or under /usr/lib/postgresql/*/bin)
// the tests are skipped, except under CI=true, where that is a failure. The
// server refuses to run as root: as root, pgtest runs it as the user
// "postgres".
package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// A Server is a running PostgreSQL cluster.
type Server struct {
	// Dir is the directory of the cluster's data and socket.
	Dir string
	// DSN connects to the database "postgres" as the superuser, in the
	// key=value form that lib/pq and pgx take.
	DSN string

	bin  string
	cred *syscall.Credential
	once sync.Once
}

// Find returns the directory of the PostgreSQL server programs, or an
// error saying why there is none.
func Find() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("pgtest: no PostgreSQL server programs (pg_ctl, initdb) on PATH or under /usr/lib/postgresql")
}

// Require returns the directory of the server programs. Without them it
// skips tb, or fails it when the environment variable CI is "true".
func Require(tb testing.TB) string {
	tb.Helper()
	bin, err := Find()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%v (CI=true)", err)
		}
		tb.Skip(err)
	}
	return bin
}

// Start starts a server. The caller stops it with Stop (TestMain does,
// after the tests: one server serves a package's tests).
func Start() (*Server, error) {
	bin, err := Find()
	if err != nil {
		return nil, err
	}
	// A unix socket path is limited to about 100 bytes: a short directory.
	dir, err := os.MkdirTemp("", "pg")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: running as root, and no user postgres to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if err := s.run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// -w waits until the server accepts connections.
	opts := fmt.Sprintf("-k %s -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50", dir)
	if err := s.run("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w\n%s", err, log)
	}
	s.DSN = fmt.Sprintf("host=%s port=5432 user=postgres dbname=postgres sslmode=disable", dir)
	return s, nil
}

// Stop stops the server at once and removes its directory. Later calls do
// nothing.
func (s *Server) Stop() error {
	var err error
	s.once.Do(func() {
		err = s.run("pg_ctl", "-D", filepath.Join(s.Dir, "data"), "-m", "immediate", "-w", "stop")
		if rmErr := os.RemoveAll(s.Dir); err == nil {
			err = rmErr
		}
	})
	return err
}

func (s *Server) run(prog string, args ...string) error {
	cmd := exec.Command(filepath.Join(s.bin, prog), args...)
	cmd.Dir = s.Dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgtest: %s: %w\n%s", prog, err, out.Bytes())
	}
	return nil
}
