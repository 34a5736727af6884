package diskstore

import (
	"fmt"
	"time"

	"github.com/paddockcache/paddock/store"
)

// An Option configures a [Store] in [Open]. An option given a bad value
// makes Open return an error wrapping [store.ErrInvalidOption].
type Option func(*config) error

type config struct {
	maxBytes      int64
	maxEntryBytes int
	maxVersions   int64
	clock         func() time.Time
	busyTimeout   time.Duration
}

const (
	defaultMaxBytes      = 256 << 20
	defaultMaxEntryBytes = 1 << 20
	defaultMaxVersions   = 1 << 18
	defaultBusyTimeout   = 10 * time.Second
)

func defaultConfig() config {
	return config{
		maxBytes:    defaultMaxBytes,
		maxVersions: defaultMaxVersions,
		clock:       time.Now,
		busyTimeout: defaultBusyTimeout,
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("diskstore: %w: %s", store.ErrInvalidOption, fmt.Sprintf(format, args...))
}

// MaxBytes bounds the bytes that entries take in the database: the sum
// of their encoded envelopes and keys. A fill that takes the sum past it
// evicts the entries written longest ago first (the order of writing, not
// of reading: a hit writes nothing), and counts them (see
// [Store.Evictions]). The bound covers entries, not the tables of leases
// and versions beside them (see [MaxVersions]), nor SQLite's own pages
// and write-ahead log, so the file is larger. Every process that opens
// the database should give the same bound; each applies its own to the
// fills it makes. It must be positive and at least [MaxEntryBytes]; the
// default is 256 MiB.
func MaxBytes(n int64) Option {
	return func(c *config) error {
		if n <= 0 {
			return invalid("MaxBytes(%d): must be positive", n)
		}
		c.maxBytes = n
		return nil
	}
}

// MaxEntryBytes bounds the size of one encoded entry (value, tags and
// about 60 bytes of envelope). [Store.Fill] of a larger entry stores
// nothing and returns an error wrapping [store.ErrTooLarge]. It must be
// positive; the default is 1 MiB, or MaxBytes if that is smaller.
func MaxEntryBytes(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return invalid("MaxEntryBytes(%d): must be positive", n)
		}
		c.maxEntryBytes = n
		return nil
	}
}

// MaxVersions bounds how many key versions the database remembers, and
// separately how many tag versions. When a table would hold more, it
// forgets every version in it and keeps their maximum as a floor that
// every name it no longer holds is taken to have reached, as memstore
// does. That is conservative: fills of loads in flight over a forgotten
// key or tag may be refused, and entries with a forgotten tag read as
// invalidated, but a stale fill is never accepted and an old entry never
// looks fresh. It must be positive; the default is 1<<18 (262144).
func MaxVersions(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return invalid("MaxVersions(%d): must be positive", n)
		}
		c.maxVersions = int64(n)
		return nil
	}
}

// Clock sets the clock by which the store judges freshness and leases. It
// must not be nil; the default is [time.Now], the host's clock, which
// every process on the host shares (and which is already a fake clock
// inside a testing/synctest bubble). Processes that share a database must
// share a clock: give this option only in tests.
func Clock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return invalid("Clock(nil)")
		}
		c.clock = now
		return nil
	}
}

// BusyTimeout is how long a call waits for another process that holds
// the database's write lock before it fails. Calls of one process never
// wait for each other this way (they take turns in the process first).
// It must be positive; the default is 10s.
func BusyTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("BusyTimeout(%v): must be positive", d)
		}
		c.busyTimeout = d
		return nil
	}
}

// finish checks the options together and fills in MaxEntryBytes if it
// was left unset (zero): the default, or MaxBytes if that is smaller. It
// blames only a MaxEntryBytes the caller set.
func (c *config) finish() error {
	if c.maxEntryBytes == 0 {
		c.maxEntryBytes = int(min(defaultMaxEntryBytes, c.maxBytes))
		return nil
	}
	if int64(c.maxEntryBytes) > c.maxBytes {
		return invalid("MaxEntryBytes(%d) is more than MaxBytes(%d)", c.maxEntryBytes, c.maxBytes)
	}
	return nil
}
