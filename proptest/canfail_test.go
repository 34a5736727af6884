package proptest

import (
	"strings"
	"testing"
)

// canFail pairs each invariant with a mechanism whose absence it must
// catch. A property test that cannot fail proves nothing.
var canFail = []struct {
	test      string // the machine's test
	invariant string // the label its violations start with
	hook      string // the switch of internal/hooks that turns the mechanism off
	want      string // in the violation's kind
	why       string
}{
	{"TestMemstore", "I1", "NoFence", "load that began before", "a load that read the old row fills after the invalidation; a later Get hits it"},
	{"TestMemstore", "I1", "JoinOldFlights", "load that began before", "a Get that starts after the invalidation joins the old load's flight"},
	{"TestMemstore", "I1", "IgnoreLoadTags", "load that began before", "the entry lacks the tag the load named late; invalidating the tag leaves it"},
	{"TestMemstore", "I1", "DropFailedInvalidations", "load that began before", "an invalidation the store did not acknowledge is forgotten; a later Get on its node hits the old entry"},
	{"TestMemstore", "I1", "SetKeepsOld", "predates a refused Set", "a Set refused because a tag only the new value carries was invalidated leaves the old entry; a later Get hits it"},
	{"TestMemstore", "I1", "FillTagGap", "load that began before", "an invalidation of a tag lands between a Set's fence check and its write; the Set is accepted and a later Get hits the old row"},
	{"TestMemstore", "I2", "NoLease", "in flight", "two nodes load the same key at once"},
	{"TestMemstore", "I3", "HardAsSoft", "older than a hard invalidation", "a hard invalidation leaves the entry servable as stale"},
	{"TestMemstore", "I3", "RetryTakesAny", "older than a hard invalidation", "a Get that rejected an old flight's result retries, joins a refresh begun from a lookup older than the invalidation, and takes its stale-if-error value"},
	{"TestMemstore", "I4", "NoFence", "before the last invalidation", "the store keeps a value from a load older than the invalidation"},
	{"TestRedis", "I1", "NoFence", "load that began before", "as on memstore, on a real redis-server"},
	{"TestRedis", "I2", "NoLease", "in flight", "as on memstore, on a real redis-server"},
	{"TestRedis", "I1", "FillFirstTagOnly", "load that began before", "a load of b whose second tag is invalidated while it runs fills; a Get that joined its flight after the invalidation takes its value"},
	{"TestRedisCluster", "I1", "NoClusterPreFill", "load that began before", "a load whose tag in another slot is invalidated while it runs fills; a Get that joined its flight after the invalidation takes its value"},
	{"TestMemstore", "I6", "NoDeps", "older than", "an outer entry carries none of its inputs' keys and tags; invalidating a row leaves the list and the page built from it"},
	{"TestMemstore", "I8", "NoDeps", "window", "an outer entry is kept for its own TTL, past the windows of the inputs it was built from"},
	{"TestMemstore", "I7", "WaitDoomed", "doomed", "an invalidation leaves the flights it dooms in place, with their leases; a Get that begins after it waits for the doomed load"},
	{"TestMemstore", "I7", "LeaseOutlivesInvalidation", "doomed", "the store keeps the lease of an invalidated key; a Get in another process waits for the doomed load"},
	{"TestRedis", "I6", "NoDeps", "older than", "as on memstore, on a real redis-server"},
	{"TestMemstore", "I3", "KeptScopeWrites", "past a value's window", "a load's context kept past its end sets a day's TTL; the load that reuses its context's state takes it, and a Get past that load's window hits its value"},
	{"TestMemstore", "I1", "HotIgnoresInvalidation", "load that began before", "an invalidation leaves the hot tier's decoded copy servable; a later Get on a node that hit the key before takes it"},
	{"TestRedis", "I7", "LeaseOutlivesInvalidation", "doomed", "redisstore keeps the lease of an invalidated key; a Get in another process waits for the doomed load"},
	// The near-cache machine (near_test.go).
	{"TestRedisNearCache", "N1", "FeedDropsChanges", "older than a change", "a process's feed loses a change and hands on the next; a Get there after the next one arrived serves the copy the lost one should have dropped"},
	// The page machine (pages_test.go).
	{"TestPagesMemstore", "P1", "PageIgnoresVary", "another value", "a process that has not learned a URL's Vary finds another variant's page under the URL's bare key (or joins its render) and serves it"},
	{"TestPagesMemstore", "P3", "PageSharesPrivate", "cookie", "a render that sets a cookie is handed to the requests coalesced with it"},
	{"TestPagesMemstore", "P2", "NoFence", "before", "a render that began before a purge fills after it; a later request hits its page"},
	{"TestPagesMemstore", "P2", "IgnoreLoadTags", "before", "a page lacks its URL tags and its row's tag; purging by URL, prefix or tag leaves it"},
	{"TestPagesMemstore", "P2", "NoDeps", "before", "a page read through the row Loader carries neither the row's key nor its tag; invalidating the row leaves it"},
	{"TestPagesRedis", "P2", "NoFence", "before", "as on memstore, on a real redis-server"},
}

// canFailChecks bounds the search of each can-fail run (from the fixed
// seed canFailSeed). Each pair above is found within a few hundred checks
// for every seed tried; the bound
// leaves a wide margin, and a run stops at its first counterexample.
const (
	canFailChecks = 3000
	// A check on a Redis store costs some 20 times one on memstore.
	canFailRedisChecks = 600
	// The page machine's pairs are found within 50 checks for every seed
	// tried, on memstore and on Redis.
	canFailPageChecks = 600
)

// TestCanFail runs a machine once per pair above, in a copy of
// this test binary with the mechanism switched off (the switches are
// process-wide, so a child process keeps them away from the other tests),
// reporting only that pair's invariant, and checks that rapid finds a
// counterexample.
func TestCanFail(t *testing.T) {
	if InCanFailRun() {
		t.Skip("inside a can-fail run")
	}
	for _, c := range canFail {
		name := c.invariant + "/" + c.hook
		if c.test != "TestMemstore" {
			name = strings.TrimPrefix(c.test, "Test") + "/" + name
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checks := canFailRedisChecks
			switch {
			case c.test == "TestMemstore":
				checks = canFailChecks
			case strings.HasPrefix(c.test, "TestPages"):
				checks = canFailPageChecks
			}
			CanFail(t, c.test, checks, Mechanism{Invariant: c.invariant, Hook: c.hook, Want: c.want, Why: c.why})
		})
	}
}
