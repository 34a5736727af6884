package fragment_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: a
// render that outlasts its caller still ends with its Cache.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
