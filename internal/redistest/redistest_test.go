package redistest_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock/internal/redistest"
)

// TestDisconnect: a disconnected server fails calls at once, open
// connections included, and keeps its data for when it is reconnected.
func TestDisconnect(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t, func(o *redis.Options) {
		o.MaxRetries, o.DialerRetries, o.DialerRetryTimeout = -1, 1, time.Millisecond
	})
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Disconnect(t)
	srv.Disconnect(t) // a no-op
	start := time.Now()
	for i := range 2 { // the open connection, then a new one
		if err := c.Get(ctx, "k").Err(); err == nil {
			t.Fatalf("call %d: Get on a disconnected server succeeded", i)
		}
	}
	// A loose bound: the point is "not a read timeout".
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("failing took %v", d)
	}
	srv.Reconnect(t)
	srv.Reconnect(t) // a no-op
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after Reconnect: %q, %v", v, err)
	}
	srv.Disconnect(t)
	srv.Restart(t) // reachable again, and empty
	if err := c.Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("after Restart: %v, want redis.Nil", err)
	}
}
