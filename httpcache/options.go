package httpcache

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/paddockcache/paddock"
)

// Defaults of the options.
const (
	// DefaultTTL is how long a page stays fresh when neither the TTL option
	// nor the response's Cache-Control says: Django's
	// CACHE_MIDDLEWARE_SECONDS.
	DefaultTTL = 10 * time.Minute
	// DefaultMaxBodySize is the largest body stored. A larger response is
	// served as it is and not stored.
	DefaultMaxBodySize = 1 << 20
	// DefaultNamespace is the paddock namespace of the pages.
	DefaultNamespace = "page"
	// DefaultMaxURLs bounds the URLs a Cache remembers for [Cache.URLs].
	DefaultMaxURLs = 100_000
	// DefaultMaxStatsRows bounds the rows of the per-URL stats; requests
	// past it count in the row "(other)".
	DefaultMaxStatsRows = 1000
)

// DefaultStatuses are the statuses stored by default: the heuristically
// cacheable statuses of RFC 9111 other than 206 (which answers a Range
// request) and the 4xx and 5xx ones that mostly say a request was wrong
// rather than what a URL holds (405, 414, 501).
var DefaultStatuses = []int{200, 203, 204, 300, 301, 308, 404, 410}

// An Option configures a [Cache] (given to [New]) or one view (given to
// [Cache.Handler] or [Cache.Middleware], on top of the Cache's). Options
// marked "New only" are refused by Handler and Middleware.
type Option interface{ apply(*config) error }

type option func(*config) error

func (o option) apply(c *config) error { return o(c) }

// config is a view's configuration: the Cache's options with the view's on
// top.
type config struct {
	ttl, stale, staleIfError time.Duration
	loadTimeout              time.Duration
	keyFunc                  func(*http.Request) (string, bool)
	query                    queryRule
	vary                     []string // canonical, sorted
	postProcess              func(*http.Request, *Page)
	postProcessAlways        func(http.ResponseWriter, *http.Request, *Page)
	maxBody                  int
	statuses                 map[int]bool

	// New only; set tells which were given.
	namespace    string
	maxURLs      int
	maxStatsRows int
	newOnly      []string
}

func defaultConfig() config {
	c := config{
		ttl:          DefaultTTL,
		loadTimeout:  paddock.DefaultLoadTimeout,
		maxBody:      DefaultMaxBodySize,
		namespace:    DefaultNamespace,
		maxURLs:      DefaultMaxURLs,
		maxStatsRows: DefaultMaxStatsRows,
		statuses:     make(map[int]bool),
	}
	for _, s := range DefaultStatuses {
		c.statuses[s] = true
	}
	return c
}

// clone returns a copy of c that options may change without changing c.
func (c *config) clone() config {
	d := *c
	d.vary = slices.Clone(c.vary)
	d.query.only = slices.Clone(c.query.only)
	d.query.ignore = slices.Clone(c.query.ignore)
	d.statuses = make(map[int]bool, len(c.statuses))
	for k, v := range c.statuses {
		d.statuses[k] = v
	}
	d.newOnly = nil
	return d
}

// ErrInvalidOption is wrapped by every error about a bad option; it is
// [paddock.ErrInvalidOption].
var ErrInvalidOption = paddock.ErrInvalidOption

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: httpcache: "+format, append([]any{ErrInvalidOption}, args...)...)
}

func apply(c *config, opts []Option) error {
	var errs []error
	for _, o := range opts {
		if o == nil {
			errs = append(errs, invalid("nil Option"))
			continue
		}
		if err := o.apply(c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func duration(name string, d time.Duration, set func(*config)) Option {
	return option(func(c *config) error {
		if d < 0 {
			return invalid("%s(%v): must not be negative", name, d)
		}
		set(c)
		return nil
	})
}

// TTL sets how long a page stays fresh (default [DefaultTTL]). A response's
// Cache-Control s-maxage or max-age, or its Expires, takes precedence, as
// in Django's cache_page.
func TTL(d time.Duration) Option {
	return duration("TTL", d, func(c *config) { c.ttl = d })
}

// Stale sets the stale-while-revalidate window (default 0): for d past its
// TTL a page is served at once while one request re-renders it. A
// response's Cache-Control stale-while-revalidate takes precedence.
func Stale(d time.Duration) Option {
	return duration("Stale", d, func(c *config) { c.stale = d })
}

// StaleIfError sets the stale-if-error window (default 0): for d past its
// TTL a page is served in place of a render that failed (a 5xx status or a
// panic). A response's Cache-Control stale-if-error takes precedence.
func StaleIfError(d time.Duration) Option {
	return duration("StaleIfError", d, func(c *config) { c.staleIfError = d })
}

// LoadTimeout bounds a render (default [paddock.DefaultLoadTimeout]): the
// handler's request context ends after d. A render runs detached from the
// client that started it, so that coalesced clients are not failed by its
// going away.
func LoadTimeout(d time.Duration) Option {
	return option(func(c *config) error {
		if d <= 0 {
			return invalid("LoadTimeout(%v): must be positive", d)
		}
		c.loadTimeout = d
		return nil
	})
}

// KeyFunc adds f's string to each request's key: django-fancy-cache's
// key_prefix callable (the user, the id of the latest comment). If f
// returns false the request bypasses the cache. A request with Cookie or
// Authorization, refused by default, is cached when f returns true for it:
// its string should then name the user or the class of session whose pages
// it may share.
func KeyFunc(f func(r *http.Request) (key string, ok bool)) Option {
	return option(func(c *config) error {
		if f == nil {
			return invalid("KeyFunc(nil)")
		}
		c.keyFunc = f
		return nil
	})
}

// OnlyQuery keeps only the named query parameters in the key (fancy's
// only_get_keys): with OnlyQuery("page"), /blog/?page=2&utm=x and
// /blog/?page=2&ref=y share one page. The handler still sees the whole
// query. OnlyQuery() with no names drops the query from the key.
func OnlyQuery(names ...string) Option {
	return option(func(c *config) error {
		for _, n := range names {
			if n == "" {
				return invalid("OnlyQuery: empty name")
			}
		}
		c.query.only, c.query.hasOnly = slices.Clone(names), true
		return nil
	})
}

// IgnoreQuery drops the query parameters whose names match one of the
// patterns (path.Match syntax: "utm_*") from the key.
func IgnoreQuery(patterns ...string) Option {
	return option(func(c *config) error {
		for _, p := range patterns {
			if _, err := path.Match(p, ""); err != nil || p == "" {
				return invalid("IgnoreQuery(%q): bad pattern", p)
			}
		}
		c.query.ignore = append(c.query.ignore, patterns...)
		return nil
	})
}

// VaryHeaders makes the key vary on the named request headers from the
// first request on (Django's vary_on_headers), and adds them to the
// response's Vary. The headers a response names in its own Vary are
// honoured whether or not they are listed here; listing them saves the
// first request of each URL a second lookup. Varying on Cookie or
// Authorization caches requests that carry them, one page per value.
func VaryHeaders(names ...string) Option {
	return option(func(c *config) error {
		for _, n := range names {
			if !validToken(n) {
				return invalid("VaryHeaders(%q): not a header name", n)
			}
			c.vary = append(c.vary, textproto.CanonicalMIMEHeaderKey(n))
		}
		slices.Sort(c.vary)
		c.vary = slices.Compact(c.vary)
		return nil
	})
}

// PostProcess runs f once on each rendered page before it is stored and
// served (fancy's post_process_response). With it, the client whose
// request renders a page gets it once it is complete, like every other.
func PostProcess(f func(r *http.Request, p *Page)) Option {
	return option(func(c *config) error {
		if f == nil {
			return invalid("PostProcess(nil)")
		}
		c.postProcess = f
		return nil
	})
}

// PostProcessAlways runs f on every response served from a page, hit or
// not, on a copy of the page: what f changes is sent, never stored (fancy's
// post_process_response_always: the logged-in user's name on a shared
// page). f may set headers on w. Conditional requests are judged after f:
// if f changes the body it should change or delete the ETag.
func PostProcessAlways(f func(w http.ResponseWriter, r *http.Request, p *Page)) Option {
	return option(func(c *config) error {
		if f == nil {
			return invalid("PostProcessAlways(nil)")
		}
		c.postProcessAlways = f
		return nil
	})
}

// MaxBodySize sets the largest body stored (default [DefaultMaxBodySize]).
// A larger response is served, streamed where it can be, and not stored.
func MaxBodySize(n int) Option {
	return option(func(c *config) error {
		if n <= 0 {
			return invalid("MaxBodySize(%d): must be positive", n)
		}
		c.maxBody = n
		return nil
	})
}

// Statuses sets the response statuses that are stored (default
// [DefaultStatuses]). A response of another status is served, and shared
// with the requests coalesced with it, but not stored; a 5xx is a failed
// render, which a stale-if-error page may replace.
func Statuses(codes ...int) Option {
	return option(func(c *config) error {
		m := make(map[int]bool, len(codes))
		for _, s := range codes {
			if s < 100 || s > 599 || s == http.StatusPartialContent || s >= 500 || s == http.StatusNotModified {
				return invalid("Statuses: %d cannot be stored", s)
			}
			m[s] = true
		}
		c.statuses = m
		return nil
	})
}

// Namespace sets the paddock namespace of the pages (default
// [DefaultNamespace]). New only.
func Namespace(ns string) Option {
	return option(func(c *config) error {
		c.newOnly = append(c.newOnly, "Namespace")
		if ns == "" || strings.Contains(ns, ":") {
			return invalid("Namespace(%q): must be non-empty and without ':'", ns)
		}
		c.namespace = ns
		return nil
	})
}

// MaxURLs bounds the URLs the Cache remembers for [Cache.URLs] (default
// [DefaultMaxURLs]); past it, arbitrary ones are forgotten. Purges do not
// depend on it. New only.
func MaxURLs(n int) Option {
	return newOnlyBound("MaxURLs", n, func(c *config) { c.maxURLs = n })
}

// MaxStatsRows bounds the rows of the per-URL stats (default
// [DefaultMaxStatsRows]); requests of further routes count in the row
// "(other)". New only.
func MaxStatsRows(n int) Option {
	return newOnlyBound("MaxStatsRows", n, func(c *config) { c.maxStatsRows = n })
}

// newOnlyBound is an option of New that sets a positive bound.
func newOnlyBound(name string, n int, set func(*config)) Option {
	return option(func(c *config) error {
		c.newOnly = append(c.newOnly, name)
		if n <= 0 {
			return invalid("%s(%d): must be positive", name, n)
		}
		set(c)
		return nil
	})
}

// validToken reports whether s is an HTTP token (a header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
