// Package faulttest drives a paddock Cache over redisstore against a real
// redis-server with real faults, and reports what callers saw.
//
// The faults are those a production Redis meets: the server killed with
// SIGKILL, frozen with SIGSTOP and continued with SIGCONT, flushed with
// FLUSHALL, restarted empty on the same socket, and reached through a TCP
// proxy that adds latency to every reply, holds all traffic, holds the
// requests of the open connections and delivers them late (after the
// client gave up on them), or cuts the connections. Entries are also
// overwritten in Redis with bytes that do not parse. A lease holder is
// abandoned in the middle of its load.
//
// Every scenario keeps a versioned source of truth and checks each value a
// Get returns against the last invalidation that was acknowledged (or, for
// the promise of this process, merely attempted): a value older than that is
// a stale value served. TestFaults runs the scenarios as subtests and logs
// one table of figures: errors returned to callers, stale values served, the
// latency of Gets while the store was down or slow (p50 and max), the time
// the Cache took to use the store again once it was back, and the
// invalidations retried.
//
// The package has no API; it is its tests:
//
//	go test -race -v -run TestFaults ./faulttest/
//
// Without redis-server on PATH the tests are skipped, except under CI=true,
// where that is a failure.
package faulttest
