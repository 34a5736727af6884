package diskstore

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"pgregory.net/rapid"

	"github.com/paddockcache/paddock/proptest"
	"github.com/paddockcache/paddock/store"
)

func TestMain(m *testing.M) { proptest.Main(m) }

// machineBackend opens a new database file for each check, inside the
// check's bubble: the store's clock is time.Now, the bubble's fake clock,
// and its calls run in the bubble (the driver is Go, and starts no
// goroutine that outlives a call but database/sql's own, which Close
// ends).
func machineBackend(checks int) proptest.Backend {
	return proptest.Backend{
		Checks: checks,
		Setup: func(t *testing.T) func(*rapid.T) *proptest.Env {
			dir := t.TempDir()
			var n atomic.Int64
			return func(rt *rapid.T) *proptest.Env {
				path := filepath.Join(dir, fmt.Sprintf("check-%d.db", n.Add(1)))
				s, err := Open(path, MaxBytes(1<<20), MaxEntryBytes(4<<10))
				if err != nil {
					rt.Fatalf("Open: %v", err)
				}
				return &proptest.Env{
					Store: s,
					Peek: func(ctx context.Context, key string) (store.Lookup, error) {
						return s.Lookup(ctx, key, store.LookupRequest{})
					},
					Close: func() { s.Close() },
				}
			}
		},
	}
}

// TestMachine runs paddock's property machine on the store: two or three
// nodes (Caches) share one database, with loads, invalidations, Sets,
// time and crashes interleaved by rapid, and every invariant of the
// ordering guarantee checked after each action.
func TestMachine(t *testing.T) { proptest.Run(t, machineBackend(40)) }
