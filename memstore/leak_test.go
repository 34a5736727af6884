package memstore_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: a
// closed Store (and a closed Cache over it) leaves none.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
