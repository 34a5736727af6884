package memstore

import "github.com/allegro/bigcache/v3"

// DefaultBigcacheConfig is the configuration of a default Store's
// bigcache, for the benchmarks that put a bare bigcache beside a Store.
func DefaultBigcacheConfig() bigcache.Config {
	c := defaultConfig()
	if err := c.finish(); err != nil {
		panic(err) // the defaults always fit
	}
	return c.bigcache(nil)
}
