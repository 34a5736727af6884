package faulttest

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: no
// goroutine of a closed Cache, a closed client or the proxy may be left.
// The client's own log of failed dials is silenced: the faults are meant.
func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	goleak.VerifyTestMain(m)
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
