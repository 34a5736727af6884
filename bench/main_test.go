package main

import (
	"fmt"
	"os"
	"testing"
)

// testRedis is the address of the redis-server TestMain started, or "".
var testRedis string

// TestMain starts one redis-server for the package's tests and benchmarks.
// Without redis-server the Redis parts skip, except under CI=true, where
// they fail.
func TestMain(m *testing.M) {
	srv, err := startRedis()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench tests: no Redis:", err)
	} else {
		testRedis = srv.Addr
	}
	code := m.Run()
	srv.Stop()
	os.Exit(code)
}

// requireRedis returns the test Redis address, or skips tb (fails it
// under CI=true) when there is none.
func requireRedis(tb testing.TB) string {
	tb.Helper()
	if testRedis == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("redis-server is needed under CI=true")
		}
		tb.Skip("no redis-server")
	}
	return testRedis
}
