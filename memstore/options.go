package memstore

import (
	"fmt"
	"math"
	"math/bits"
	"strings"
	"time"

	"github.com/paddockcache/paddock/store"
)

// An Option configures a [Store] in [New]. An option given a bad value
// makes New return an error wrapping [store.ErrInvalidOption].
type Option func(*config) error

type config struct {
	maxBytes      int
	maxBytesSet   bool
	maxEntryBytes int // 0: chosen from maxBytes and shards
	shards        int // 0: chosen from maxBytes and maxEntryBytes
	lifeWindow    time.Duration
	clock         func() time.Time
	maxVersions   int
	countEvicted  bool
}

const (
	defaultMaxBytes      = 256 << 20
	defaultMaxEntryBytes = 1 << 20
	defaultLifeWindow    = 24 * time.Hour
	defaultMaxVersions   = 1 << 18
	maxDefaultShards     = 1024
	mib                  = 1 << 20
)

func defaultConfig() config {
	return config{
		maxBytes:    defaultMaxBytes,
		lifeWindow:  defaultLifeWindow,
		maxVersions: defaultMaxVersions,
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("memstore: %w: %s", store.ErrInvalidOption, fmt.Sprintf(format, args...))
}

// MaxBytes bounds the memory that entries take, in bytes, rounded up to a
// whole MiB. When it is reached, the oldest entries are evicted (and
// counted, see [Store.Evictions]). The bound covers the entries' bytes, not
// the maps of leases and versions beside them (see [MaxVersions]). It must
// be positive; the default is 256 MiB.
func MaxBytes(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return invalid("MaxBytes(%d): must be positive", n)
		}
		c.maxBytes, c.maxBytesSet = n, true
		return nil
	}
}

// MaxEntryBytes bounds the size of one encoded entry (value, tags and
// about 60 bytes of envelope). [Store.Fill] of a larger entry stores
// nothing and returns an error wrapping [store.ErrTooLarge]. It must be
// positive and, with a key of 256 bytes, fit in less than half of a shard
// (MaxBytes/Shards). The default is 1 MiB, or in shards too small for
// that (MaxBytes of 2 MiB or less, or a large [Shards]) the largest entry
// that fits.
func MaxEntryBytes(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return invalid("MaxEntryBytes(%d): must be positive", n)
		}
		c.maxEntryBytes = n
		return nil
	}
}

// Shards sets the number of bigcache shards, a power of two. Each shard
// holds MaxBytes/Shards bytes and evicts on its own. The default is the
// largest power of two up to 1024 whose shards hold more than two entries
// of MaxEntryBytes (64 with the default sizes), or 1.
func Shards(n int) Option {
	return func(c *config) error {
		if n <= 0 || bits.OnesCount(uint(n)) != 1 {
			return invalid("Shards(%d): must be a power of two", n)
		}
		c.shards = n
		return nil
	}
}

// LifeWindow is the longest an entry stays in memory, whatever its own
// windows say: bigcache drops entries older than this (counted as
// evictions). It must be at least one second, bigcache's resolution; the
// default is 24 hours.
func LifeWindow(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Second {
			return invalid("LifeWindow(%v): must be at least 1s", d)
		}
		c.lifeWindow = d
		return nil
	}
}

// CountEvictions makes the store count its evictions per namespace, for
// [Store.Evictions] (and so for the Cache's Stats and the metrics
// exporters). It is off by default because of what it costs: bigcache
// tells of an eviction only through a callback that is handed a copy of
// the evicted entry and of its key, so that, once the store is full, every
// fill would pay an allocation and a copy of the entry it pushes out
// (about a sixth of a miss of 1 KiB). Without it, Evictions reports
// nothing.
func CountEvictions() Option {
	return func(c *config) error {
		c.countEvicted = true
		return nil
	}
}

// Clock sets the clock by which the store judges freshness and leases. It
// must not be nil. The default reads the time as [time.Now] would, from
// the monotonic clock alone: the instant the store was made plus the
// monotonic time since, which costs half a time.Now and does not jump
// when the wall clock is set. Inside a testing/synctest bubble, make the
// store inside the bubble, and its clock is the bubble's. (LifeWindow is
// kept by bigcache on its own clock, time.Now.)
func Clock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return invalid("Clock(nil)")
		}
		c.clock = now
		return nil
	}
}

// MaxVersions bounds how many key versions the store remembers, and
// separately how many tag versions (soft and hard versions each: a tag
// hard-invalidated has both). The versions are spread over 256 stripes
// (keys) and 256 shards (tags), each holding at most ceil(n/256) of a kind. When one
// overflows it forgets its versions and keeps only their maximum as a
// floor that every name in it is taken to have reached. That is
// conservative: fills of loads in flight over a forgotten key or tag may
// be refused, and entries with a forgotten tag may read as invalidated
// (hard, if the floor came from a hard invalidation; else stale), but a
// stale fill is never accepted. It must be positive; the default is 1<<18
// (262144).
func MaxVersions(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return invalid("MaxVersions(%d): must be positive", n)
		}
		c.maxVersions = n
		return nil
	}
}

// Sizes in bigcache: each entry is wrapped with a header (timestamp, hash,
// key length) and the key, and the queue prefixes it with a varint length.
const (
	wrapOverhead = 8 + 8 + 2 + 5
	keyBudget    = 256 // a key length the shard size must allow for in New
	// maxKeyLen is the longest key bigcache reads back: it adds the key's
	// uint16 length to its 18-byte header in uint16, so a longer key
	// overflows the sum and panics the next read that meets its entry.
	maxKeyLen = 1<<16 - 1 - (8 + 8 + 2)
)

// hardMaxMiB is MaxBytes in bigcache's unit, rounded up (below the
// largest that can be counted in bytes).
func (c *config) hardMaxMiB() int {
	return min(c.maxBytes/mib+min(c.maxBytes%mib, 1), math.MaxInt/mib)
}

func (c *config) shardBytes(shards int) int { return c.hardMaxMiB() * mib / shards }

// fits reports whether an entry of n wrapped bytes always fits in a shard
// of shardBytes. bigcache evicts the oldest entries of a full shard until
// a new one fits, but its queue refuses an entry that, from an empty
// queue, needs to grow past the bound: that never happens below half of
// it.
func fits(n, shardBytes int) bool { return n <= (shardBytes-3)/2 } // 2n+2 < shardBytes

// need is what an entry of MaxEntryBytes n takes in a shard, with a key of
// keyBudget bytes (at most math.MaxInt).
func need(n int) int { return min(n, math.MaxInt-keyBudget-wrapOverhead) + keyBudget + wrapOverhead }

// largestEntry is the largest MaxEntryBytes that fits in a shard of b
// bytes; below 1 if none does.
func largestEntry(b int) int { return (b-3)/2 - keyBudget - wrapOverhead }

// finish checks the options together and fills in the sizes left to it.
// It blames only options the caller set: a default that does not fit
// adapts instead.
func (c *config) finish() error {
	entrySet, shardsSet := c.maxEntryBytes != 0, c.shards != 0
	if !entrySet {
		c.maxEntryBytes = defaultMaxEntryBytes
	}
	if !shardsSet {
		for c.shards = maxDefaultShards; c.shards > 1 && !fits(need(c.maxEntryBytes), c.shardBytes(c.shards)); c.shards /= 2 {
		}
	}
	b := c.shardBytes(c.shards)
	if fits(need(c.maxEntryBytes), b) {
		return nil
	}
	if !entrySet {
		if n := largestEntry(b); n > 0 {
			c.maxEntryBytes = n
			return nil
		}
		// Only a Shards the caller set leaves shards this small: one
		// shard holds at least 1 MiB.
		return invalid("Shards(%d) leaves shards of %d bytes (%s in %s), too small for any entry; use Shards(%d) or fewer",
			c.shards, b, c.maxBytesText(), shardsText(c.shards), c.fewerShards(1))
	}
	var fixes []string
	if n := largestEntry(b); n > 0 {
		fixes = append(fixes, fmt.Sprintf("MaxEntryBytes(%d) or less", n))
	}
	if shardsSet {
		if k := c.fewerShards(c.maxEntryBytes); k > 0 {
			fixes = append(fixes, fmt.Sprintf("Shards(%d) or fewer", k))
		}
	}
	if n := need(c.maxEntryBytes); n < (math.MaxInt/c.shards-mib)/2 {
		fixes = append(fixes, fmt.Sprintf("MaxBytes of %d MiB or more", (c.shards*(2*n+3)+mib-1)/mib))
	}
	return invalid("MaxEntryBytes(%d) does not fit in shards of %d bytes (%s in %s): an entry with a key of %d bytes must take less than half a shard; use %s",
		c.maxEntryBytes, b, c.maxBytesText(), shardsText(c.shards), keyBudget, strings.Join(fixes, ", or "))
}

// fewerShards returns the largest shard count below c.shards whose shards
// fit entries of MaxEntryBytes n, or 0.
func (c *config) fewerShards(n int) int {
	for k := c.shards / 2; k >= 1; k /= 2 {
		if fits(need(n), c.shardBytes(k)) {
			return k
		}
	}
	return 0
}

// maxBytesText names MaxBytes for an error, saying whether it is the
// default.
func (c *config) maxBytesText() string {
	if c.maxBytesSet {
		return fmt.Sprintf("MaxBytes %d MiB", c.hardMaxMiB())
	}
	return fmt.Sprintf("the default MaxBytes %d MiB", c.hardMaxMiB())
}

func shardsText(n int) string {
	if n == 1 {
		return "1 shard"
	}
	return fmt.Sprintf("%d shards", n)
}
