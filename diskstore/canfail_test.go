package diskstore

import (
	"testing"

	"github.com/paddockcache/paddock/proptest"
)

// canFail pairs invariants of the machine with mechanisms whose absence
// they must catch on this store: two that the store itself keeps (it
// breaks the leases of the keys it invalidates; a refused Set drops the
// entry that may predate it) and the fence that every store keeps.
var canFail = []proptest.Mechanism{
	{Invariant: "I1", Hook: "NoFence", Want: "load that began before", Why: "a load that read the old row fills after the invalidation; a later Get hits it"},
	{Invariant: "I7", Hook: "LeaseOutlivesInvalidation", Want: "doomed", Why: "the store keeps the lease of an invalidated key; a Get in another node waits for the doomed load"},
	{Invariant: "I1", Hook: "SetKeepsOld", Want: "predates a refused Set", Why: "a refused Set leaves the entry it should have dropped; a later Get hits it"},
}

// canFailChecks bounds each can-fail run; each pair is found within a
// few dozen checks for the seeds tried, and a run stops at its first
// counterexample.
const canFailChecks = 1000

// TestMachineCanFail runs the machine once per pair above, in a copy of
// this test binary with the mechanism switched off, and checks that rapid
// finds a counterexample of that pair's invariant.
func TestMachineCanFail(t *testing.T) {
	if proptest.InCanFailRun() {
		t.Skip("inside a can-fail run")
	}
	for _, m := range canFail {
		t.Run(m.Invariant+"/"+m.Hook, func(t *testing.T) {
			proptest.CanFail(t, "TestMachine", canFailChecks, m)
		})
	}
}
