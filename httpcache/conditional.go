package httpcache

import (
	"net/http"
	"strings"
)

// notModified reports whether a GET or HEAD request's validators match a
// response with header h, so that it gets 304 Not Modified (RFC 9110
// 13.1.2 and 13.1.3): If-None-Match by weak comparison, else
// If-Modified-Since against Last-Modified.
func notModified(r *http.Request, h http.Header) bool {
	if inm := r.Header.Values("If-None-Match"); len(inm) > 0 {
		etag := h.Get("ETag")
		for _, line := range inm {
			for _, t := range strings.Split(line, ",") {
				t = strings.TrimSpace(t)
				if t == "*" && etag != "" || etag != "" && weakEqual(t, etag) {
					return true
				}
			}
		}
		return false
	}
	ims := r.Header.Get("If-Modified-Since")
	lm := h.Get("Last-Modified")
	if ims == "" || lm == "" {
		return false
	}
	since, err := http.ParseTime(ims)
	if err != nil {
		return false
	}
	modified, err := http.ParseTime(lm)
	if err != nil {
		return false
	}
	return !modified.After(since)
}

// weakEqual compares two entity tags, ignoring weakness.
func weakEqual(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}
