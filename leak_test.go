package paddock_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: no
// goroutine of a closed Cache (a flight, a refresh, an invalidation retry)
// may be left.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
