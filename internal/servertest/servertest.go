// Package servertest holds what the helpers that start real servers for
// tests share (redistest, pgtest, memcachestore's memcachedtest): starting
// a server process whose exit is watched, and waiting, with backoff, until
// it answers.
package servertest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// WaitStopped waits, at most for wait, until every thread of process pid
// is stopped: SIGSTOP is delivered asynchronously, so a thread of a server
// could still answer a request sent just after kill(2) returned. It
// returns at once where there is no /proc to ask.
func WaitStopped(pid int, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for d := 100 * time.Microsecond; !stopped(pid) && time.Now().Before(deadline); d = min(2*d, 10*time.Millisecond) {
		time.Sleep(d) // polling the kernel's view, not ordering events
	}
}

// stopped reports whether every thread of pid is stopped, by /proc; true
// where there is no /proc to ask.
func stopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			continue // the thread exited
		}
		// The state follows the command name, which is in parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			return false
		}
		if st := b[i+2]; st != 'T' && st != 't' {
			return false
		}
	}
	return true
}

// Missing skips tb, saying what is not installed (format and args), or
// fails it when the environment variable CI is "true": under CI a missing
// server is a failure, never a skip.
func Missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s (CI=true)", msg)
		return
	}
	tb.Skip(msg)
}

// Start starts cmd and returns a channel closed once it has exited and
// cmd.Wait has returned (so that output cmd writes to a buffer is all
// there).
func Start(cmd *exec.Cmd) (exited <-chan struct{}, err error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(ch)
	}()
	return ch, nil
}

// WaitReady calls ready until it returns nil, the process exits (exited
// is closed) or wait passes, backing off from 5 ms to 200 ms between
// calls. Each call's context ends after perCall. The error says which,
// with ready's last error.
func WaitReady(exited <-chan struct{}, wait, perCall time.Duration, ready func(context.Context) error) error {
	deadline := time.Now().Add(wait)
	backoff := 5 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), perCall)
		err := ready(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before it was ready (last error: %v)", err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", wait, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-exited:
			t.Stop()
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}
