package memcachestore

import "time"

// An Option configures a [Store] in [New].
type Option func(*config) error

type config struct {
	prefix      string
	maxItem     int
	timeout     time.Duration
	dialTimeout time.Duration
	offset      func() time.Duration
}

// Prefix starts the name of every item the store writes, so that several
// stores (or other programs) share servers without meeting. Default "pd:".
// It must be printable ASCII without spaces, at most 64 bytes.
func Prefix(p string) Option {
	return func(c *config) error {
		if len(p) > 64 || !plain(p) {
			return invalid("Prefix %q: want at most 64 printable ASCII bytes without spaces", p)
		}
		c.prefix = p
		return nil
	}
}

// MaxItemBytes is the servers' item size limit (memcached's -I, 1 MiB by
// default, which is the default here): an entry whose envelope and name
// come near it is not sent, and Fill returns [store.ErrTooLarge]. A
// server that refuses an item as too large gives the same error.
func MaxItemBytes(n int) Option {
	return func(c *config) error {
		if n < 1024 {
			return invalid("MaxItemBytes %d: want at least 1024", n)
		}
		c.maxItem = n
		return nil
	}
}

// Timeout bounds each Store call whose context has no deadline. Default 2s;
// zero: no bound.
func Timeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return invalid("Timeout %v is negative", d)
		}
		c.timeout = d
		return nil
	}
}

// DialTimeout bounds each new connection. Default 1s.
func DialTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("DialTimeout %v is not positive", d)
		}
		c.dialTimeout = d
		return nil
	}
}

// TimeOffset moves the store's clock by offset() ahead of the servers', for
// tests that move time without waiting: the store adds the offset to every
// TTL it writes and subtracts it from every remaining TTL it reads, and
// adds it to the local clock it reports. offset must never decrease. Not
// for production: memcached's own clock still drives expiry.
func TimeOffset(offset func() time.Duration) Option {
	return func(c *config) error {
		if offset == nil {
			return invalid("nil TimeOffset")
		}
		c.offset = offset
		return nil
	}
}
