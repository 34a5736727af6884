package memcachestore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// This file is the small meta-protocol client the store runs on: one pool
// of connections per server, and a pipeline that writes a batch of meta
// commands on one connection and reads their replies in order. memcached
// answers the commands of one connection in the order it got them, which
// the store relies on: a read placed after a write in one pipeline sees
// the write.

// op is one meta command and, once the pipeline ran, its reply.
type op struct {
	line  string // the command line without "\r\n", e.g. "mg k v c t"
	data  []byte // ms only: the value
	isSet bool

	// The reply.
	status string          // "VA", "HD", "EN", "NF", "NS", "EX"
	flags  map[byte]string // returned flags: 'c' cas, 't' ttl, 'W', 'X', 'Z'
	value  []byte          // VA only
	err    error           // CLIENT_ERROR / SERVER_ERROR of this command
}

func (o *op) has(f byte) bool { _, ok := o.flags[f]; return ok }

func (o *op) uint(f byte) uint64 {
	v, _ := strconv.ParseUint(o.flags[f], 10, 64)
	return v
}

func (o *op) int(f byte) int64 {
	v, _ := strconv.ParseInt(o.flags[f], 10, 64)
	return v
}

// found reports a hit (VA or HD).
func (o *op) found() bool { return o.status == "VA" || o.status == "HD" }

func get(name, flags string) *op { return &op{line: "mg " + name + " " + flags} }

func set(name string, value []byte, flags string) *op {
	return &op{line: "ms " + name + " " + strconv.Itoa(len(value)) + " " + flags, data: value, isSet: true}
}

func del(name, flags string) *op { return &op{line: strings.TrimSpace("md " + name + " " + flags)} }

// errServer marks a reply the server gave for one command
// (SERVER_ERROR, CLIENT_ERROR).
var errServer = errors.New("memcached")

// node is one server and its idle connections.
type node struct {
	network, addr string
	dialTimeout   time.Duration

	mu   sync.Mutex
	idle []*conn

	pipelines atomic.Int64 // pipelines sent: a count for tests
}

type conn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer

	// The watch of the running pipeline's context (see watch). mu guards
	// ctx, gen and stopCtx: the timer's and the context's callbacks run
	// on goroutines of their own, possibly after the pipeline ended.
	mu      sync.Mutex
	ctx     context.Context // the running pipeline's; nil between pipelines
	gen     uint64          // counts pipelines: a late callback of an old one does nothing
	stopCtx func() bool     // the context.AfterFunc of a slow pipeline
	timer   *time.Timer     // fires slowAfter into a pipeline
}

// slowAfter is how long a pipeline runs before the store watches its
// context for an end before its deadline.
const slowAfter = time.Millisecond

const maxIdle = 64

func (n *node) get(ctx context.Context) (*conn, error) {
	n.mu.Lock()
	if k := len(n.idle); k > 0 {
		c := n.idle[k-1]
		n.idle = n.idle[:k-1]
		n.mu.Unlock()
		return c, nil
	}
	n.mu.Unlock()
	d := net.Dialer{Timeout: n.dialTimeout}
	c, err := d.DialContext(ctx, n.network, n.addr)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, r: bufio.NewReaderSize(c, 16<<10), w: bufio.NewWriterSize(c, 16<<10)}, nil
}

func (n *node) put(c *conn) {
	n.mu.Lock()
	if len(n.idle) < maxIdle {
		n.idle = append(n.idle, c)
		c = nil
	}
	n.mu.Unlock()
	if c != nil {
		c.c.Close()
	}
}

func (n *node) close() {
	n.mu.Lock()
	idle := n.idle
	n.idle = nil
	n.mu.Unlock()
	for _, c := range idle {
		c.c.Close()
	}
}

// do runs ops as one pipeline on one connection of n. A network error,
// or the end of ctx, fails the whole pipeline and closes the connection
// (its replies can no longer be matched to commands): it is returned, and
// set as the error of every command not yet answered.
func (n *node) do(ctx context.Context, ops []*op) error {
	if len(ops) == 0 {
		return nil
	}
	n.pipelines.Add(1)
	c, err := n.get(ctx)
	if err != nil {
		return failed(ops, fmt.Errorf("memcachestore: %s: %w", n.addr, err))
	}
	if err := c.pipeline(ctx, ops); err != nil {
		c.c.Close()
		return failed(ops, fmt.Errorf("memcachestore: %s: %w", n.addr, err))
	}
	n.put(c)
	return nil
}

// failed gives err to every command of ops that has no reply, so that a
// batch of many keys finds the error of its pipeline on each key's
// commands, and returns err.
func failed(ops []*op, err error) error {
	for _, o := range ops {
		if o.status == "" {
			o.status, o.err = "ERR", err
		}
	}
	return err
}

func (c *conn) pipeline(ctx context.Context, ops []*op) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Time{}
	}
	_ = c.c.SetDeadline(deadline)
	c.watch(ctx)
	defer c.unwatch()
	for _, o := range ops {
		c.w.WriteString(o.line)
		c.w.WriteString("\r\n")
		if o.isSet {
			c.w.Write(o.data)
			c.w.WriteString("\r\n")
		}
	}
	if err := c.w.Flush(); err != nil {
		return ctxErr(ctx, err)
	}
	for _, o := range ops {
		if err := c.read(o); err != nil {
			return ctxErr(ctx, err)
		}
	}
	return nil
}

// watch makes an end of ctx before its deadline (a cancel) end the
// pipeline too, so that a hung server does not hold the caller past its
// context: it moves the connection's deadline into the past. The
// connection's deadline, ctx's, covers the rest.
//
// context.AfterFunc does that at once, but on a context of a type of its
// own (the Cache's store-call context is one) it starts a goroutine per
// call, which costs about as much as the round trip itself. So the store
// asks for it only once a pipeline has run for slowAfter, from a timer
// that the connection keeps: a fast pipeline pays for a timer's Reset and
// Stop, and a cancel ends a slow one within slowAfter.
func (c *conn) watch(ctx context.Context) {
	if ctx.Done() == nil {
		return // it never ends, or only by its deadline, which is the connection's
	}
	c.mu.Lock()
	c.ctx = ctx
	c.gen++
	c.mu.Unlock()
	if c.timer == nil {
		c.timer = time.AfterFunc(slowAfter, c.slow)
	} else {
		c.timer.Reset(slowAfter)
	}
}

// slow runs slowAfter into a pipeline: from now on, the end of its
// context moves the connection's deadline into the past.
func (c *conn) slow() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil || c.stopCtx != nil {
		return // the pipeline ended, or is watched already
	}
	gen := c.gen
	c.stopCtx = context.AfterFunc(c.ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.gen == gen && c.ctx != nil {
			_ = c.c.SetDeadline(time.Unix(1, 0))
		}
	})
}

// unwatch ends the watch of the pipeline that ended.
func (c *conn) unwatch() {
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Lock()
	c.ctx = nil
	stop := c.stopCtx
	c.stopCtx = nil
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// ctxErr reports an I/O error as the end of ctx when ctx ended: the
// connection's deadline is ctx's, and it may fire a moment before ctx
// reports its own end.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	}
	return err
}

func (c *conn) read(o *op) error {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "SERVER_ERROR") || strings.HasPrefix(line, "CLIENT_ERROR") || line == "ERROR" {
		o.status = "ERR"
		o.err = fmt.Errorf("%w: %s: %s", errServer, strings.Fields(o.line)[0], line)
		if line == "ERROR" || strings.HasPrefix(line, "CLIENT_ERROR") && o.isSet {
			// The server may have read the value as commands: the
			// connection is out of step.
			return o.err
		}
		return nil
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return fmt.Errorf("empty reply to %q", o.line)
	}
	o.status = fields[0]
	rest := fields[1:]
	size := -1
	if o.status == "VA" {
		if len(rest) == 0 {
			return fmt.Errorf("bad reply %q", line)
		}
		size, err = strconv.Atoi(rest[0])
		if err != nil || size < 0 {
			return fmt.Errorf("bad reply %q", line)
		}
		rest = rest[1:]
	}
	for _, f := range rest {
		if o.flags == nil {
			o.flags = make(map[byte]string, len(rest))
		}
		o.flags[f[0]] = f[1:]
	}
	if size >= 0 {
		b := make([]byte, size+2)
		if _, err := io.ReadFull(c.r, b); err != nil {
			return err
		}
		if b[size] != '\r' || b[size+1] != '\n' {
			return fmt.Errorf("bad value terminator in reply to %q", o.line)
		}
		o.value = b[:size:size]
	}
	switch o.status {
	case "VA", "HD", "EN", "NF", "NS", "EX", "MN":
		return nil
	}
	return fmt.Errorf("unknown reply %q to %q", line, o.line)
}
