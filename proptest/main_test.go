package proptest

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/paddockcache/paddock/internal/hooks"
)

// userChecks is set when the run names its own number of checks
// (-rapid.checks or RAPID_CHECKS): then every machine runs that many.
var userChecks bool

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

func TestMain(m *testing.M) {
	flag.Parse()
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "rapid.checks" {
			userChecks = true
		}
	})
	if _, ok := os.LookupEnv("RAPID_CHECKS"); ok {
		userChecks = true
	}
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

// withChecks runs f with rapid's number of checks set to n, unless the run
// named its own.
func withChecks(n int, f func()) {
	if userChecks || n <= 0 {
		f()
		return
	}
	old := flag.Lookup("rapid.checks").Value.String()
	flag.Set("rapid.checks", strconv.Itoa(n))
	defer flag.Set("rapid.checks", old)
	f()
}
