package servertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestWaitReady(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh:", err)
	}
	t.Run("ready on the third call", func(t *testing.T) {
		_, exited := startIdle(t, sh)
		calls := 0
		err = WaitReady(exited, time.Minute, time.Second, func(context.Context) error {
			if calls++; calls < 3 {
				return errors.New("not yet")
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Fatalf("WaitReady: %v after %d calls, want nil after 3", err, calls)
		}
	})
	t.Run("the process exits", func(t *testing.T) {
		exited, err := Start(exec.Command(sh, "-c", "exit 3"))
		if err != nil {
			t.Fatal(err)
		}
		err = WaitReady(exited, time.Minute, time.Second, func(context.Context) error { return errors.New("refused") })
		if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("WaitReady: %v, want that it exited, with the last error", err)
		}
	})
	t.Run("not ready in time", func(t *testing.T) {
		_, exited := startIdle(t, sh)
		err := WaitReady(exited, 0, time.Second, func(context.Context) error { return errors.New("refused") })
		if err == nil || !strings.Contains(err.Error(), "not ready after") {
			t.Fatalf("WaitReady: %v, want not ready", err)
		}
	})
}

// startIdle starts sh waiting on its stdin, with Start: it lives until
// the test ends, when it is killed (it may be stopped) and its exit
// waited for.
func startIdle(t *testing.T, sh string) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(sh, "-c", "read x")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	exited, err := Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); in.Close(); <-exited })
	return cmd, exited
}

// recorder is a testing.TB that notes a Fatalf or a Skip instead of
// ending the test.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *recorder) Skip(args ...any)                  { r.skip = fmt.Sprint(args...) }

func TestMissing(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		r := &recorder{TB: t}
		Missing(r, "no %s on PATH", "redis-server")
		if ci == "true" && (r.fatal != "no redis-server on PATH (CI=true)" || r.skip != "") ||
			ci == "" && (r.skip != "no redis-server on PATH" || r.fatal != "") {
			t.Errorf("CI=%q: failed with %q, skipped with %q", ci, r.fatal, r.skip)
		}
	}
}

func TestWaitStopped(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh:", err)
	}
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skip("no /proc to ask:", err)
	}
	cmd, _ := startIdle(t, sh)
	pid := cmd.Process.Pid
	if stopped(pid) {
		t.Fatal("a running process reads as stopped")
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	WaitStopped(pid, time.Minute)
	if !stopped(pid) {
		t.Fatal("WaitStopped returned before the process was stopped")
	}
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}
