package memstore

import (
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestLeaseTable runs a stripe's lease table against a map: any sequence
// of sets, deletions and sweeps, over few keys and many (past the array,
// into the map), leaves the same leases.
func TestLeaseTable(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var lt leaseTable
		model := map[string]lease{}
		t0 := time.Unix(1000, 0)
		key := rapid.StringMatching(`k[0-9]{1,2}`)
		for range rapid.IntRange(0, 200).Draw(t, "ops") {
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0, 1, 2, 3, 4:
				k := key.Draw(t, "key")
				l := lease{token: rapid.Uint64().Draw(t, "token"), until: t0.Add(time.Duration(rapid.IntRange(0, 10).Draw(t, "until")) * time.Second)}
				lt.set(k, l)
				model[k] = l
			case 5, 6, 7:
				k := key.Draw(t, "key")
				lt.del(k)
				delete(model, k)
			case 8:
				now := t0.Add(time.Duration(rapid.IntRange(0, 10).Draw(t, "now")) * time.Second)
				lt.sweep(now)
				for k, l := range model {
					if !now.Before(l.until) {
						delete(model, k)
					}
				}
			default:
				lt.clear()
				clear(model)
			}
			if lt.len() != len(model) {
				t.Fatalf("len %d, want %d", lt.len(), len(model))
			}
			for k, want := range model {
				if got, ok := lt.get(k); !ok || got != want {
					t.Fatalf("get(%q) = %v, %v; want %v", k, got, ok, want)
				}
			}
			if k := key.Draw(t, "probe"); func() bool { _, ok := model[k]; return !ok }() {
				if _, ok := lt.get(k); ok {
					t.Fatalf("get(%q) found a lease the model does not hold", k)
				}
			}
		}
	})
}
