package proptest

import (
	"context"
	"testing"

	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/store"
	"pgregory.net/rapid"
)

// TestMemstore runs the machine on memstore, several nodes sharing one
// in-process store (as several Caches of one program would).
func TestMemstore(t *testing.T) { runMachine(t, memstoreBackend) }

// TestRunExported runs the machine through the API a store of another
// module uses (Run, Backend, Env), on memstore, so that the adapter is
// checked where the machine lives.
func TestRunExported(t *testing.T) {
	Run(t, Backend{
		Checks: 100,
		Setup: func(*testing.T) func(*rapid.T) *Env {
			return func(t *rapid.T) *Env {
				s, err := memstore.New(memstore.MaxBytes(1<<20), memstore.MaxEntryBytes(4<<10))
				if err != nil {
					t.Fatalf("memstore.New: %v", err)
				}
				return &Env{
					Store: s,
					Peek: func(ctx context.Context, key string) (store.Lookup, error) {
						return s.Lookup(ctx, key, store.LookupRequest{})
					},
					Close: func() { s.Close() },
				}
			}
		},
	})
}
