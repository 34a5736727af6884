package paddock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddockcache/paddock/internal/hooks"
)

// Defaults of the Cache options.
const (
	DefaultLeaseTTL         = 10 * time.Second
	DefaultStoreTimeout     = time.Second
	DefaultBreakerThreshold = 5
	DefaultBreakerCooldown  = time.Second
)

// A Cache is shared by the [Loader]s of a program: it holds the [Store],
// the per-namespace statistics and the background refreshes. Tags cross
// loaders: [Cache.InvalidateTags] drops every entry of every loader that
// carries one of the tags.
//
// A Cache is safe for concurrent use. Create one with [New].
type Cache struct {
	store  Store
	remote bool
	cfg    config

	mu         sync.Mutex
	stats      map[string]*counters // namespace -> counters
	namespaces map[string]bool      // namespaces with a Loader

	tokens  atomic.Uint64
	bg      sync.WaitGroup
	closed  atomic.Bool
	breaker breaker
}

type config struct {
	leaseTTL         time.Duration
	waitTimeout      time.Duration
	storeTimeout     time.Duration
	breakerThreshold int
	breakerCooldown  time.Duration
	rand             func() float64
	logger           *slog.Logger
}

// An Option configures a [Cache].
type Option func(*config) error

// LeaseTTL sets how long a load holds its key's lease before another caller
// (in this process or another) may take over. Default [DefaultLeaseTTL]. It
// bounds how long callers wait for a load whose process died.
func LeaseTTL(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("LeaseTTL must be positive, got %v", d)
		}
		c.leaseTTL = d
		return nil
	}
}

// WaitTimeout sets how long a caller waits for another caller's load (one
// holding the lease elsewhere) before it loads for itself. Default: the
// lease TTL.
func WaitTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("WaitTimeout must be positive, got %v", d)
		}
		c.waitTimeout = d
		return nil
	}
}

// StoreTimeout bounds each call to a store that crosses a network (one
// that implements [Remote]). A call that fails or times out is worked
// around: Get loads without the store. Default [DefaultStoreTimeout].
func StoreTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("StoreTimeout must be positive, got %v", d)
		}
		c.storeTimeout = d
		return nil
	}
}

// Breaker sets when the Cache stops asking a failing store: after threshold
// consecutive failures it skips the store for cooldown, then lets one call
// through to probe it. Defaults [DefaultBreakerThreshold] and
// [DefaultBreakerCooldown].
func Breaker(threshold int, cooldown time.Duration) Option {
	return func(c *config) error {
		if threshold < 1 || cooldown <= 0 {
			return invalid("Breaker needs threshold >= 1 and a positive cooldown, got %d, %v", threshold, cooldown)
		}
		c.breakerThreshold, c.breakerCooldown = threshold, cooldown
		return nil
	}
}

// Rand sets the source of uniform numbers in [0, 1) for early refresh.
// Default: math/rand/v2's Float64. Tests use it to make early refresh
// deterministic.
func Rand(f func() float64) Option {
	return func(c *config) error {
		if f == nil {
			return invalid("Rand is nil")
		}
		c.rand = f
		return nil
	}
}

// Logger sets where the Cache reports errors nobody waits for (a failed
// background refresh, a failed fill). Default: discard.
func Logger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return invalid("Logger is nil")
		}
		c.logger = l
		return nil
	}
}

// New returns a Cache over store. The embedded default store is
// memstore.New(); a fleet shares redisstore. The Cache does not own the
// store: [Cache.Close] leaves it open.
func New(store Store, opts ...Option) (*Cache, error) {
	if store == nil {
		return nil, invalid("New: nil store")
	}
	cfg := config{
		leaseTTL:         DefaultLeaseTTL,
		storeTimeout:     DefaultStoreTimeout,
		breakerThreshold: DefaultBreakerThreshold,
		breakerCooldown:  DefaultBreakerCooldown,
		rand:             rand.Float64,
		logger:           slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		if o == nil {
			return nil, invalid("New: nil option")
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.waitTimeout == 0 {
		cfg.waitTimeout = cfg.leaseTTL
	}
	c := &Cache{store: store, cfg: cfg, stats: make(map[string]*counters)}
	if r, ok := store.(Remote); ok && r.Remote() {
		c.remote = true
	}
	c.tokens.Store(rand.Uint64() >> 1)
	c.breaker.threshold = int32(cfg.breakerThreshold)
	c.breaker.cooldown = cfg.breakerCooldown
	return c, nil
}

// Store returns the Cache's store.
func (c *Cache) Store() Store { return c.store }

// Invalidate drops the entries under the given full keys (see [Loader.Key])
// and fences them: once it returns, no load that began before it can fill
// them, and no Get that begins after it takes a value from such a load.
func (c *Cache) Invalidate(ctx context.Context, keys ...string) error {
	return c.invalidate(ctx, Invalidation{Keys: keys})
}

// InvalidateTags drops every entry, of any loader, that carries one of tags,
// with the fence of [Cache.Invalidate]. Its cost does not depend on how many
// entries carry a tag.
func (c *Cache) InvalidateTags(ctx context.Context, tags ...string) error {
	return c.invalidate(ctx, Invalidation{Tags: tags})
}

// MarkStale is a soft [Cache.Invalidate]: the entries stay servable as stale
// until their stale window ends (the end of their original TTL plus the
// [Stale] window) while one refresh runs, and loads that began before it
// still cannot fill them.
func (c *Cache) MarkStale(ctx context.Context, keys ...string) error {
	return c.invalidate(ctx, Invalidation{Keys: keys, Soft: true})
}

// MarkStaleTags is a soft [Cache.InvalidateTags]; see [Cache.MarkStale].
func (c *Cache) MarkStaleTags(ctx context.Context, tags ...string) error {
	return c.invalidate(ctx, Invalidation{Tags: tags, Soft: true})
}

func (c *Cache) invalidate(ctx context.Context, inv Invalidation) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if len(inv.Keys) == 0 && len(inv.Tags) == 0 {
		return nil
	}
	for _, t := range inv.Tags {
		if t == "" {
			return invalid("empty tag")
		}
	}
	if hooks.HardAsSoft.Load() {
		inv.Soft = true
	}
	sctx, cancel := c.storeContext(ctx)
	defer cancel()
	// An invalidation is never skipped by the breaker: it is the write
	// that keeps readers correct, and the caller must learn if it failed.
	err := c.store.Invalidate(sctx, inv)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: invalidate: %w", ErrStoreUnavailable, err)
	}
	for _, k := range inv.Keys {
		c.counters(namespaceOf(k)).invalidations.Add(1)
	}
	if len(inv.Tags) > 0 {
		c.counters("").invalidations.Add(uint64(len(inv.Tags)))
	}
	return nil
}

// Close waits for the background refreshes in flight and makes later calls
// fail with [ErrClosed]. It does not close the store.
func (c *Cache) Close() error {
	c.closed.Store(true)
	c.bg.Wait()
	return nil
}

// storeContext bounds a store call by the store timeout. A local store
// (one that is not [Remote]) never waits on I/O, and is spared the timer.
func (c *Cache) storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if !c.remote {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.cfg.storeTimeout)
}

func (c *Cache) token() uint64 { return c.tokens.Add(1)<<1 | 1 }

// lookup asks the store, unless the breaker is open. ok is false when the
// store could not answer; err is then the caller's context error, if any.
func (c *Cache) lookup(ctx context.Context, key string, req LookupRequest, st *counters) (Lookup, bool, error) {
	if !c.breaker.allow() {
		return Lookup{}, false, nil
	}
	sctx, cancel := c.storeContext(ctx)
	lk, err := c.store.Lookup(sctx, key, req)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return Lookup{}, false, ctx.Err()
		}
		c.storeFailed(st, "lookup", key, err)
		return Lookup{}, false, nil
	}
	c.breaker.success()
	return lk, true, nil
}

func (c *Cache) fill(ctx context.Context, key string, f *Fill, st *counters) (bool, error) {
	if !c.breaker.allow() {
		return false, ErrStoreUnavailable
	}
	sctx, cancel := c.storeContext(ctx)
	ok, err := c.store.Fill(sctx, key, f)
	cancel()
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			c.breaker.success()
			return false, err
		}
		c.storeFailed(st, "fill", key, err)
		return false, fmt.Errorf("%w: fill: %w", ErrStoreUnavailable, err)
	}
	c.breaker.success()
	return ok, nil
}

func (c *Cache) release(ctx context.Context, key string, lease uint64, st *counters) {
	if lease == 0 || !c.breaker.allow() {
		return
	}
	sctx, cancel := c.storeContext(ctx)
	err := c.store.Release(sctx, key, lease)
	cancel()
	if err != nil {
		c.storeFailed(st, "release", key, err)
		return
	}
	c.breaker.success()
}

func (c *Cache) storeFailed(st *counters, op, key string, err error) {
	st.storeErrors.Add(1)
	c.breaker.failure()
	c.cfg.logger.Warn("paddock: store call failed", "op", op, "key", key, "err", err)
}

// namespaceOf returns the namespace of a full key: the part before ':'.
func namespaceOf(key string) string {
	ns, _, _ := strings.Cut(key, ":")
	return ns
}

// A breaker counts consecutive store failures. After threshold of them it
// opens for cooldown, then lets one probe through (half-open); a success
// closes it, a failure opens it again.
type breaker struct {
	threshold int32
	cooldown  time.Duration

	fails     atomic.Int32
	openUntil atomic.Int64 // UnixNano; 0 when closed
	probing   atomic.Bool
}

func (b *breaker) allow() bool {
	until := b.openUntil.Load()
	if until == 0 {
		return true
	}
	if time.Now().UnixNano() < until {
		return false
	}
	// Half-open: one caller probes the store.
	return b.probing.CompareAndSwap(false, true)
}

func (b *breaker) success() {
	if b.fails.Load() != 0 {
		b.fails.Store(0)
	}
	if b.openUntil.Load() != 0 {
		b.openUntil.Store(0)
		b.probing.Store(false)
	}
}

func (b *breaker) failure() {
	if b.fails.Add(1) >= b.threshold {
		b.openUntil.Store(time.Now().Add(b.cooldown).UnixNano())
		b.probing.Store(false)
	}
}
