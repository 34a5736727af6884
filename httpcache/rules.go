package httpcache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// A Reason says why a request bypassed the cache or why a response was not
// stored. Its String is what Cache-Status's detail and the stats show.
type Reason uint8

// The reasons.
const (
	ReasonNone Reason = iota
	// Requests that bypass the cache.
	ReasonMethod        // not GET or HEAD
	ReasonRange         // a Range request
	ReasonUpgrade       // a protocol upgrade (WebSocket)
	ReasonKeyFunc       // KeyFunc returned false
	ReasonAuthorization // Authorization, not opted in
	ReasonCookie        // Cookie, not opted in
	ReasonBadQuery      // a query that does not parse
	// Responses served but not stored.
	ReasonSetCookie   // Set-Cookie: never shared
	ReasonNoStore     // Cache-Control: no-store (never shared)
	ReasonPrivate     // Cache-Control: private (never shared)
	ReasonNoCache     // Cache-Control: no-cache (never shared)
	ReasonVaryStar    // Vary: * (never shared)
	ReasonStatus      // a status not stored (shared with coalesced requests)
	ReasonPartial     // 206 Partial Content
	ReasonError       // a 5xx status or a panic: a failed render
	ReasonTooLarge    // a body over MaxBodySize
	ReasonFlushed     // the handler flushed: a stream
	ReasonHijacked    // the handler took the connection
	ReasonTrailer     // the response has trailers
	ReasonExpired     // its TTL and stale windows are zero
	ReasonFenced      // an invalidation raced the render
	ReasonStoreFailed // the store could not take it
	numReasons
)

var reasonNames = [numReasons]string{
	"", "method", "range", "upgrade", "key-func", "authorization", "cookie", "bad-query",
	"set-cookie", "no-store", "private", "no-cache", "vary-star", "status", "partial", "error",
	"too-large", "flushed", "hijacked", "trailer", "expired", "fenced", "store-failed",
}

// String returns the reason as Cache-Status's detail says it.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// private reports whether a response refused for r must not reach other
// requests either, coalesced ones included.
func (r Reason) private() bool {
	switch r {
	case ReasonSetCookie, ReasonNoStore, ReasonPrivate, ReasonNoCache, ReasonVaryStar, ReasonFlushed, ReasonHijacked:
		return true
	}
	return false
}

// bypass says whether the request must not go through the cache, and
// whether it opted in with Cookie or Authorization.
func (cfg *config) bypass(r *http.Request) (keyed string, why Reason) {
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		return "", ReasonMethod
	case r.Header.Get("Range") != "":
		return "", ReasonRange
	case r.Header.Get("Upgrade") != "":
		return "", ReasonUpgrade
	}
	opted := false
	if cfg.keyFunc != nil {
		s, ok := cfg.keyFunc(r)
		if !ok {
			return "", ReasonKeyFunc
		}
		keyed, opted = s, true
	}
	if !opted {
		if _, ok := r.Header["Authorization"]; ok && !cfg.varies("Authorization") {
			return "", ReasonAuthorization
		}
		if _, ok := r.Header["Cookie"]; ok && !cfg.varies("Cookie") {
			return "", ReasonCookie
		}
	}
	return keyed, ReasonNone
}

func (cfg *config) varies(name string) bool {
	for _, v := range cfg.vary {
		if v == name {
			return true
		}
	}
	return false
}

// directives is what a response's Cache-Control says to a shared cache.
type directives struct {
	noStore, noCache, private, mustRevalidate bool
	maxAge, sMaxAge, swr, sie                 time.Duration
	hasMaxAge, hasSMaxAge, hasSWR, hasSIE     bool
}

// parseCacheControl reads the Cache-Control fields of h.
func parseCacheControl(h http.Header) directives {
	var d directives
	for _, line := range h.Values("Cache-Control") {
		for _, part := range splitDirectives(line) {
			name, val, _ := strings.Cut(part, "=")
			name = strings.ToLower(strings.TrimSpace(name))
			val = strings.Trim(strings.TrimSpace(val), `"`)
			secs := func() (time.Duration, bool) {
				n, err := strconv.ParseInt(val, 10, 64)
				if err != nil || n < 0 {
					return 0, false
				}
				return time.Duration(min(n, 1<<31)) * time.Second, true
			}
			switch name {
			case "no-store":
				d.noStore = true
			case "no-cache":
				d.noCache = true
			case "private":
				d.private = true
			case "must-revalidate", "proxy-revalidate":
				d.mustRevalidate = true
			case "max-age":
				d.maxAge, d.hasMaxAge = secs()
			case "s-maxage":
				d.sMaxAge, d.hasSMaxAge = secs()
			case "stale-while-revalidate":
				d.swr, d.hasSWR = secs()
			case "stale-if-error":
				d.sie, d.hasSIE = secs()
			}
		}
	}
	return d
}

// splitDirectives splits a Cache-Control field at the commas outside
// quoted strings.
func splitDirectives(s string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// refusal returns why a response of status with header h is not stored
// (ReasonNone: it may be), for a view configured by cfg.
func (cfg *config) refusal(status int, h http.Header, d *directives) Reason {
	switch {
	case len(h.Values("Set-Cookie")) > 0:
		return ReasonSetCookie
	case d.noStore:
		return ReasonNoStore
	case d.private:
		return ReasonPrivate
	case d.noCache:
		return ReasonNoCache
	}
	if _, star := parseVary(h); star {
		return ReasonVaryStar
	}
	switch {
	case status == http.StatusPartialContent:
		return ReasonPartial
	case status >= 500:
		return ReasonError
	case !cfg.statuses[status]:
		return ReasonStatus
	}
	if len(h.Values("Trailer")) > 0 {
		return ReasonTrailer
	}
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return ReasonTrailer
		}
	}
	return ReasonNone
}

// expires returns the freshness lifetime an Expires field gives, if the
// response has one and no max-age.
func expires(h http.Header, now time.Time) (time.Duration, bool) {
	v := h.Get("Expires")
	if v == "" {
		return 0, false
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, true // an invalid Expires means already expired (RFC 9111 5.3)
	}
	if date, err := http.ParseTime(h.Get("Date")); err == nil {
		now = date
	}
	return max(t.Sub(now), 0), true
}
