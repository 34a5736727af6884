package paddock

import (
	"log/slog"
	"math"
	"time"
)

// Options. The three kinds are built alike: an [Option] configures a
// [Cache] in [New], a [LoaderOption] a [Loader] in [NewLoader], and a
// [GetOption] one call (or, given to NewLoader, the loader's default). Each
// checks its value when it is applied: a bad value, or a nil option, makes
// the constructor or the call fail with an error wrapping
// [ErrInvalidOption], and nothing is created or cached.

// An Option configures a [Cache].
type Option interface {
	applyCache(*config) error
}

// A LoaderOption configures a [Loader]. Every [GetOption] is also a
// LoaderOption: given to [NewLoader] it sets the loader's default.
type LoaderOption interface {
	applyLoader(*loaderConfig) error
}

// A GetOption sets how one entry is cached. Given to [NewLoader] it sets
// the loader's default; given to a Get it applies to that call.
type GetOption interface {
	LoaderOption
	applyGet(*policy) error
}

type cacheOption func(*config) error

func (f cacheOption) applyCache(c *config) error { return f(c) }

type loaderOption func(*loaderConfig) error

func (f loaderOption) applyLoader(lc *loaderConfig) error { return f(lc) }

type getOption func(*policy) error

func (f getOption) applyGet(p *policy) error           { return f(p) }
func (f getOption) applyLoader(lc *loaderConfig) error { return f(&lc.policy) }

// Must returns v, and panics if err is not nil. It is for programs that
// configure their Cache and Loaders at start-up, where a bad option is a
// bug to fix rather than an error to handle:
//
//	c := paddock.Must(paddock.New(memstore.New()))
//	articles := paddock.Must(paddock.NewLoader[Article](c, "article", paddock.TTL(time.Minute)))
func Must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Defaults of the Cache options.
const (
	DefaultLeaseTTL         = 10 * time.Second
	DefaultStoreTimeout     = 250 * time.Millisecond
	DefaultBreakerThreshold = 5
	DefaultBreakerCooldown  = time.Second
)

type config struct {
	leaseTTL         time.Duration
	waitTimeout      time.Duration
	storeTimeout     time.Duration
	breakerThreshold int
	breakerCooldown  time.Duration
	rand             func() float64
	logger           *slog.Logger
	maxPending       int
	near             time.Duration // NearCache's maximum staleness; 0: off
	recorder         Recorder      // nil: none
	audit            auditConfig   // budget 0: off
}

// NearCache keeps each Loader's hot tier (see [HotSize]) in front of a
// store shared by a fleet (redisstore), as a near cache: hits of recently
// read keys cost no round trip. The store must publish every
// invalidation, by any process, to every process ([store.Feed]); New
// refuses one that does not.
//
// The guarantee changes for the other processes, which is why it is not
// the default: the process that invalidates drops its own copies before
// Invalidate returns, as without a near cache, but another process drops
// its copies when the invalidation reaches it through the feed (on Redis
// about one network hop after the invalidation; see docs/guarantees.md
// for the bound). Until then it may serve the old value from its tier. A
// copy is never served longer than maxStale after the store read it came
// from, whatever happens to the feed, and never after its fresh window;
// while the feed is down (its connection lost, or not yet confirmed) the
// tier is empty and unused.
func NearCache(maxStale time.Duration) Option {
	return cacheOption(func(c *config) error {
		if maxStale <= 0 {
			return invalid("NearCache: maximum staleness must be positive, got %v", maxStale)
		}
		c.near = maxStale
		return nil
	})
}

// LeaseTTL sets how long a load holds its key's lease before another caller
// (in this process or another) may take over. Default [DefaultLeaseTTL]. It
// bounds how long callers wait for a load whose process died.
func LeaseTTL(d time.Duration) Option {
	return cacheOption(func(c *config) error {
		if d <= 0 {
			return invalid("LeaseTTL must be positive, got %v", d)
		}
		c.leaseTTL = d
		return nil
	})
}

// WaitTimeout sets how long a caller waits for another caller's load (one
// holding the lease elsewhere) before it loads for itself. Default: the
// lease TTL.
func WaitTimeout(d time.Duration) Option {
	return cacheOption(func(c *config) error {
		if d <= 0 {
			return invalid("WaitTimeout must be positive, got %v", d)
		}
		c.waitTimeout = d
		return nil
	})
}

// StoreTimeout bounds each call to a store that crosses a network (one
// that implements [store.Remote]). A call that fails or times out is worked
// around: Get loads without the store. A call that times out also opens
// the breaker at once (see [Breaker]), so a frozen or unreachable store
// costs one StoreTimeout, not one per Get. Default [DefaultStoreTimeout]:
// a cache sits in front of a database that answers in milliseconds, and a
// healthy Redis answers in well under one.
//
// The call's context carries the exact deadline (a client sets its socket
// deadlines from it). For a caller whose context cannot end, its Done
// channel is shared by the calls whose deadlines fall in the same
// millisecond and closes up to a millisecond after the deadline: one timer
// a millisecond instead of one per call.
func StoreTimeout(d time.Duration) Option {
	return cacheOption(func(c *config) error {
		if d <= 0 {
			return invalid("StoreTimeout must be positive, got %v", d)
		}
		c.storeTimeout = d
		return nil
	})
}

// Breaker sets when the Cache stops asking a failing store: after threshold
// consecutive failures, or one call that timed out, it skips the store for
// cooldown, then lets one call through to probe it. The probe runs on its
// own context (bounded by the store timeout) whatever its caller's
// deadline, so once the store is healthy again the Cache uses it within
// cooldown plus one store timeout. Invalidations are never skipped.
// Defaults [DefaultBreakerThreshold] and [DefaultBreakerCooldown].
func Breaker(threshold int, cooldown time.Duration) Option {
	return cacheOption(func(c *config) error {
		if threshold < 1 || cooldown <= 0 {
			return invalid("Breaker needs threshold >= 1 and a positive cooldown, got %d, %v", threshold, cooldown)
		}
		c.breakerThreshold, c.breakerCooldown = threshold, cooldown
		return nil
	})
}

// Rand sets the source of uniform numbers in [0, 1) for early refresh: one
// is drawn per fill, for the entry's early-refresh lead (see [Beta]). It
// is called from many goroutines at once. Default: math/rand/v2, whose
// ExpFloat64 draws the lead's exponential factor directly (as -ln(1 - u)
// does from a uniform u, in one step). Tests use it to make early refresh
// deterministic.
func Rand(f func() float64) Option {
	return cacheOption(func(c *config) error {
		if f == nil {
			return invalid("Rand is nil")
		}
		c.rand = f
		return nil
	})
}

// Logger sets where the Cache reports errors nobody waits for (a failed
// background refresh, a failed fill). Default: discard.
func Logger(l *slog.Logger) Option {
	return cacheOption(func(c *config) error {
		if l == nil {
			return invalid("Logger is nil")
		}
		c.logger = l
		return nil
	})
}

// MaxPendingInvalidations bounds the invalidations kept for retry while
// the store does not acknowledge them, counted in keys and tags named.
// Past it the oldest are dropped, counted in [Stats] and logged as errors.
// Default [DefaultMaxPendingInvalidations].
func MaxPendingInvalidations(n int) Option {
	return cacheOption(func(c *config) error {
		if n < 1 {
			return invalid("MaxPendingInvalidations must be at least 1, got %d", n)
		}
		c.maxPending = n
		return nil
	})
}

type loaderConfig struct {
	policy  policy
	codec   Codec
	version uint64
	hotSize int
	noAudit bool
}

// NoAudit leaves the Loader's hits out of the consistency audit (see
// [Audit]): for a Loader whose load functions are not safe to run again,
// on their own, after their Get has returned (one that writes to its
// caller's http.ResponseWriter, as httpcache's renders do, or one with
// side effects in the source). Default: audited when the audit is on.
func NoAudit() LoaderOption {
	return loaderOption(func(lc *loaderConfig) error {
		lc.noAudit = true
		return nil
	})
}

// HotSize bounds the Loader's hot tier: the values it keeps decoded, in
// this process, for hits that cost no store read, no decode and no
// allocation (default [DefaultHotSize]; 0 turns the tier off). The tier is
// exact: an invalidation of a key, of one of its tags or of a value it was
// built from makes the copy unservable before the invalidation returns,
// and a copy is served only while fresh. It is kept on a store in this
// process that tells of every invalidation (memstore), and on a shared
// store (Redis) only with [NearCache], where other processes'
// invalidations reach it through the store's feed. The tier judges windows by this process's clock: a
// memstore given a clock of its own (memstore.Clock) needs HotSize(0).
//
// A copy's value is shared by every caller it is served to, as otter and
// other in-process caches do: treat values as read-only. A []byte value is
// the same slice for every caller; a string is immutable anyway.
func HotSize(n int) LoaderOption {
	return loaderOption(func(lc *loaderConfig) error {
		if n < 0 {
			return invalid("HotSize(%d): must not be negative", n)
		}
		lc.hotSize = n
		return nil
	})
}

// WithCodec sets the codec of the loader's values. Default: none for
// []byte and string, [JSON] for every other type.
func WithCodec(c Codec) LoaderOption {
	return loaderOption(func(lc *loaderConfig) error {
		if c == nil {
			return invalid("WithCodec: nil codec")
		}
		lc.codec = c
		return nil
	})
}

// Version sets the loader's value version, like Django's version=. Bytes
// written by a loader of another version are never decoded: they are a
// miss, and the value is loaded again. Bump it when a deploy changes T's
// shape. Default 0.
func Version(v uint64) LoaderOption {
	return loaderOption(func(lc *loaderConfig) error { lc.version = v; return nil })
}

// Defaults of the per-call options (see [GetOption]).
const (
	DefaultTTL         = 5 * time.Minute
	DefaultNegativeTTL = 30 * time.Second
	DefaultLoadTimeout = 10 * time.Second
	DefaultBeta        = 0.05
)

// policy is what a Get is told about freshness: the loader's defaults with
// the call's options on top.
type policy struct {
	ttl          time.Duration
	stale        time.Duration
	staleIfError time.Duration
	negativeTTL  time.Duration
	loadTimeout  time.Duration
	beta         float64
	tags         []string
}

func defaultPolicy() policy {
	return policy{
		ttl:         DefaultTTL,
		negativeTTL: DefaultNegativeTTL,
		loadTimeout: DefaultLoadTimeout,
		beta:        DefaultBeta,
	}
}

func durationOption(name string, d time.Duration, min time.Duration, set func(*policy, time.Duration)) GetOption {
	return getOption(func(p *policy) error {
		if d < min {
			return invalid("%s must be at least %v, got %v", name, min, d)
		}
		set(p, d)
		return nil
	})
}

// TTL sets how long a loaded value is fresh. Default [DefaultTTL].
func TTL(d time.Duration) GetOption {
	return durationOption("TTL", d, time.Millisecond, func(p *policy, d time.Duration) { p.ttl = d })
}

// Stale sets the stale-while-revalidate window: for d after the TTL, a Get
// returns the previous value at once while exactly one refresh runs in the
// background. Default 0: an expired entry is loaded in the foreground.
func Stale(d time.Duration) GetOption {
	return durationOption("Stale", d, 0, func(p *policy, d time.Duration) { p.stale = d })
}

// StaleIfError sets the stale-if-error window: for d after the TTL, a Get
// whose load fails returns the previous value, marked [StatusStaleIfError],
// instead of the error. Default 0.
func StaleIfError(d time.Duration) GetOption {
	return durationOption("StaleIfError", d, 0, func(p *policy, d time.Duration) { p.staleIfError = d })
}

// NegativeTTL sets how long a load's [ErrNotFound] is cached. Zero turns
// negative caching off. Default [DefaultNegativeTTL].
func NegativeTTL(d time.Duration) GetOption {
	return durationOption("NegativeTTL", d, 0, func(p *policy, d time.Duration) { p.negativeTTL = d })
}

// LoadTimeout bounds a load. The load runs on a context detached from its
// callers' (they may give up; the load goes on for the others) that ends
// after d, counted from the load's start (on memstore, from the lookup
// that granted the load the key's lease, a moment before). Default
// [DefaultLoadTimeout].
func LoadTimeout(d time.Duration) GetOption {
	return durationOption("LoadTimeout", d, time.Millisecond, func(p *policy, d time.Duration) { p.loadTimeout = d })
}

// Beta sets the margin of early refresh: a hot entry is refreshed in the
// background shortly before its TTL ends, so that its readers never wait
// for the load. When a load fills an entry it draws, once for the entry,
// how long before the end of the TTL the entry falls due:
//
//	lead = d × (1 + beta × -ln u)
//
// where d is how long the load took and u is uniform in (0, 1] (the draw
// of XFetch, Vattani et al.). The first Get after that instant, by the
// store's clock, refreshes the entry while it is still fresh; every other
// Get, in this process or another on the same store, is served the fresh
// value meanwhile. A refresh that takes about as long as the last load
// ends before the TTL, and the entry is loaded about once per TTL however
// often it is read. A key that no Get reads between its instant and the
// end of its TTL expires as with a plain TTL.
//
// beta scales the random margin above one load duration: on average beta
// load durations, which absorbs a load that runs a little slower than the
// last one, and spreads the refreshes of keys filled together. A larger
// beta refreshes earlier (more loads, more room for a slow load); zero
// turns early refresh off, for the entries this call fills and for the
// fresh entries it reads. Default [DefaultBeta].
func Beta(beta float64) GetOption {
	return getOption(func(p *policy) error {
		if beta < 0 || math.IsNaN(beta) || math.IsInf(beta, 0) {
			return invalid("Beta must be a finite number >= 0, got %v", beta)
		}
		p.beta = beta
		return nil
	})
}

// Tags adds tags to the entry. They add to the loader's default tags and
// to those the load names with [Tag].
func Tags(tags ...string) GetOption {
	return getOption(func(p *policy) error {
		for _, t := range tags {
			if t == "" {
				return invalid("empty tag")
			}
		}
		p.tags = append(p.tags[:len(p.tags):len(p.tags)], tags...)
		return nil
	})
}

// expOf returns draws of -ln(1 - u) for u from uniform: exponentially
// distributed with rate 1, as math/rand/v2's ExpFloat64.
func expOf(uniform func() float64) func() float64 {
	return func() float64 { return -math.Log(1 - uniform()) }
}

// earlyLead draws the early-refresh lead of an entry whose load took d:
// d × (1 + beta × x) for x = exp(), exponentially distributed with rate 1
// (see expOf). It is zero (never early) when early refresh is off or d is
// not positive.
func (p *policy) earlyLead(d time.Duration, exp func() float64) time.Duration {
	if p.beta == 0 || d <= 0 {
		return 0
	}
	x := exp()
	if !(x >= 0) { // from a Rand outside [0, 1)
		x = 0
	}
	lead := float64(d) * (1 + p.beta*x)
	if lead >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(lead)
}
