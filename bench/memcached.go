package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// memcachedServer is a memcached process this program started.
type memcachedServer struct {
	Addr   string
	cmd    *exec.Cmd
	exited chan error
}

var errNoMemcached = errors.New("no memcached for this run")

// startMemcached starts memcached on a free loopback port (TCP, as the
// Redis rows' server), with 256 MiB of memory, and waits until it answers
// the meta no-op.
func startMemcached() (*memcachedServer, error) {
	bin, err := exec.LookPath("memcached")
	if err != nil {
		return nil, fmt.Errorf("memcached not found: %w (pass -memcached ADDR to use a running one)", err)
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		s, err := runMemcached(bin, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func runMemcached(bin string, port int) (*memcachedServer, error) {
	args := []string{"-l", "127.0.0.1", "-p", fmt.Sprint(port), "-U", "0", "-m", "256", "-c", "10000", "-t", "2"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root") // memcached refuses root otherwise
	}
	cmd := exec.Command(bin, args...)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("memcached on port %d exited: %v: %s", port, err, log.String())
		default:
		}
		if c, err := dialMemcached(addr); err == nil {
			_, err := c.roundTrip("mn", nil)
			c.Close()
			if err == nil {
				return &memcachedServer{Addr: addr, cmd: cmd, exited: exited}, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-exited
	return nil, errors.New("memcached did not answer within 10s")
}

// Stop kills the server.
func (s *memcachedServer) Stop() {
	if s == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
}

// memcachedConn is one connection speaking the meta protocol, for the raw
// baseline: "mg <key> v" is the plainest read memcached has.
type memcachedConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func dialMemcached(addr string) (*memcachedConn, error) {
	network := "tcp"
	if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return nil, err
	}
	return &memcachedConn{c: c, r: bufio.NewReaderSize(c, 16<<10), w: bufio.NewWriterSize(c, 16<<10)}, nil
}

func (m *memcachedConn) Close() error { return m.c.Close() }

// roundTrip sends one meta command (with data, for ms) and returns the
// value of a VA reply.
func (m *memcachedConn) roundTrip(line string, data []byte) ([]byte, error) {
	m.w.WriteString(line)
	m.w.WriteString("\r\n")
	if data != nil {
		m.w.Write(data)
		m.w.WriteString("\r\n")
	}
	if err := m.w.Flush(); err != nil {
		return nil, err
	}
	reply, err := m.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	f := strings.Fields(reply)
	switch {
	case len(f) == 0:
		return nil, errors.New("memcached: empty reply")
	case f[0] == "VA" && len(f) > 1:
		n, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, fmt.Errorf("memcached: bad reply %q", reply)
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(m.r, b); err != nil {
			return nil, err
		}
		return b[:n], nil
	case f[0] == "HD" || f[0] == "MN":
		return nil, nil
	}
	return nil, fmt.Errorf("memcached: %q to %q", strings.TrimSpace(reply), line)
}

// memcachedVersion returns the server's version.
func memcachedVersion(addr string) string {
	c, err := dialMemcached(addr)
	if err != nil {
		return "?"
	}
	defer c.Close()
	c.w.WriteString("version\r\n")
	c.w.Flush()
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "?"
	}
	v, _ := strings.CutPrefix(strings.TrimSpace(line), "VERSION ")
	return v
}

// rawMemcachedGet is the raw baseline: a pool of connections, one meta get
// per read.
type rawMemcachedGet struct {
	addr string
	pool chan *memcachedConn
}

func newRawMemcachedGet(addr string) *rawMemcachedGet {
	return &rawMemcachedGet{addr: addr, pool: make(chan *memcachedConn, 64)}
}

func (r *rawMemcachedGet) conn() (*memcachedConn, error) {
	select {
	case c := <-r.pool:
		return c, nil
	default:
		return dialMemcached(r.addr)
	}
}

func (r *rawMemcachedGet) put(c *memcachedConn) {
	select {
	case r.pool <- c:
	default:
		c.Close()
	}
}

func (r *rawMemcachedGet) do(_ context.Context, line string, data []byte) ([]byte, error) {
	c, err := r.conn()
	if err != nil {
		return nil, err
	}
	v, err := c.roundTrip(line, data)
	if err != nil {
		c.Close()
		return nil, err
	}
	r.put(c)
	return v, nil
}

func (r *rawMemcachedGet) Close() {
	for {
		select {
		case c := <-r.pool:
			c.Close()
		default:
			return
		}
	}
}
