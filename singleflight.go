package paddock

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddockcache/paddock/internal/hooks"
)

// This is paddock's own flight group rather than golang.org/x/sync's
// singleflight, because joining a flight is not always allowed. A caller
// that starts after an invalidation returned must not take a value from a
// load that began before it (the stale-set race, in process). Picture:
//
//	G1: Get("home") misses, starts load L (ticket t0), reads the old rows
//	W:  writes the rows, Invalidate("home") returns (version s > t0)
//	G2: Get("home") starts, finds L in flight
//
// With x/sync, G2 would share L's result: the old page, after the
// invalidation returned. Here each flight reports where its result came from
// and G2 takes it only if one of these holds (see outcome.takeable):
//
//   - the store read or load that produced it began after G2 joined;
//   - it came from a load whose fill the store accepted after G2 joined:
//     an accepted fill proves that no invalidation of the key or its tags
//     happened between t0 and a moment after G2 started;
//   - G2 knows its own ticket j (from its own lookup) and the result's
//     ticket is not older than j.
//
// Otherwise G2 retries once. A retry never needs another: a flight found on
// the retry was created after the old one left the map, so after G2 began.
// Detaching every flight on every invalidation would also be correct, but
// would split flights that no invalidation touched.

// flight is one load (or store read) for one key, shared by the callers of
// one process.
type flight[T any] struct {
	key  string
	done chan struct{} // closed when out is set
	out  outcome[T]

	// starts counts the store operations the flight has begun; a joiner
	// records it when it joins, and compares it with the outcome's marks.
	starts atomic.Uint64
	// background flights are refreshes while a stale value is being
	// served; callers that may serve stale do not wait for them.
	background bool
}

// begin marks the start of a store read, load or fill and returns its mark.
func (f *flight[T]) begin() uint64 { return f.starts.Add(1) }

// outcome is a flight's result with its provenance.
type outcome[T any] struct {
	val    T
	err    error
	status Status
	age    time.Duration

	// fenced: the outcome is data (a value, or a not-found) and obeys the
	// join rule; a plain load error is not.
	fenced  bool
	ticket  Ticket // load: t0; store read: the entry's ticket
	started uint64 // mark of the read or load that produced val
	filled  uint64 // mark of the fill, if accepted; 0 otherwise
	loadErr error  // the error a stale-if-error value stands in for
	fillErr error
}

// takeable reports whether a caller that joined at mark joined (and that
// knows its own ticket j if known) may take o.
func (o *outcome[T]) takeable(joined uint64, j Ticket, known bool) bool {
	switch {
	case !o.fenced || hooks.JoinOldFlights.Load():
		return true // an error carries no old data
	case o.started > joined:
		return true
	case o.filled > joined:
		return true
	case known && o.ticket.AtLeast(j):
		return true
	}
	return false
}

const flightShards = 64

// group holds the flights of one Loader, sharded by key.
type group[T any] struct {
	seed   maphash.Seed
	shards [flightShards]struct {
		mu sync.Mutex
		m  map[string]*flight[T]
	}
}

func newGroup[T any]() *group[T] {
	g := &group[T]{seed: maphash.MakeSeed()}
	for i := range g.shards {
		g.shards[i].m = make(map[string]*flight[T])
	}
	return g
}

func (g *group[T]) shard(key string) int {
	return int(maphash.String(g.seed, key) % flightShards)
}

// joinOrStart returns the flight in progress for key and the mark at which
// the caller joined it, or registers a new flight that the caller owns
// (joined is 0). A caller that may serve stale values passes
// skipBackground: a background flight then is neither joined nor replaced
// (f is nil).
func (g *group[T]) joinOrStart(key string, skipBackground bool) (f *flight[T], joined uint64, owner bool) {
	s := &g.shards[g.shard(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.m[key]; ok {
		if f.background && skipBackground {
			return nil, 0, false
		}
		return f, f.starts.Load(), false
	}
	f = &flight[T]{key: key, done: make(chan struct{})}
	s.m[key] = f
	return f, 0, true
}

// join returns the flight in progress for key, if any.
func (g *group[T]) join(key string) (f *flight[T], joined uint64) {
	s := &g.shards[g.shard(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.m[key]
	if !ok {
		return nil, 0
	}
	return f, f.starts.Load()
}

// start registers a new flight for key, for a caller that holds the key's
// lease. If another flight is registered (one waiting for a lease holder
// elsewhere), the new flight runs unregistered: the lease makes it the one
// load, and the other flight will see its fill.
func (g *group[T]) start(key string, background bool) *flight[T] {
	f := &flight[T]{key: key, done: make(chan struct{}), background: background}
	s := &g.shards[g.shard(key)]
	s.mu.Lock()
	if _, ok := s.m[key]; !ok {
		s.m[key] = f
	}
	s.mu.Unlock()
	return f
}

// finish sets f's outcome, removes f from the map and wakes its callers.
// The removal comes first: a caller that sees done closed and retries never
// finds f again.
func (g *group[T]) finish(key string, f *flight[T], out outcome[T]) {
	s := &g.shards[g.shard(key)]
	s.mu.Lock()
	if s.m[key] == f {
		delete(s.m, key)
	}
	s.mu.Unlock()
	f.out = out
	close(f.done)
}
