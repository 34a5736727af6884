package main

import (
	"fmt"
	"os"
	"testing"
)

// testRedis and testMemcached are the addresses of the servers TestMain
// started, or "".
var testRedis, testMemcached string

// TestMain starts one redis-server and one memcached for the package's
// tests and benchmarks. Without a server the parts that need it skip,
// except under CI=true, where they fail.
func TestMain(m *testing.M) {
	srv, err := startRedis()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench tests: no Redis:", err)
	} else {
		testRedis = srv.Addr
	}
	mc, err := startMemcached()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench tests: no memcached:", err)
	} else {
		testMemcached = mc.Addr
	}
	code := m.Run()
	srv.Stop()
	mc.Stop()
	os.Exit(code)
}

// requireMemcached returns the test memcached address, or skips tb (fails
// it under CI=true) when there is none.
func requireMemcached(tb testing.TB) string {
	tb.Helper()
	if testMemcached == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("memcached is needed under CI=true")
		}
		tb.Skip("no memcached")
	}
	return testMemcached
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
