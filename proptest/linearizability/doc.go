// Package linearizability checks recorded histories of paddock against a
// sequential specification with github.com/anishathalye/porcupine. It holds
// tests only, in a module of its own so that porcupine stays out of
// paddock's go.mod.
//
// Free-running goroutines (in a testing/synctest bubble, with random
// sleeps) commit rows, invalidate keys and tags, and Get through several
// Caches over one memstore; every operation is recorded with its call and
// return on one logical clock. The specification, per key: a row version
// db and a floor. A commit of version v needs v = db+1 and sets db; an
// invalidation sets floor = db; a Get may return v only if floor ≤ v ≤ db.
// A history is linearizable exactly when every Get that began after an
// invalidation returned a row at least as new as the row at that
// invalidation, and no row from the future: the guarantee of
// docs/guarantees.md, checked by a tool that knows nothing of paddock.
//
// Run: cd proptest/linearizability && go test -race .
package linearizability
