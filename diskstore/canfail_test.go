package diskstore

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The environment that proptest.Main reads in a can-fail child: the
// switch of internal/hooks to turn on, and the one invariant to report.
const (
	hookEnv = "PADDOCK_PROPTEST_HOOK"
	onlyEnv = "PADDOCK_PROPTEST_ONLY"
)

// canFail pairs invariants of the machine with mechanisms whose absence
// they must catch on this store: two that the store itself keeps (it
// breaks the leases of the keys it invalidates; a refused Set drops the
// entry that may predate it) and the fence that every store keeps.
var canFail = []struct {
	invariant, hook, want, why string
}{
	{"I1", "NoFence", "load that began before", "a load that read the old row fills after the invalidation; a later Get hits it"},
	{"I7", "LeaseOutlivesInvalidation", "doomed", "the store keeps the lease of an invalidated key; a Get in another node waits for the doomed load"},
	{"I1", "SetKeepsOld", "predates a refused Set", "a refused Set leaves the entry it should have dropped; a later Get hits it"},
}

// canFailChecks bounds each can-fail run; each pair is found within a
// few dozen checks for the seeds tried, and a run stops at its first
// counterexample.
const (
	canFailSeed   = 1
	canFailChecks = 1000
)

// TestMachineCanFail runs the machine once per pair above, in a copy of
// this test binary with the mechanism switched off, and checks that rapid
// finds a counterexample of that pair's invariant.
func TestMachineCanFail(t *testing.T) {
	if os.Getenv(hookEnv) != "" {
		t.Skip("inside a can-fail run")
	}
	for _, c := range canFail {
		t.Run(c.invariant+"/"+c.hook, func(t *testing.T) {
			cmd := exec.Command(os.Args[0],
				"-test.run=^TestMachine$", "-test.count=1", "-test.v",
				"-rapid.checks="+strconv.Itoa(canFailChecks),
				"-rapid.seed="+strconv.Itoa(canFailSeed),
				"-rapid.nofailfile", "-rapid.shrinktime=1s")
			cmd.Dir = t.TempDir() // away from testdata/rapid
			cmd.Env = append(os.Environ(), hookEnv+"="+c.hook, onlyEnv+"="+c.invariant)
			b, err := cmd.CombinedOutput()
			out := string(b)
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("with %s on, the machine did not fail (%v); it should have (%s):\n%s", c.hook, err, c.why, out)
			}
			first := regexp.MustCompile(`\[rapid\] failed after (\d+) tests: (` + c.invariant + ` [^\n]*)`).FindStringSubmatch(out)
			if first == nil && strings.Contains(out, "[rapid] flaky test") {
				first = regexp.MustCompile(`()Original traceback \((` + c.invariant + ` [^\n]*)\):`).FindStringSubmatch(out)
				if first != nil {
					first[1] = "?"
				}
			}
			if first == nil || !strings.Contains(first[2], c.want) {
				t.Fatalf("with %s on, the machine failed, but not on %s (%s):\n%s", c.hook, c.invariant, c.why, out)
			}
			t.Logf("with %s on, %s broke after %s checks (%s):\n    %s", c.hook, c.invariant, first[1], c.why, first[2])
		})
	}
}
