package httpcache

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
)

// capture is the ResponseWriter a render writes to. It keeps the response
// for the page and, when the render is the one the client waits for and
// nothing needs the whole body first, streams it to that client as it is
// written (see call.claim).
type capture struct {
	c      *call
	ctx    context.Context // the load's
	header http.Header
	// stream: the response may be streamed to the client if it is a 2xx.
	stream bool
	// refresh: a background refresh, which may not reach the client at all.
	refresh bool

	wrote     bool
	status    int
	why       Reason // why the response is not stored
	body      []byte
	size      int  // bytes written, kept or not
	dropped   bool // the body outgrew MaxBodySize while streaming: not kept
	streaming bool // this render writes to the client
	flushed   bool
	hijacked  bool
}

func (cw *capture) Header() http.Header { return cw.header }

func (cw *capture) WriteHeader(code int) {
	if cw.wrote || cw.hijacked {
		return
	}
	if code < 200 {
		return // informational responses are not kept or forwarded
	}
	cw.wrote, cw.status = true, code
	cfg := &cw.c.h.cfg
	if len(cfg.vary) > 0 {
		have, _ := parseVary(cw.header)
		for _, n := range cfg.vary {
			if !slices.Contains(have, n) {
				cw.header.Add("Vary", n)
			}
		}
	}
	d := parseCacheControl(cw.header)
	cw.why = cfg.refusal(code, cw.header, &d)
	if cw.why == ReasonNone {
		if k := cfg.keptFor(cw.header); k.zero() {
			cw.why = ReasonExpired
		} else if n, err := strconv.ParseInt(cw.header.Get("Content-Length"), 10, 64); err == nil && n > int64(cfg.maxBody) {
			cw.why = ReasonTooLarge
		}
	}
	if cw.why.private() {
		private(cw.ctx)
	}
	if cw.stream && code >= 200 && code < 300 && cw.c.claim() {
		cw.startStream()
	}
}

// startStream sends the header and what is kept of the body so far to the
// client. The render has claimed it.
func (cw *capture) startStream() {
	cw.streaming = true
	cw.c.send(func(w http.ResponseWriter) {
		h := w.Header()
		for k, v := range cw.header {
			h[k] = slices.Clone(v)
		}
		cs := "paddock; fwd=miss; fwd-status=" + strconv.Itoa(cw.status)
		if cw.why != ReasonNone {
			cs += "; detail=" + cw.why.String()
		}
		h.Add("Cache-Status", cs)
		w.WriteHeader(cw.status)
		if len(cw.body) > 0 {
			w.Write(cw.body)
		}
	})
}

func (cw *capture) Write(p []byte) (int, error) {
	if cw.hijacked {
		return 0, http.ErrHijacked
	}
	if !cw.wrote {
		if _, ok := cw.header["Content-Type"]; !ok && len(p) > 0 {
			cw.header.Set("Content-Type", http.DetectContentType(p))
		}
		cw.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(cw.status) {
		return 0, http.ErrBodyNotAllowed
	}
	cw.size += len(p)
	switch {
	case cw.dropped:
	case cw.size > cw.c.h.cfg.maxBody:
		if cw.why == ReasonNone {
			cw.why = ReasonTooLarge
		}
		if cw.streaming {
			// The client has the bytes; the requests coalesced with this
			// one cannot be given a copy: they render for themselves.
			cw.dropped, cw.body = true, nil
			private(cw.ctx)
		} else {
			cw.body = append(cw.body, p...) // the client waits for it
		}
	default:
		cw.body = append(cw.body, p...)
	}
	if cw.streaming {
		cw.c.send(func(w http.ResponseWriter) { w.Write(p) })
	}
	return len(p), nil
}

// Flush makes the response a stream: it is passed to the client as it is
// written, and neither stored nor shared.
func (cw *capture) Flush() {
	if cw.hijacked {
		return
	}
	if !cw.wrote {
		cw.WriteHeader(http.StatusOK)
	}
	if !cw.flushed {
		cw.flushed = true
		if !cw.why.private() {
			cw.why = ReasonFlushed
		}
		private(cw.ctx)
	}
	if !cw.streaming && !cw.refresh && cw.c.claim() {
		cw.startStream()
	}
	if cw.streaming {
		cw.c.send(func(w http.ResponseWriter) {
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		})
	}
}

// Hijack hands the client's connection to the handler, if this render is
// the one that client waits for and nothing was written yet. The response
// is neither stored nor shared.
func (cw *capture) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if cw.wrote || cw.hijacked || cw.refresh || !cw.c.claim() {
		return nil, nil, http.ErrNotSupported
	}
	cw.hijacked, cw.why, cw.streaming = true, ReasonHijacked, true
	private(cw.ctx)
	return cw.c.hijack()
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
