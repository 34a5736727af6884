package proptest

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// A Mechanism is one that a machine must catch the absence of: with the
// switch Hook of internal/hooks on, the machine's test must fail with a
// violation of Invariant whose kind contains Want. Why says how.
type Mechanism struct {
	Invariant, Hook, Want, Why string
}

// canFailSeed fixes the search of each can-fail run, so that it is as
// repeatable as the scheduler allows.
const canFailSeed = 1

// InCanFailRun reports whether this process is the copy of a test binary
// that [CanFail] runs: the can-fail tests skip themselves there.
func InCanFailRun() bool { return os.Getenv(hookEnv) != "" }

// CanFail runs test (a machine's test function, such as "TestMachine") in
// a copy of this test binary with m's switch on and only m.Invariant
// reported, at most checks checks from a fixed seed, and fails t unless
// the machine finds a counterexample of that invariant. The copy's test
// must be in a package whose TestMain is [Main]. If the copy skipped its
// test (no server), so does t.
func CanFail(t *testing.T, test string, checks int, m Mechanism) {
	t.Helper()
	cmd := exec.Command(os.Args[0],
		"-test.run=^"+test+"$", "-test.count=1", "-test.v",
		"-rapid.checks="+strconv.Itoa(checks),
		"-rapid.seed="+strconv.Itoa(canFailSeed),
		"-rapid.nofailfile", // an expected failure is no regression to keep
		"-rapid.shrinktime=1s",
	)
	// Elsewhere than the package directory, so that the child does not
	// replay the failing cases saved under testdata/rapid: they would
	// fail it for another reason.
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), hookEnv+"="+m.Hook, onlyEnv+"="+m.Invariant)
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err == nil && !strings.Contains(out, "[rapid] OK") {
		t.Logf("child output:\n%s", out)
	}
	if strings.Contains(out, "--- SKIP") {
		t.Skipf("%s skipped in the child:\n%s", test, out)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("with %s on, the machine did not fail (%v); it should have (%s):\n%s", m.Hook, err, m.Why, out)
	}
	first := regexp.MustCompile(`\[rapid\] failed after (\d+) tests: (` + m.Invariant + ` [^\n]*)`).FindStringSubmatch(out)
	if first == nil && strings.Contains(out, "[rapid] flaky test") {
		// The counterexample depended on the scheduler and did not fail
		// again when replayed: the failure it first raised is what
		// counts.
		first = regexp.MustCompile(`()Original traceback \((` + m.Invariant + ` [^\n]*)\):`).FindStringSubmatch(out)
		if first != nil {
			first[1] = "?"
		}
	}
	if first == nil || !strings.Contains(first[2], m.Want) {
		t.Fatalf("with %s on, the machine failed, but not on %s (%s):\n%s", m.Hook, m.Invariant, m.Why, out)
	}
	t.Logf("with %s on, %s broke after %s checks (%s):\n    %s", m.Hook, m.Invariant, first[1], m.Why, first[2])
}
