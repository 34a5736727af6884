package paddock

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/store"
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
//   - the store read or load that produced it began after G2 began;
//   - it came from a load whose fill the store accepted after G2 began:
//     an accepted fill proves that no invalidation of the key or its tags
//     happened between t0 and a moment after G2 started;
//   - G2 knows its own ticket j (from its own lookup) and the result's
//     ticket is not older than j.
//
// Otherwise G2 retries with a lookup of its own, and the retry obeys the
// same rule: a flight found on the retry was registered after the old one
// left the map, but it may still carry a lookup made before G2 began. A
// background refresh is such a flight:
//
//	G0: lookup sent; the store grants the refresh lease on a stale entry
//	W:  Invalidate("home") returns
//	G2: joins G0's lookup flight; rejects its result (read before G2)
//	G0: serves stale; starts the refresh R from its (old) lookup
//	G2: retries: its lookup finds the lease held, joins R
//	R:  the load fails; R's result is the old entry as stale-if-error
//
// Taken unconditionally, that old entry would reach G2 after the
// invalidation returned. Each retry waits for a flight to end, and the
// lookup after it serves, takes the lease, or finds a newer holder, so
// retries end.
//
// The ticket rule needs one more condition. An invalidation the store did
// not acknowledge stays pending in the Cache (durable.go) and the store's
// sequence does not move, so tickets cannot tell a load that began before
// it. Outcomes carry gen, the count of invalidations gone pending when
// their read or load began, and G2 takes an outcome by its ticket only if
// its gen is not older than G2's own.
//
// Detaching every flight on every invalidation would also be correct, but
// would split flights that no invalidation touched.

// flight is one load (or store read) for one key, shared by the callers of
// one process.
type flight[T any] struct {
	key string
	// out is the flight's outcome: written by the flight's own work as it
	// runs, or by finish, and read by others only once finished is set.
	// done, made for the first caller that waits before then (see
	// signals), is closed when it is: a flight that its owner ran to the
	// end on its own goroutine, the common miss, makes none. finished and
	// done are guarded by sh.mu; publish sets finished under it, after
	// out is written.
	out      outcome[T]
	finished bool
	done     chan struct{}

	// clock is the Loader's mark clock (group.clock): the flight's store
	// reads, loads and fills take their marks from it.
	clock *atomic.Uint64
	// sh is the shard of the Loader's group that holds key.
	sh *shard[T]
	// background flights are refreshes while a stale value is being
	// served; callers that may serve stale do not wait for them.
	background bool
	// tags are the tags the Get that started the flight gave; sc, once the
	// load runs, holds those the load names. An invalidation of one of
	// them dooms the flight (see group.detach).
	tags []string
	// sc is the scope of f's load, and scGen the generation of that load
	// (see scope): a scope that has moved on to another load, once f's
	// is over, is not looked at. Both guarded by sh.mu.
	sc    *scope
	scGen uint64
	// lease is the token of the lease the flight holds while it loads, or
	// zero. Whoever swaps it to zero gives the lease back.
	lease atomic.Uint64
	// stage says whether f is in sh's active list, where an invalidation finds
	// it registered or not. Guarded by sh.mu.
	stage flightStage
	// inMap: f is the flight sh's map holds for key, which callers join
	// (see forget). Guarded by sh.mu.
	inMap bool
	// private: the load called Private; its other callers go their own
	// way. priv, made for the first caller that waits on f, is closed
	// then. Both guarded by sh.mu.
	private bool
	priv    chan struct{}
	// polling: f waits for a lease holder's fill (see flight.poll). A
	// flight of this process that took the lease and registers while f
	// polls takes f's place in the map and becomes f's follow, and nudge
	// (made for the wait) is closed: f then takes its outcome rather than
	// the store's, so that the callers of both share one load. All three
	// guarded by sh.mu.
	polling bool
	follow  *flight[T]
	nudge   chan struct{}
	// What the flight needs once it runs its work (see flightWork): nil
	// on a flight that only looks up, until it goes on to load or wait.
	*flightWork[T]
	// prev and next link f into its shard's active list.
	prev, next *flight[T]
	// inline: f ran to its end on its owner's goroutine (see work.start),
	// which set it then and alone reads it: the owner takes f's outcome
	// without asking sh.mu whether f finished.
	inline bool
	// reusable: f's owner took the key's lease with its own lookup and
	// loads it, so that f may go to its group's pool once the owner is
	// done with it (see group.reuse). Set by the owner alone, before f
	// runs.
	reusable bool
	// joins counts the callers, and the flights (see follow), that found
	// f registered and hold it: a flight that no one else ever held may
	// be reused once its owner is done with it. Guarded by sh.mu.
	joins int
}

// flightWork is what a flight holds once it runs its work: its own copies
// of the Get's work, of its plan's lookup and of its fill, the buffer of
// the fill's encoded value, and the state of its load's context. A flight
// that settles with its owner's lookup (a hit on a remote store) never
// needs them, and is allocated without; one that will load is allocated
// with them, in one allocation (see group.newFlight).
//
// A reusable flight keeps its buffer and its load's state (once the load
// is done with it, see Cache.doneLoading) for its next use: a miss then
// takes neither from a pool. Any other flight gives them back to their
// pools once its fill has answered (see recycle and doneLoading).
type flightWork[T any] struct {
	w    work[T]
	lk   reply
	fill store.Fill
	buf  *[]byte
	ls   *loadState
}

// flightWithWork is a flight allocated with its flightWork, which stay
// together for the flight's life and its reuses.
type flightWithWork[T any] struct {
	f flight[T]
	w flightWork[T]
}

// working makes sure f has its flightWork. Only the goroutine that runs
// f's work calls it, before that work reads any of it.
func (f *flight[T]) working() {
	if f.flightWork == nil {
		f.flightWork = new(flightWork[T])
	}
}

// recycle gives back the buffer of fill's encoded value, once the store
// has answered fill (it keeps no Value), and drops fill's reference to it.
// A reusable flight keeps the buffer for its next use.
func (f *flight[T]) recycle(fill *store.Fill) {
	fill.Value = nil
	if !f.reusable {
		recycle(f.buf)
		f.buf = nil
	}
}

type flightStage uint8

const (
	stageIdle   flightStage = iota // looking up, or waiting for a lease holder
	stageActive                    // loading (with the lease, if lease is set), in sh.active
	stageOut                       // finished or doomed: never active again
)

// loading records that f's load runs with scope sc, holding the lease
// token (or none, if zero), and puts f where an invalidation can doom it.
func (f *flight[T]) loading(token uint64, sc *scope) {
	f.lease.Store(token)
	sc.fl = f
	f.sh.mu.Lock()
	f.sc, f.scGen = sc, sc.gen // the owner's own load: no write races the read of gen
	if f.stage == stageIdle {
		f.stage = stageActive
		f.sh.link(f)
		f.sh.n.Add(1)
	}
	f.sh.mu.Unlock()
}

// privatize releases the callers waiting on f, and the key's lease, once
// its load has made its result private (see Private): they would not take
// the result anyway, and the load may run for a long time. f leaves the
// map, so that later callers start flights of their own.
func (f *flight[T]) privatize() {
	s := f.sh
	s.mu.Lock()
	if f.private {
		s.mu.Unlock()
		return
	}
	f.private = true
	s.forget(f)
	if f.priv != nil {
		close(f.priv)
	}
	s.mu.Unlock()
	if t := f.lease.Swap(0); t != 0 {
		l := s.g.l
		release := func() { l.c.release(context.Background(), f.key, t, l.st) }
		if !l.c.spawn(release) {
			release()
		}
	}
}

// closed is the done channel of every flight that finished before anyone
// waited for it.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// signals returns the channel closed when f has finished (and f.out may
// be read). For a joiner (a caller that did not start f) it also returns
// the channel closed when f's load makes its result private, or gone if
// it already has: the joiner then runs its own load.
func (f *flight[T]) signals(joiner bool) (done, private <-chan struct{}, gone bool) {
	s := f.sh
	s.mu.Lock()
	defer s.mu.Unlock()
	if joiner {
		if f.private {
			return nil, nil, true
		}
		if f.priv == nil {
			f.priv = make(chan struct{})
		}
		private = f.priv
	}
	if f.finished {
		return closed, private, false
	}
	if f.done == nil {
		f.done = make(chan struct{})
	}
	return f.done, private, false
}

// retire takes f out of its shard's active list for good. The caller
// holds f.sh.mu.
func (f *flight[T]) retire() {
	if f.stage == stageActive {
		f.sh.unlink(f)
		f.sh.n.Add(-1)
	}
	f.stage = stageOut
}

// forget takes f out of s's map, if it is there. The caller holds s.mu.
func (s *shard[T]) forget(f *flight[T]) {
	if f.inMap {
		delete(s.m, f.key)
		f.inMap = false
	}
}

// link puts f at the head of s's active list. The caller holds s.mu.
func (s *shard[T]) link(f *flight[T]) {
	f.prev, f.next = nil, s.active
	if s.active != nil {
		s.active.prev = f
	}
	s.active = f
}

// unlink takes f, which is in s's active list, out of it. The caller holds
// s.mu.
func (s *shard[T]) unlink(f *flight[T]) {
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		s.active = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	}
	f.prev, f.next = nil, nil
}

// knows reports whether f's result is known to carry one of tags.
func (f *flight[T]) knows(tags []string) bool {
	for _, t := range tags {
		if slices.Contains(f.tags, t) {
			return true
		}
	}
	if sc := f.sc; sc != nil {
		if !sc.lockAt(f.scGen) {
			return false // the load is over, and holds no lease
		}
		defer sc.mu.Unlock()
		for _, t := range tags {
			if slices.Contains(sc.tags, t) {
				return true
			}
		}
	}
	return false
}

// begin marks the start of a store read, load or fill and returns its mark:
// a number above the mark clock's reading by any caller that began
// before, and at most that of any caller that begins after.
func (f *flight[T]) begin() uint64 { return f.clock.Add(1) }

// outcome is a flight's result with its provenance.
type outcome[T any] struct {
	val    T
	err    error
	status Status
	age    time.Duration

	// fenced: the outcome is data (a value, or a not-found) and obeys the
	// join rule; a plain load error is not.
	fenced  bool
	ticket  store.Ticket // load: t0; store read: the entry's ticket
	started uint64       // mark of the read or load that produced val
	filled  uint64       // mark of the fill, if accepted; 0 otherwise
	gen     uint64       // pending-invalidation count when the read or load began
	loadErr error        // the error a stale-if-error value stands in for
	fillErr error

	// What a load that read this outcome with a nested Get depends on:
	// for a store read, the entry, read at store-clock instant now, with
	// the lookup sent at local instant at; for a load, the fill it made
	// (sent or not) at local instant at.
	entry   *store.Entry
	made    *store.Fill
	now, at time.Time
	// private: only the caller that ran the load may take it; noStore: the
	// load kept it out of the store.
	private, noStore bool
	// followed: the outcome is another flight's, taken by a flight that
	// waited for its lease (see work.follow): its owner did not run the
	// load, and takes it as a joiner does. retry: the flight that waited
	// could take none; its callers, the owner too, start over.
	followed, retry bool
}

// input returns what a load that read o (of key) with a nested Get
// depends on.
func (o *outcome[T]) input(key string) *input {
	var in input
	switch {
	case o.entry != nil:
		in = entryInput(o.entry, o.now, o.at, o.status)
	case o.made != nil:
		f := o.made
		in = input{
			tags: f.Tags, noStore: o.noStore, private: o.private,
			fresh: o.at.Add(f.TTL), stale: o.at.Add(f.TTL + f.Stale), errorEnd: o.at.Add(f.TTL + f.StaleIfError),
		}
	}
	in.key = key
	return &in
}

// takeable reports whether a caller that began at mark began (that knows
// its own ticket j if known, and began at pending-invalidation count gen)
// may take o.
func (o *outcome[T]) takeable(began uint64, j store.Ticket, known bool, gen uint64) bool {
	switch {
	case !o.fenced || hooks.JoinOldFlights.Load():
		return true // an error carries no old data
	case o.started > began:
		return true
	case o.filled > began:
		return true
	case known && o.ticket.AtLeast(j) && o.gen >= gen:
		return true
	}
	return false
}

const flightShards = 64

// group holds the flights of one Loader, sharded by key.
type group[T any] struct {
	l *Loader[T] // the group's Loader
	// clock gives the marks of every flight of the Loader, so that a
	// caller's start and any flight's reads, loads and fills are on one
	// scale: a caller notes clock's reading when it begins, and an
	// operation whose mark is above it began after the caller.
	clock  atomic.Uint64
	seed   maphash.Seed
	shards [flightShards]shard[T]
	// pool holds flights with their work that no one holds any more (see
	// reuse): a miss then writes to memory that is in the CPU's caches
	// rather than to a new kilobyte, and leaves the GC nothing to collect.
	pool sync.Pool
}

type shard[T any] struct {
	g  *group[T]
	mu sync.Mutex
	// m holds the flights callers join, one per key.
	m map[string]*flight[T]
	// active heads the list of the flights that hold a lease or run a
	// load, joinable or not (see flightStage), linked through their prev
	// and next: a flight joins and leaves it without a map's hashing.
	active *flight[T]
	// n counts them, so that an invalidation passes a shard with none
	// without locking it. Written under mu.
	n atomic.Int32
	// A shard per cache line: the shards of two keys are written by
	// different cores.
	_ [64 - 8 - 8 - 8 - 8 - 4]byte
}

func newGroup[T any]() *group[T] {
	g := &group[T]{seed: maphash.MakeSeed()}
	for i := range g.shards {
		g.shards[i].g = g
		g.shards[i].m = make(map[string]*flight[T])
	}
	return g
}

func (g *group[T]) shard(key string) *shard[T] {
	return &g.shards[maphash.String(g.seed, key)%flightShards]
}

// joinOrStart returns the flight in progress for key, or registers a new
// flight that the caller owns. A caller that may serve stale values passes
// skipBackground: a background flight then is neither joined nor replaced
// (f is nil). work says whether a new flight will surely run its work
// (see newFlight); one that may settle with its owner's lookup gets its
// flightWork when it needs it.
func (g *group[T]) joinOrStart(key string, tags []string, skipBackground, work bool) (f *flight[T], owner bool) {
	s := g.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.m[key]; ok {
		if f.background && skipBackground {
			return nil, false
		}
		f.joins++
		return f, false
	}
	f = g.newFlight(key, tags, work)
	s.m[key], f.inMap = f, true
	return f, true
}

// start registers a new flight for key, for a caller that holds the key's
// lease. A flight registered for key that polls for the lease holder's
// fill (its holder may be this one, seen between its lookup and this
// registration) is replaced, and follows the new flight (see poll). Any
// other registered flight stays, and the new one runs unregistered: the
// lease makes it the one load, and the other flight will see its fill.
func (g *group[T]) start(key string, tags []string, background bool) *flight[T] {
	f := g.newFlight(key, tags, true)
	f.background = background
	s := f.sh
	s.mu.Lock()
	switch old, ok := s.m[key]; {
	case !ok:
		s.m[key], f.inMap = f, true
	case old.polling:
		s.m[key], f.inMap, old.inMap = f, true, false
		old.follow, old.polling = f, false
		f.joins++
		if old.nudge != nil {
			close(old.nudge)
		}
	}
	s.mu.Unlock()
	return f
}

// poll marks f as polling for a lease holder's fill, or not. Marking it
// returns the channel that is closed if a flight of this process that
// holds the lease takes f's place meanwhile (nil if one already has);
// unmarking returns that flight, if one did.
func (f *flight[T]) poll(on bool) (nudge <-chan struct{}, follow *flight[T]) {
	s := f.sh
	s.mu.Lock()
	defer s.mu.Unlock()
	if !on {
		f.polling = false
		return nil, f.follow
	}
	if f.follow != nil || f.stage == stageOut {
		return nil, f.follow
	}
	f.polling = true
	if f.nudge == nil {
		f.nudge = make(chan struct{})
	}
	return f.nudge, nil
}

// unregistered returns a flight for key that no caller can join: the
// load of a caller that may not share another's (see Private).
func (g *group[T]) unregistered(key string, tags []string) *flight[T] {
	return g.newFlight(key, tags, true)
}

// newFlight returns a flight for key, with its flightWork if work (the
// flight will run a load or wait), in the same allocation.
func (g *group[T]) newFlight(key string, tags []string, work bool) *flight[T] {
	if !work {
		return &flight[T]{key: key, clock: &g.clock, sh: g.shard(key), tags: tags}
	}
	f, _ := g.pool.Get().(*flight[T])
	if f == nil {
		both := new(flightWithWork[T])
		f = &both.f
		f.flightWork = &both.w
	}
	f.key, f.clock, f.sh, f.tags = key, &g.clock, g.shard(key), tags
	return f
}

// reuse puts f back in the pool, if f's owner (the caller) was the only
// one ever to hold it and is done with it and its outcome: f was
// reusable (and so started with its flightWork), it finished (on the
// owner's goroutine, or on a goroutine of the Cache that touches f no
// more once it has), the owner took its outcome
// rather than give up on it, and no caller or flight joined it, which no
// one can do any more (it left the map when it finished). Its load's
// context and scope, which the load may have kept, are not part of it,
// and no longer point to it (see scope.end). Any other flight is left to
// the GC.
func (g *group[T]) reuse(f *flight[T]) {
	if !f.reusable {
		return
	}
	w := f.flightWork
	buf, ls := w.buf, w.ls
	if !f.finished || f.joins != 0 || f.private {
		// Left to the collector; its buffer and its load's state, which
		// only its own work used, go back to their pools.
		w.buf, w.ls = nil, nil
		recycle(buf)
		if ls != nil {
			g.l.c.loadStates.Put(ls)
		}
		return
	}
	if buf != nil && cap(*buf) > maxRecycled {
		buf = nil
	}
	*w = flightWork[T]{buf: buf, ls: ls}
	*f = flight[T]{flightWork: w}
	g.pool.Put(f)
}

// detach dooms the flights that inv dooms: those that hold a lease or run
// a load (so began before inv returned, and cannot fill) of a key inv
// names, or known to carry one of its tags, whether callers can join them
// or not. It unregisters them, so that callers that begin after it start
// a new flight instead of waiting for a load that cannot serve them (those
// already waiting keep theirs), and hands their leases, taken from them,
// to doomed, for the caller to give back. A flight that only looks up, or
// waits for a lease holder, is left alone: the load it may start begins
// after inv, and serves callers that join it.
func (g *group[T]) detach(inv *store.Invalidation, doomed func(key string, lease uint64)) {
	drop := func(s *shard[T], f *flight[T]) {
		s.forget(f)
		f.retire()
		if t := f.lease.Swap(0); t != 0 {
			doomed(f.key, t)
		}
	}
	for _, k := range inv.Keys {
		s := g.shard(k)
		if s.n.Load() == 0 {
			continue
		}
		s.mu.Lock()
		for f := s.active; f != nil; {
			next := f.next // drop unlinks f
			if f.key == k {
				drop(s, f)
			}
			f = next
		}
		s.mu.Unlock()
	}
	if len(inv.Tags) == 0 {
		return
	}
	for i := range g.shards {
		s := &g.shards[i]
		if s.n.Load() == 0 {
			continue
		}
		s.mu.Lock()
		for f := s.active; f != nil; {
			next := f.next // drop unlinks f
			if f.knows(inv.Tags) {
				drop(s, f)
			}
			f = next
		}
		s.mu.Unlock()
	}
}

// finish sets f's outcome to out and publishes f.
func (g *group[T]) finish(key string, f *flight[T], out outcome[T]) { g.publish(key, f, &out) }

// publish sets f's outcome to *out, unless out is nil (f.out holds it
// already, written by the flight itself), removes f from the map and wakes
// its callers. The removal comes first: a caller that sees done closed and
// retries never finds f again.
func (g *group[T]) publish(key string, f *flight[T], out *outcome[T]) {
	s := f.sh
	s.mu.Lock()
	s.forget(f)
	f.retire()
	if out != nil {
		f.out = *out
	}
	f.finished = true
	done := f.done
	s.mu.Unlock()
	if done != nil {
		close(done)
	}
}
