package redisstore

import (
	"fmt"
	"strings"
	"time"

	"github.com/paddockcache/paddock/store"
)

// Defaults of the options.
const (
	// DefaultPrefix starts every Redis key the store writes.
	DefaultPrefix = "paddock:"
	// DefaultMaxValueSize is the largest encoded value Fill accepts.
	DefaultMaxValueSize = 1 << 20
	// MaxValueSizeLimit is the largest MaxValueSize: Redis's own limit on
	// one string (proto-max-bulk-len).
	MaxValueSizeLimit = 512 << 20
	// DefaultLeaseTTL is the lease TTL used when a LookupRequest names
	// none.
	DefaultLeaseTTL = 10 * time.Second
)

// An Option configures a [Store].
type Option func(*config) error

type config struct {
	prefix        string
	maxValueSize  int
	offset        func() time.Duration
	checkFailover bool
	checkEvery    time.Duration
	allowNoCtx    bool
	forceCluster  bool
	feedTimeout   time.Duration
	handoff       int
}

func defaultConfig() config {
	return config{prefix: DefaultPrefix, maxValueSize: DefaultMaxValueSize, checkFailover: true,
		checkEvery: DefaultFailoverCheckInterval, feedTimeout: DefaultFeedTimeout, handoff: DefaultHandoffSize}
}

// invalid is an error of New: options are checked there.
func invalid(format string, args ...any) error {
	return fmt.Errorf("redisstore: new: %w: "+format, append([]any{store.ErrInvalidOption}, args...)...)
}

// Prefix sets the prefix of every Redis key the store writes. Two stores
// with different prefixes share nothing, not even the epoch. The prefix may
// not contain '{' or '}': the store places the hash tags itself. Default
// [DefaultPrefix].
func Prefix(p string) Option {
	return func(c *config) error {
		if strings.ContainsAny(p, "{}") {
			return invalid("Prefix %q contains a brace", p)
		}
		c.prefix = p
		return nil
	}
}

// MaxValueSize sets the largest encoded value, in bytes, that Fill writes.
// A larger one is not written: Fill returns an error wrapping
// [store.ErrTooLarge] (the Cache still returns the loaded value, with
// Result.FillErr set). Default [DefaultMaxValueSize]; at most
// [MaxValueSizeLimit].
func MaxValueSize(n int) Option {
	return func(c *config) error {
		if n < 1 || n > MaxValueSizeLimit {
			return invalid("MaxValueSize must be in [1, %d], got %d", MaxValueSizeLimit, n)
		}
		c.maxValueSize = n
		return nil
	}
}

// DefaultHandoffSize is the default of [HandoffSize]: 16 KiB.
const DefaultHandoffSize = 16 << 10

// HandoffSize sets the size, in bytes, of the largest entry that a fill's
// wake-up carries to the processes waiting for the fill's lease (see
// [Store.WatchFill]): a stored entry is its encoded value, its tags and
// about 90 bytes. A waiter that gets the entry with its wake-up is served
// without looking the key up again; a larger entry wakes the waiters
// without it, and they look it up. The wake-up is published to every
// process subscribed to the Store's prefix, waiting for the key or not,
// which is what the bound is for (a subscriber that falls behind Redis's
// pub/sub output buffer limit is disconnected, and its near cache
// dropped). Zero: wake-ups carry no entry. Default
// [DefaultHandoffSize]; at most [MaxValueSizeLimit]. On Redis Cluster
// wake-ups never carry the entry (see the package doc).
func HandoffSize(n int) Option {
	return func(c *config) error {
		if n < 0 || n > MaxValueSizeLimit {
			return invalid("HandoffSize must be in [0, %d], got %d", MaxValueSizeLimit, n)
		}
		c.handoff = n
		return nil
	}
}

// TimeOffset adds f() to the server's clock for every decision the store
// makes (freshness, windows, leases). It is for tests, which move time
// forward without sleeping; f must never go back. Default: no offset.
func TimeOffset(f func() time.Duration) Option {
	return func(c *config) error {
		if f == nil {
			return invalid("TimeOffset is nil")
		}
		c.offset = f
		return nil
	}
}

// SkipFailoverCheck turns off the failover check: the Store no longer
// makes sure that the server holding a key is the one that wrote its
// epoch marker (same replication ID). Without it a failover does not start
// a new epoch, so an invalidation acknowledged by the old master but not
// yet replicated can be lost, and the entry it dropped served again. Use
// it only when Redis has no replicas, or when every invalidation is made
// durable on them. What it saves is small: the server's INFO in the first
// script after each new connection and in one background check per
// server per [FailoverCheckInterval] (a warm hit reads no INFO either
// way). The Store still reads each server's clock that often.
func SkipFailoverCheck() Option {
	return func(c *config) error {
		c.checkFailover = false
		return nil
	}
}

// FailoverCheckInterval sets how often, while the Store is in use, it
// checks each server again in the background: its role and replication ID
// (see "Failover" in the package doc), and its clock. A server whose
// history changed on connections that stayed open is found at most d
// (plus one round trip) after the change. Default
// [DefaultFailoverCheckInterval]; d must be positive.
func FailoverCheckInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("FailoverCheckInterval must be positive, got %v", d)
		}
		c.checkEvery = d
		return nil
	}
}

// AllowNoContextTimeout accepts a client whose options leave
// ContextTimeoutEnabled false. By default [New] refuses such a client:
// it ignores the deadline of the context on socket reads, so a slow Redis
// would hold a Get for the client's ReadTimeout instead of the Cache's
// StoreTimeout.
func AllowNoContextTimeout() Option {
	return func(c *config) error {
		c.allowNoCtx = true
		return nil
	}
}
