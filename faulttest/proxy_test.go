package faulttest

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A proxy sits between Redis clients and a redis-server: it listens on a
// loopback port (the listener is kept for the proxy's life, so no other
// process can take the port) and forwards every connection to the server.
// It can add latency to every reply, hold all traffic, hold the requests
// of the open connections and deliver them late, hold what the server sends
// on the open subscriptions (connections whose client sent SUBSCRIBE),
// refuse new connections and cut the open ones.
type proxy struct {
	ln   net.Listener
	dial func() (net.Conn, error)

	latency atomic.Int64 // added to each reply read from the server, in ns
	replies atomic.Int64 // reads from the server so far

	mu      sync.Mutex
	conns   map[*pipe]struct{}
	refuse  bool
	held    chan struct{} // non-nil while paused; closed by resume
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

// A pipe is one client connection and its server connection.
type pipe struct {
	client, server net.Conn
	once           sync.Once
	done           chan struct{}
	got            chan struct{} // a reply came from the server (buffered, one)
	held           chan struct{} // non-nil while HoldOpen holds the pipe's requests; guarded by proxy.mu
	sub            atomic.Bool   // the client sent SUBSCRIBE: a subscription's connection
	subHeld        chan struct{} // non-nil while HoldSubscriptions holds the server's bytes; guarded by proxy.mu
}

func (p *pipe) close() {
	p.once.Do(func() {
		close(p.done)
		_ = p.client.Close()
		_ = p.server.Close()
	})
}

// startProxy starts a proxy to the server that dial connects to, and closes
// it when tb ends.
func startProxy(tb testing.TB, dial func() (net.Conn, error)) *proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("proxy: %v", err)
	}
	p := &proxy{ln: ln, dial: dial, conns: make(map[*pipe]struct{}), closing: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.close)
	return p
}

// Addr is the proxy's "127.0.0.1:port".
func (p *proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency delays every reply the proxy reads from the server from now
// on by d (0: none). Replies keep their order; a reply read before the
// change keeps the delay it was read with.
func (p *proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// Replies returns how many reads from the server the proxy has made: a
// reply that Redis sent counts here when it arrives, before its latency.
func (p *proxy) Replies() int64 { return p.replies.Load() }

// Pause holds all traffic, both ways, until Resume: what a network
// partition looks like to both ends. Connections stay open.
func (p *proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = make(chan struct{})
	}
}

// Resume lets held traffic through.
func (p *proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held != nil {
		close(p.held)
		p.held = nil
	}
}

// Cut closes every open connection, both ends, with whatever was in flight.
func (p *proxy) Cut() {
	p.mu.Lock()
	conns := make([]*pipe, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// HoldOpen holds the requests of the connections open now: what their
// clients send reaches the server only at ThawOpen, even if a client has
// closed its connection meanwhile (as the socket buffer of a frozen server
// keeps them). Connections opened later are not held.
func (p *proxy) HoldOpen() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if c.held == nil {
			c.held = make(chan struct{})
		}
	}
}

// ThawOpen delivers the requests HoldOpen held, and forwards those
// connections as usual again.
func (p *proxy) ThawOpen() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if c.held != nil {
			close(c.held)
			c.held = nil
		}
	}
}

// HoldSubscriptions holds what the server sends on the subscriptions open
// now (connections whose client sent SUBSCRIBE): messages and the replies
// to PING stop on their way, as on a network that holds a connection's
// bytes without breaking it, until ReleaseSubscriptions or the connection
// closes (then they are lost). Requests still reach the server, and
// subscriptions opened later are not held.
func (p *proxy) HoldSubscriptions() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if c.sub.Load() && c.subHeld == nil {
			c.subHeld = make(chan struct{})
		}
	}
}

// ReleaseSubscriptions delivers what HoldSubscriptions held.
func (p *proxy) ReleaseSubscriptions() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if c.subHeld != nil {
			close(c.subHeld)
			c.subHeld = nil
		}
	}
}

// isSubscribe reports whether b, bytes a client sent, holds a SUBSCRIBE
// (as go-redis writes it: a RESP array, the command in lower case).
func isSubscribe(b []byte) bool { return bytes.Contains(b, []byte("\r\nsubscribe\r\n")) }

// Refuse makes the proxy close new connections at once (on) or forward
// them again (off).
func (p *proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

func (p *proxy) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.closing)
	p.mu.Unlock()
	_ = p.ln.Close()
	p.Resume()
	p.Cut()
	p.wg.Wait()
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		refuse, closed := p.refuse, p.closed
		p.mu.Unlock()
		if refuse || closed {
			_ = c.Close()
			continue
		}
		s, err := p.dial()
		if err != nil {
			_ = c.Close()
			continue
		}
		pp := &pipe{client: c, server: s, done: make(chan struct{}), got: make(chan struct{}, 1)}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			pp.close()
			continue
		}
		p.conns[pp] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(3)
		go p.forward(pp, c, s)
		replies := make(chan chunk, 64)
		go p.readReplies(pp, replies)
		go p.writeReplies(pp, replies)
	}
}

// A chunk is one read from the server, with the time it may be delivered.
type chunk struct {
	b   []byte
	due time.Time
}

// wait blocks while the proxy is paused; false if pp closed meanwhile.
func (p *proxy) wait(pp *pipe) bool {
	for {
		p.mu.Lock()
		held := p.held
		p.mu.Unlock()
		if held == nil {
			return true
		}
		select {
		case <-held:
		case <-pp.done:
			return false
		}
	}
}

func (p *proxy) drop(pp *pipe) {
	pp.close()
	p.mu.Lock()
	delete(p.conns, pp)
	p.mu.Unlock()
}

// forward copies client requests to the server, without delay. A request
// held by HoldOpen is delivered at ThawOpen; if the client has gone by
// then, the connection to the server stays open until the server answers,
// so that the server runs the request.
func (p *proxy) forward(pp *pipe, from, to net.Conn) {
	defer p.wg.Done()
	defer p.drop(pp)
	buf := make([]byte, 32<<10)
	delivered := false // a held request was delivered
	for {
		n, err := from.Read(buf)
		if n > 0 {
			if isSubscribe(buf[:n]) {
				pp.sub.Store(true)
			}
			p.mu.Lock()
			held := pp.held
			p.mu.Unlock()
			if held != nil {
				select {
				case <-held:
					delivered = true
				case <-pp.done: // cut
					return
				case <-p.closing:
					return
				}
				select { // from now on, got means a reply to this request
				case <-pp.got:
				default:
				}
			}
			if !p.wait(pp) {
				return
			}
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if delivered {
				t := time.NewTimer(5 * time.Second) // a bound, should the server never answer
				select {
				case <-pp.got:
				case <-p.closing:
				case <-t.C:
				}
				t.Stop()
			}
			return
		}
	}
}

// readReplies reads the server's replies and stamps each with its due time.
func (p *proxy) readReplies(pp *pipe, out chan<- chunk) {
	defer p.wg.Done()
	defer close(out)
	for {
		buf := make([]byte, 32<<10)
		n, err := pp.server.Read(buf)
		if n > 0 {
			p.replies.Add(1)
			select {
			case pp.got <- struct{}{}:
			default:
			}
			c := chunk{b: buf[:n], due: time.Now().Add(time.Duration(p.latency.Load()))}
			select {
			case out <- c:
			case <-pp.done:
				return
			}
		}
		if err != nil {
			p.drop(pp)
			return
		}
	}
}

// writeReplies delivers replies to the client, each once it is due.
func (p *proxy) writeReplies(pp *pipe, in <-chan chunk) {
	defer p.wg.Done()
	defer p.drop(pp)
	for c := range in {
		if d := time.Until(c.due); d > 0 {
			t := time.NewTimer(d) // the injected latency, not an ordering
			select {
			case <-t.C:
			case <-pp.done:
				t.Stop()
				return
			}
		}
		p.mu.Lock()
		held := pp.subHeld
		p.mu.Unlock()
		if held != nil {
			select {
			case <-held:
			case <-pp.done:
				return
			}
		}
		if !p.wait(pp) {
			return
		}
		if _, err := pp.client.Write(c.b); err != nil {
			return
		}
	}
}
