package httpcache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/paddockcache/paddock/httpcache"
)

// writes is a ResponseWriter that reports each write.
type writes struct {
	*httptest.ResponseRecorder
	mu    sync.Mutex
	wrote chan string
}

func newWrites() *writes {
	return &writes{ResponseRecorder: httptest.NewRecorder(), wrote: make(chan string, 100)}
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.ResponseRecorder.Write(p)
	w.wrote <- string(p)
	return n, err
}

func (w *writes) body() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.Body.String()
}

// The client whose request renders a page gets its bytes as the handler
// writes them; a client coalesced with it gets the complete copy.
func TestStreamsToTheFirstClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hc := newCache(t, nil)
		release := make(chan struct{})
		h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "part 1;")
			<-release
			io.WriteString(w, "part 2")
		}}
		v := hc.Handler(h)
		first, second := newWrites(), newWrites()
		var wg sync.WaitGroup
		wg.Go(func() { v.ServeHTTP(first, httptest.NewRequest("GET", "/s", nil)) })
		if got := <-first.wrote; got != "part 1;" {
			t.Fatalf("first write %q", got)
		}
		wg.Go(func() { v.ServeHTTP(second, httptest.NewRequest("GET", "/s", nil)) })
		synctest.Wait() // the second request waits for the render
		if second.body() != "" {
			t.Errorf("the coalesced client got %q before the render ended", second.body())
		}
		close(release)
		wg.Wait()
		if first.body() != "part 1;part 2" || second.body() != "part 1;part 2" {
			t.Errorf("bodies %q and %q", first.body(), second.body())
		}
		if !strings.Contains(status(second.Header()), "collapsed") {
			t.Errorf("second: %s, want collapsed", status(second.Header()))
		}
		if h.n.Load() != 1 {
			t.Errorf("%d renders", h.n.Load())
		}
	})
}

// With PostProcess, or for a status that a stale-if-error page may
// replace, the first client gets the page once it is complete.
func TestNoStreamWhenTheWholeBodyIsNeeded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   []httpcache.Option
		status int
	}{
		{"PostProcess", []httpcache.Option{httpcache.PostProcess(func(*http.Request, *httpcache.Page) {})}, 200},
		{"PostProcessAlways", []httpcache.Option{httpcache.PostProcessAlways(func(http.ResponseWriter, *http.Request, *httpcache.Page) {})}, 200},
		{"5xx", nil, 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				hc := newCache(t, nil, tc.opts...)
				release := make(chan struct{})
				v := hc.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.WriteHeader(tc.status)
					io.WriteString(w, "part 1;")
					<-release
					io.WriteString(w, "part 2")
				}))
				first := newWrites()
				done := make(chan struct{})
				go func() { v.ServeHTTP(first, httptest.NewRequest("GET", "/s", nil)); close(done) }()
				synctest.Wait()
				if b := first.body(); b != "" {
					t.Errorf("the first client got %q before the render ended", b)
				}
				close(release)
				<-done
				if first.body() != "part 1;part 2" || first.Code != tc.status {
					t.Errorf("%d %q", first.Code, first.body())
				}
			})
		})
	}
}

// Bytes reach a real client over the network before the render ends.
func TestStreamOverTheNetwork(t *testing.T) {
	hc := newCache(t, nil, httpcache.MaxBodySize(1<<20))
	release := make(chan struct{})
	chunk := bytes.Repeat([]byte("x"), 64<<10) // past net/http's write buffer
	url, client := server(t, hc.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(chunk)
		<-release
		io.WriteString(w, "end")
	})))
	resp, err := client.Get(url + "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make([]byte, len(chunk))
	if _, err := io.ReadFull(resp.Body, got); err != nil { // before release: streamed
		t.Fatal(err)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "end" {
		t.Errorf("tail %q", rest)
	}
	_, b := get(t, client, "GET", url+"/big")
	if len(b) != len(chunk)+3 {
		t.Errorf("the stored page has %d bytes, want %d", len(b), len(chunk)+3)
	}
}

// A handler that streams (flushes) holds no other request: those
// coalesced with it are released at once and render for themselves.
func TestStreamHoldsNoOtherRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hc := newCache(t, nil)
		gate, end := make(chan struct{}), make(chan struct{})
		h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			if k == 1 {
				<-gate
			}
			io.WriteString(w, "data: hello\n\n")
			w.(http.Flusher).Flush()
			if k == 1 {
				<-end // the stream goes on
			}
		}}
		v := hc.Handler(h)
		first, second, third := newWrites(), newWrites(), newWrites()
		var wg sync.WaitGroup
		wg.Go(func() { v.ServeHTTP(first, httptest.NewRequest("GET", "/events", nil)) })
		synctest.Wait()
		secondDone := make(chan struct{})
		go func() { v.ServeHTTP(second, httptest.NewRequest("GET", "/events", nil)); close(secondDone) }()
		synctest.Wait() // coalesced with the first
		close(gate)
		<-secondDone // released by the first's flush, rendered its own
		v.ServeHTTP(third, httptest.NewRequest("GET", "/events", nil))
		if second.body() != "data: hello\n\n" || third.body() != "data: hello\n\n" {
			t.Errorf("second %q, third %q", second.body(), third.body())
		}
		if <-first.wrote != "data: hello\n\n" {
			t.Error("the first stream did not get its event")
		}
		close(end)
		wg.Wait()
		if n := h.n.Load(); n != 3 {
			t.Errorf("%d renders, want 3", n)
		}
	})
}

// A client that goes away while its render streams to it does not stop
// the render: the page is stored for the next request.
func TestClientGoneMidStream(t *testing.T) {
	hc := newCache(t, nil)
	release := make(chan struct{})
	rendered := make(chan struct{})
	chunk := bytes.Repeat([]byte("y"), 64<<10)
	h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
		defer close(rendered)
		w.Write(chunk)
		<-release
		io.WriteString(w, "end")
		if err := r.Context().Err(); err != nil {
			t.Errorf("the render's context ended with the client: %v", err)
		}
	}}
	url, client := server(t, hc.Handler(h))
	cctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(cctx, "GET", url+"/gone", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(resp.Body, make([]byte, len(chunk)))
	cancel()
	resp.Body.Close()
	close(release)
	<-rendered
	// The render's fill may land just after the handler returns: a
	// request either hits, or joins the flight.
	_, b := get(t, client, "GET", url+"/gone")
	if len(b) != len(chunk)+3 || h.n.Load() != 1 {
		t.Errorf("after the client left: %d bytes, %d renders; want the stored page", len(b), h.n.Load())
	}
}

// A handler that panics fails its request and the coalesced ones, as
// net/http does for a panic, and sticks to nothing.
func TestHandlerPanics(t *testing.T) {
	hc := newCache(t, nil)
	var fail = true
	var mu sync.Mutex
	url, client := server(t, hc.Handler(&counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f := fail
		mu.Unlock()
		if f {
			panic("boom")
		}
		body(k, w, r)
	}}))
	_, err := client.Get(url + "/p")
	if err == nil || !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "EOF") {
		t.Errorf("a panicking handler: err %v, want the connection closed", err)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	if resp, b := get(t, client, "GET", url+"/p"); resp.StatusCode != 200 || b != "render 2 of /p" {
		t.Errorf("after the panic: %d %q", resp.StatusCode, b)
	}
}

// A handler that takes the connection gets it, for the request that
// rendered; nothing is stored or shared.
func TestHijack(t *testing.T) {
	hc := newCache(t, nil)
	h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		defer conn.Close()
		io.WriteString(rw, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		rw.Flush()
	}}
	cached := hc.Handler(h)
	served := make(chan struct{}, 10)
	url, client := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cached.ServeHTTP(w, r)
		served <- struct{}{} // the stats are counted by now
	}))
	for range 2 {
		resp, b := get(t, client, "GET", url+"/raw")
		<-served
		if resp.StatusCode != 200 || b != "hijacked" {
			t.Errorf("%d %q", resp.StatusCode, b)
		}
	}
	if n := h.n.Load(); n != 2 {
		t.Errorf("%d renders, want 2: a hijacked response is not stored", n)
	}
	if s := hc.Stats(); s[len(s)-1].Reasons["hijacked"] != 2 {
		t.Errorf("reasons %v", s[len(s)-1].Reasons)
	}
	// A request that upgrades the connection bypasses the cache.
	get(t, client, "GET", url+"/raw", "Upgrade", "websocket", "Connection", "Upgrade")
	<-served
	if s := hc.Stats(); s[len(s)-1].Reasons["upgrade"] != 1 || s[len(s)-1].Bypassed != 1 {
		t.Errorf("an upgrade: %+v, want a bypass", s[len(s)-1])
	}
}

// A handler that panics after its response began to stream ends the
// client's connection (http.ErrAbortHandler), as net/http does, and stores
// nothing.
func TestPanicMidStream(t *testing.T) {
	hc := newCache(t, nil)
	h := &counting{serve: func(k int64, w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part")
		if k == 1 {
			panic("boom")
		}
	}}
	v := hc.Handler(h)
	w := httptest.NewRecorder()
	func() {
		defer func() {
			if r := recover(); r != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler", r)
			}
		}()
		v.ServeHTTP(w, httptest.NewRequest("GET", "/p", nil))
	}()
	if w.Body.String() != "part" {
		t.Errorf("the client got %q before the abort", w.Body.String())
	}
	if w := do(v, "GET", "/p"); w.Body.String() != "part" || h.n.Load() != 2 {
		t.Errorf("after the panic: %q, %d renders; want a new render", w.Body.String(), h.n.Load())
	}
}
