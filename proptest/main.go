package proptest

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/paddockcache/paddock/internal/hooks"
)

// hookEnv names a switch of internal/hooks to turn on in this process. The
// can-fail tests set it for the copy of the test binary they run.
const hookEnv = "PADDOCK_PROPTEST_HOOK"

// onlyEnv restricts the invariants reported to one label ("I2"), so that a
// can-fail test shows that this invariant's check, alone, catches the
// switch it turns off.
const onlyEnv = "PADDOCK_PROPTEST_ONLY"

// only is the value of onlyEnv.
var only = os.Getenv(onlyEnv)

// ignore, from PADDOCK_PROPTEST_IGNORE, drops violations whose kind
// contains it: for exploring past a known, reported bug by hand. Never set
// it in CI.
var ignore = os.Getenv("PADDOCK_PROPTEST_IGNORE")

// withChecks runs f with rapid's number of checks set to n, unless the run
// named its own.
func withChecks(n int, f func()) {
	if userChecks() || n <= 0 {
		f()
		return
	}
	old := flag.Lookup("rapid.checks").Value.String()
	flag.Set("rapid.checks", strconv.Itoa(n))
	defer flag.Set("rapid.checks", old)
	f()
}

// userChecks reports whether the run names its own number of checks
// (-rapid.checks or RAPID_CHECKS): then every machine runs that many.
func userChecks() bool {
	set := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "rapid.checks" {
			set = true
		}
	})
	_, env := os.LookupEnv("RAPID_CHECKS")
	return set || env
}

// Main is the TestMain of a package that runs the machine (see [Run]):
//
//	func TestMain(m *testing.M) { proptest.Main(m) }
//
// It turns on the switch of internal/hooks that the can-fail runs name in
// the environment (a copy of the test binary run with one mechanism
// removed, which must then fail), and exits with the tests' code.
func Main(m *testing.M) {
	flag.Parse()
	if name := os.Getenv(hookEnv); name != "" {
		sw, ok := hooks.All[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "proptest: %s=%q names no switch\n", hookEnv, name)
			os.Exit(2)
		}
		sw.Store(true)
		defer hooks.Reset()
	}
	code := m.Run()
	hooks.Reset()
	os.Exit(code)
}
