package proptest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// tally counts what the checks of one test did (Get outcomes, how loads
// began, fills, invalidations), so that `go test -v` shows the machine is
// not vacuous: that fills are refused, Gets retry, leases expire.
type tally struct {
	mu sync.Mutex
	n  map[string]int
}

func (t *tally) add(what string) {
	t.mu.Lock()
	if t.n == nil {
		t.n = make(map[string]int)
	}
	t.n[what]++
	t.mu.Unlock()
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(t.n)) {
		fmt.Fprintf(&b, "\n  %-40s %d", k, t.n[k])
	}
	return b.String()
}
