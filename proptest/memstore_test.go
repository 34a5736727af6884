package proptest

import "testing"

// TestMemstore runs the machine on memstore, several nodes sharing one
// in-process store (as several Caches of one program would).
func TestMemstore(t *testing.T) { runMachine(t, memstoreBackend) }
