// Command bench measures paddock against the libraries people would pick
// instead, on the same machine in the same run. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// A LoadFunc loads the value of one key from the source of truth.
type LoadFunc func(ctx context.Context) ([]byte, error)

// Cache is what every library is driven through: a read-through Get and a
// delete-on-write Invalidate. One adapter file per library implements it.
type Cache interface {
	// Get returns the value of key, calling load on a miss the way the
	// library recommends (coalesced, refreshed, ...).
	Get(ctx context.Context, key string, load LoadFunc) ([]byte, error)
	// Invalidate drops key after its source of truth was written.
	Invalidate(ctx context.Context, key string) error
	// Close releases the library's resources (not the Redis server).
	Close() error
}

// Tagger is implemented by adapters of libraries with tag invalidation.
type Tagger interface {
	// GetTagged is Get with tags on the entry a load writes.
	GetTagged(ctx context.Context, key string, tags []string, load LoadFunc) ([]byte, error)
	// InvalidateTag drops every entry that carries tag.
	InvalidateTag(ctx context.Context, tag string) error
}

// Config is what a scenario asks of an adapter. Each adapter maps it onto
// its library's options and says how in its doc comment.
type Config struct {
	// TTL is how long a loaded value is fresh.
	TTL time.Duration
	// Stale is how long after TTL a value may still be served while one
	// refresh runs, for libraries that can (stale-while-revalidate, early
	// refresh). Zero: the library's refresh option stays off.
	Stale time.Duration
	// Entries is how many entries the scenario will hold, for libraries
	// that size themselves up front.
	Entries int
	// ValueSize is the size of the values the scenario writes.
	ValueSize int
	// Redis is the address of the Redis server (host:port or a unix socket
	// path), for the adapters that use one.
	Redis string
	// Memcached is the address of the memcached server, for the adapters
	// that use one.
	Memcached string
}

// A Lib is one row of the tables: a library in one configuration.
type Lib struct {
	// Name is the row's name, also the lib= value of the Go benchmarks.
	Name string
	// Redis reports that the library keeps its entries in Redis (shared
	// by a fleet).
	Redis bool
	// Memcached reports that the library keeps its entries in memcached
	// (shared by a fleet).
	Memcached bool
	// Disk reports that the library keeps its entries in a file (shared
	// by the processes of a host).
	Disk bool
	// Peer is false for paddock's own rows.
	Peer bool
	// FleetOnly marks a row that is not a library but a floor for the
	// fleet scenario (floor-redis): the other scenarios, the warm-hit
	// benchmark and the summary leave it out.
	FleetOnly bool
	// Module is the Go module measured.
	Module string
	// Notes says how the library is configured, for the README.
	Notes string
	// New builds the adapter.
	New func(cfg Config) (Cache, error)
}

// libs lists every adapter, paddock first, in-process before Redis.
var libs []Lib

func register(l Lib) { libs = append(libs, l) }

// ordered returns libs in table order.
func ordered() []Lib {
	out := slices.Clone(libs)
	rank := map[string]int{}
	for i, n := range tableOrder {
		rank[n] = i
	}
	slices.SortStableFunc(out, func(a, b Lib) int {
		ra, oka := rank[a.Name]
		rb, okb := rank[b.Name]
		switch {
		case oka && okb:
			return ra - rb
		case oka:
			return -1
		case okb:
			return 1
		}
		return 0
	})
	return out
}

var tableOrder = []string{
	"paddock-mem", "paddock-disk", "cacheaside-mem", "singleflight", "sturdyc", "gocache-mem", "otter",
	"paddock-redis", "cacheaside-redis", "goredis-cache", "gocache-redis", "rueidisaside", "floor-redis",
	"paddock-memcached",
}

// lookupLib returns the Lib named name.
func lookupLib(name string) (Lib, error) {
	for _, l := range libs {
		if l.Name == name {
			return l, nil
		}
	}
	return Lib{}, fmt.Errorf("unknown lib %q", name)
}

// errNoRedis is returned by Redis adapters built without an address.
var errNoRedis = errors.New("no Redis address")
