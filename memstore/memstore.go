// Package memstore is the in-process [store.Store]: entries live in
// github.com/allegro/bigcache/v3 within a memory bound, and leases and
// version numbers live beside them behind striped locks (the leases of a
// stripe in a small array, then a map; versions in a map). The stripe
// lock of a key is what makes each Store call atomic.
//
// # Use
//
//	s, err := memstore.New(memstore.MaxBytes(64 << 20))
//	if err != nil { ... }
//	defer s.Close() // the Cache does not own its store
//	c, err := paddock.New(s)
//
// Options ([MaxBytes], [MaxEntryBytes], [Shards], [LifeWindow], [Clock],
// [MaxVersions], [CountEvictions]) have the defaults written on each of
// them. Beside the [store.Store] methods, a Store counts entries that
// failed to decode ([Store.Corrupt]) and, with [CountEvictions], its
// evictions per namespace ([Store.Evictions], which implements
// [store.Stats]), and implements [store.Batcher] ([Store.LookupMany],
// [Store.FillMany]) by making each key's call in turn.
//
// # How the protocol is kept
//
// The store has one sequence seq and an epoch, a random non-zero number
// chosen by New; a ticket is {epoch, seq}. Keys hash to one of 256 stripes,
// each with a lock, the key's leases and the key's versions; tags hash to
// one of 256 shards, each with a lock and the tags' versions. Locks are
// always taken stripes first, then tag shards, each in ascending order, so
// that calls that lock several never deadlock.
//
//   - Lookup holds the key's stripe (the write lock for a lookup that may
//     take the lease, as every Get's may; for one that may not, a read lock
//     to serve a hit, the write lock to drop a dead entry) and reads the
//     versions of the entry's tags.
//   - Fill holds the key's stripe and read locks on the shards of its tags
//     from the version check to the write, so no invalidation falls
//     between them.
//   - Invalidate holds the stripes of its keys and the shards of its tags
//     while it takes s = ++seq and writes the versions. It never scans
//     entries: an entry's tags are checked against the tag versions when
//     it is read. It drops the lease of each key it names, hard or soft:
//     the load that holds it began before s and its fill will be refused,
//     so the next lookup that asks for the lease is granted it at once
//     rather than waiting for a doomed load. The doomed holder's Fill and
//     Release then find another token (or none) holding the lease and
//     leave it alone. A tag names no lease: the leases of a tag's entries
//     stay, and their loads' fills are refused.
//
// A soft invalidation of a key rewrites the entry with FreshUntil moved to
// now (its ticket unchanged), so that it is stale until its StaleUntil,
// exactly as a soft-invalidated tag makes it. Comparing the key's version
// with the entry's ticket would do the same, but the version of a key can
// be raised by an overflow of the version map (see [MaxVersions]), which
// would then turn good entries stale.
package memstore

import (
	"context"
	"fmt"
	"hash/maphash"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/allegro/bigcache/v3"
	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/internal/localclock"
	"github.com/paddockcache/paddock/store"
)

const (
	numStripes   = 256
	numTagShards = 256
)

// A Store is an in-process [store.Store] with a memory bound. Create one
// with [New]; it is safe for concurrent use, and Close releases it.
//
// Store calls never block on I/O: they take locks, work in memory and
// return, so they ignore their context.
type Store struct {
	cache *bigcache.BigCache
	// clock is the Clock option's, nil by default: then the store's time
	// is born plus the monotonic time since (see now).
	clock    func() time.Time
	born     time.Time
	maxEntry int
	// shards is the number of bigcache shards, and shardBytes the size of
	// one (see fits).
	shards, shardBytes int

	seed  maphash.Seed
	epoch atomic.Uint64
	seq   atomic.Uint64

	stripes [numStripes]stripe
	tags    [numTagShards]tagShard

	corrupt atomic.Uint64
	closed  atomic.Bool

	// subs are the subscribers of Subscribe, copied on write.
	subsMu sync.Mutex
	subs   atomic.Pointer[[]*subscriber]

	evictMu   sync.Mutex
	evictions map[string]uint64
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Stats    = (*Store)(nil)
	_ store.Batcher  = (*Store)(nil)
	_ store.Notifier = (*Store)(nil)
	_ store.Waker    = (*Store)(nil)
)

type subscriber struct{ f func(keys, tags []string) }

// Subscribe implements [store.Notifier]: f hears of every Invalidate and
// Set fill of this store, from any Cache, before the call returns.
func (s *Store) Subscribe(f func(keys, tags []string)) (cancel func()) {
	sub := &subscriber{f: f}
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	var subs []*subscriber
	if old := s.subs.Load(); old != nil {
		subs = append(subs, *old...)
	}
	subs = append(subs, sub)
	s.subs.Store(&subs)
	return func() {
		s.subsMu.Lock()
		defer s.subsMu.Unlock()
		old := s.subs.Load()
		if old == nil {
			return
		}
		next := slices.DeleteFunc(slices.Clone(*old), func(x *subscriber) bool { return x == sub })
		s.subs.Store(&next)
	}
}

// notify tells the subscribers of a change.
func (s *Store) notify(keys, tags []string) {
	if subs := s.subs.Load(); subs != nil {
		for _, sub := range *subs {
			sub.f(keys, tags)
		}
	}
}

// stripe holds what the store knows about the keys that hash to it. Its
// lock also guards those keys' entries in bigcache.
type stripe struct {
	mu     sync.RWMutex
	leases leaseTable
	// sweepAt is the number of leases at which the next grant first drops
	// the expired ones (leases whose holders never filled or released).
	sweepAt  int
	versions versions
	// watches holds, per key, the channels of the callers waiting for
	// another's lease on it (see Watch), closed by the key's next fill,
	// release or invalidation. Made on first use.
	watches map[string][]chan struct{}
}

type lease struct {
	token uint64
	until time.Time
}

// leaseTable holds the leases of a stripe's keys. A stripe holds few at a
// time (one per key of it being loaded, and 256 stripes share the keys),
// so the first sit in a small array that a lookup scans, which costs a
// miss less than a map's insert and delete; more spill into a map.
type leaseTable struct {
	n    int
	few  [4]keyLease
	more map[string]lease
}

type keyLease struct {
	key string
	lease
}

// index returns where key's lease is in few, or -1.
func (t *leaseTable) index(key string) int {
	for i := range t.n {
		if t.few[i].key == key {
			return i
		}
	}
	return -1
}

// drop removes few[i], moving the last lease of few into its place.
func (t *leaseTable) drop(i int) {
	t.n--
	t.few[i] = t.few[t.n]
	t.few[t.n] = keyLease{}
}

func (t *leaseTable) get(key string) (lease, bool) {
	if i := t.index(key); i >= 0 {
		return t.few[i].lease, true
	}
	if len(t.more) == 0 {
		return lease{}, false
	}
	l, ok := t.more[key]
	return l, ok
}

func (t *leaseTable) set(key string, l lease) {
	if i := t.index(key); i >= 0 {
		t.few[i].lease = l
		return
	}
	if _, ok := t.more[key]; !ok && t.n < len(t.few) {
		t.few[t.n] = keyLease{key, l}
		t.n++
		return
	}
	if t.more == nil {
		t.more = make(map[string]lease)
	}
	t.more[key] = l
}

func (t *leaseTable) del(key string) {
	if i := t.index(key); i >= 0 {
		t.drop(i)
		return
	}
	delete(t.more, key)
}

func (t *leaseTable) len() int { return t.n + len(t.more) }

// sweep drops the leases that expired by now.
func (t *leaseTable) sweep(now time.Time) {
	for i := 0; i < t.n; {
		if now.Before(t.few[i].until) {
			i++
		} else {
			t.drop(i) // and look at the lease moved into i
		}
	}
	for k, l := range t.more {
		if !now.Before(l.until) {
			delete(t.more, k)
		}
	}
}

func (t *leaseTable) clear() { *t = leaseTable{} }

// versions remembers at most max versions. When it would hold more, it
// forgets them all and keeps their maximum as floor: the version of every
// name it does not hold. Versions only grow, so floor is never below the
// version it stands for.
type versions struct {
	m     map[string]uint64
	floor uint64
	top   uint64 // the largest version in m
	max   int
}

func (v *versions) get(name string) uint64 { return max(v.m[name], v.floor) }

func (v *versions) set(name string, s uint64) {
	if _, ok := v.m[name]; !ok && len(v.m) >= v.max {
		v.floor = max(v.floor, v.top, s)
		clear(v.m)
		return
	}
	v.m[name] = max(v.m[name], s)
	v.top = max(v.top, s)
}

func (v *versions) reset() {
	clear(v.m)
	v.floor, v.top = 0, 0
}

// tagShard holds the versions of the tags that hash to it. A tag's soft
// version is the last invalidation of it, soft or hard; its hard version
// the last hard one. Each has its own floor, so an overflow of soft
// versions never makes entries read as hard-invalidated.
type tagShard struct {
	mu   sync.RWMutex
	soft versions
	hard versions
}

// New returns an empty store configured by opts. A bad option gives an
// error wrapping [store.ErrInvalidOption].
func New(opts ...Option) (*Store, error) {
	c := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, invalid("nil Option")
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if err := c.finish(); err != nil {
		return nil, err
	}
	s := &Store{
		clock:      c.clock,
		born:       time.Now(),
		maxEntry:   c.maxEntryBytes,
		shards:     c.shards,
		shardBytes: c.shardBytes(c.shards),
		seed:       maphash.MakeSeed(),
		evictions:  make(map[string]uint64),
	}
	s.epoch.Store(newEpoch(0))
	perStripe := (c.maxVersions + numStripes - 1) / numStripes
	for i := range s.stripes {
		s.stripes[i].versions = versions{m: make(map[string]uint64), max: perStripe}
	}
	perShard := (c.maxVersions + numTagShards - 1) / numTagShards
	for i := range s.tags {
		s.tags[i].soft = versions{m: make(map[string]uint64), max: perShard}
		s.tags[i].hard = versions{m: make(map[string]uint64), max: perShard}
	}
	cache, err := bigcache.New(context.Background(), c.bigcache(s.evicted))
	if err != nil {
		return nil, fmt.Errorf("memstore: %w: bigcache: %w", store.ErrInvalidOption, err)
	}
	s.cache = cache
	return s, nil
}

// bigcache is the configuration of the store's bigcache, whose evictions
// are counted with evicted if c counts them.
func (c *config) bigcache(evicted func(key string)) bigcache.Config {
	cfg := bigcache.Config{
		Shards:     c.shards,
		LifeWindow: c.lifeWindow,
		// bigcache has a one-second resolution; a cleanup a minute is
		// cheap (each shard looks at its oldest entries only).
		CleanWindow:      min(max(c.lifeWindow/2, time.Second), time.Minute),
		MaxEntrySize:     min(c.maxEntryBytes, 1024), // initial sizing only
		HardMaxCacheSize: c.hardMaxMiB(),
		Hasher:           hasher{seed: maphash.MakeSeed()},
	}
	if c.countEvicted {
		// bigcache copies the evicted entry and its key for the callback,
		// which needs only the key: hence the option (see CountEvictions).
		cfg.OnRemoveWithReason = func(key string, _ []byte, _ bigcache.RemoveReason) {
			evicted(key)
		}
		cfg = cfg.OnRemoveFilterSet(bigcache.Expired, bigcache.NoSpace)
	}
	return cfg
}

// hasher is bigcache's key hash. maphash is faster than bigcache's FNV
// and, with a random seed, keeps keys that collide (and so push each
// other out) from being chosen from outside.
type hasher struct{ seed maphash.Seed }

func (h hasher) Sum64(key string) uint64 { return maphash.String(h.seed, key) }

func newEpoch(old uint64) uint64 {
	for {
		if e := rand.Uint64(); e != 0 && e != old {
			return e
		}
	}
}

// LocalClock reports whether the store reads the process's monotonic
// clock (it does unless it was given a Clock): the instants of its
// answers are then instants of the Cache's own clock, which reads the
// clock no more around a store call than it has to.
func (s *Store) LocalClock() bool { return s.clock == nil }

// now reads the store's clock: the Clock option's, or by default the
// instant the store was made plus the monotonic time since, which reads
// one clock where time.Now reads two. Its instants carry the wall time
// that the entries' envelopes keep, and compare by their monotonic
// readings, as time.Now's do.
func (s *Store) now() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return s.born.Add(time.Since(s.born))
}

func (s *Store) stripeOf(key string) int {
	return int(maphash.String(s.seed, key) % numStripes)
}

func (s *Store) shardOf(tag string) int {
	// A different function from stripeOf, so that a key and a tag of the
	// same name do not always meet in the same slots.
	return int(maphash.String(s.seed, "\x00tag\x00"+tag) % numTagShards)
}

var errClosed = fmt.Errorf("memstore: %w", store.ErrClosed)

// Lookup implements [store.Store]. It judges the key's entry by the
// store's clock:
//
//   - no entry, an entry of another epoch or that fails to decode, an entry
//     with a tag hard-invalidated after its ticket, or past its last window:
//     State Miss and no Entry (the dead entry is dropped; bytes that fail to
//     decode are counted in [Store.Corrupt] and reported by Corrupt, by the
//     lookup that drops them);
//   - before FreshUntil and not soft-invalidated: Fresh;
//   - soft-invalidated (key or tag) or past FreshUntil, before StaleUntil:
//     Stale;
//   - past StaleUntil, before ErrorUntil: State Miss with the Entry, for
//     stale-if-error.
//
// In every case but a Fresh entry not due for refresh (req.Refresh, or
// req.Early and the entry's RefreshAt has come: [store.Entry.DueEarly]), a caller
// with a non-zero req.Lease is granted the key's lease if no one holds it
// (or if it holds it itself: the lease is renewed), and is told Held
// otherwise. Held reports a live lease of another token whatever the
// verdict, for read-only lookups and fresh entries too. A non-zero
// req.Lease needs a positive req.LeaseTTL.
func (s *Store) Lookup(_ context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	if s.closed.Load() {
		return store.Lookup{}, errClosed
	}
	if req.Lease != 0 && req.LeaseTTL <= 0 {
		return store.Lookup{}, invalid("Lookup: lease TTL %v is not positive", req.LeaseTTL)
	}
	st := &s.stripes[s.stripeOf(key)]
	if req.Lease != 0 {
		// A lookup that may take the lease (every Get's) is decided under
		// the write lock at once: it takes the lease on a miss, the
		// common case, and the read lock first would cost a second lock
		// and a second pass. Readers of one stripe then take turns, which
		// with 256 stripes is rare, and costs about what a reader's
		// atomic update of a shared lock costs anyway.
		st.mu.Lock()
		res, _ := s.lookup(st, key, req, true)
		st.mu.Unlock()
		return res, nil
	}
	// A lookup that takes no lease: a read lock serves hits. Dropping an
	// entry needs the write lock, and everything is decided again under
	// it, since the entry and the lease may have changed in between.
	st.mu.RLock()
	res, write := s.lookup(st, key, req, false)
	st.mu.RUnlock()
	if !write {
		return res, nil
	}
	st.mu.Lock()
	res, _ = s.lookup(st, key, req, true)
	st.mu.Unlock()
	return res, nil
}

// lookup decides a Lookup with st locked: exclusively if excl, else for
// reading, in which case it changes nothing and reports whether it needs
// the write lock instead.
func (s *Store) lookup(st *stripe, key string, req store.LookupRequest, excl bool) (res store.Lookup, needWrite bool) {
	now := s.now()
	epoch := s.epoch.Load()
	res = store.Lookup{Now: now, Ticket: store.Ticket{Epoch: epoch, Seq: s.seq.Load()}}

	e, found, corrupt := s.read(key, epoch, excl)
	if found && e == nil {
		// Bytes that are corrupt or of another epoch.
		if !excl {
			return res, true
		}
		_ = s.cache.Delete(key)
		res.Corrupt = corrupt
	}
	wantLease := true
	if e != nil {
		hard, soft := s.tagState(e)
		switch {
		case hard || !now.Before(e.Expires()):
			if !excl {
				return res, true
			}
			_ = s.cache.Delete(key)
		case now.Before(e.FreshUntil) && !soft:
			res.Entry, res.State = e, store.StateFresh
			wantLease = req.Refresh || req.Early && e.DueEarly(now)
		case now.Before(e.StaleUntil):
			res.Entry, res.State = e, store.StateStale
		default: // inside the error window
			res.Entry, res.State = e, store.StateMiss
		}
	}

	return res, s.lease(st, key, req, wantLease, now, excl, &res)
}

// lease decides the lease part of a lookup of key at now into res: held
// by another, or granted if wantLease (with st locked exclusively if excl;
// otherwise it changes nothing and reports that it needs the write lock).
func (s *Store) lease(st *stripe, key string, req store.LookupRequest, wantLease bool, now time.Time, excl bool, res *store.Lookup) (needWrite bool) {
	l, leased := st.leases.get(key)
	live := leased && now.Before(l.until)
	switch {
	case live && l.token != req.Lease:
		res.Held = true
	case wantLease && req.Lease != 0:
		if !excl {
			return true
		}
		st.grant(key, lease{token: req.Lease, until: now.Add(req.LeaseTTL)}, now)
		res.Lease = true
	}
	return false
}

// read returns the entry under key if there is one of this epoch that
// decodes. found reports whether there were bytes at all; found with a nil
// entry means bytes to drop: of another epoch, or corrupt (bytes that do
// not decode), which are counted when count is set (the caller then drops
// them).
func (s *Store) read(key string, epoch uint64, count bool) (e *store.Entry, found, corrupt bool) {
	b, err := s.cache.Get(key)
	if err != nil {
		// bigcache.ErrEntryNotFound, or a read of an index that the
		// queue no longer holds: a miss either way.
		return nil, false, false
	}
	e = new(store.Entry)
	if err := e.UnmarshalBinary(b); err != nil {
		if count {
			s.corrupt.Add(1)
		}
		return nil, true, true
	}
	if e.Ticket.Epoch != epoch {
		return nil, true, false
	}
	if e.Negative {
		e.Value = nil
	}
	return e, true, false
}

// tagState reports whether a tag of e was hard- or soft-invalidated after
// e's ticket. The caller holds e's stripe; each tag shard is read-locked in
// turn (one at a time, so the lock order holds).
func (s *Store) tagState(e *store.Entry) (hard, soft bool) {
	for _, tag := range e.Tags {
		sh := &s.tags[s.shardOf(tag)]
		sh.mu.RLock()
		h, v := sh.hard.get(tag), sh.soft.get(tag)
		sh.mu.RUnlock()
		if h > e.Ticket.Seq {
			return true, true
		}
		if v > e.Ticket.Seq {
			soft = true
		}
	}
	return false, soft
}

// grant gives the lease on key, first dropping expired leases if the
// stripe holds many: a holder that died leaves its lease behind.
func (st *stripe) grant(key string, l lease, now time.Time) {
	if st.leases.len() >= st.sweepAt {
		st.leases.sweep(now)
		st.sweepAt = max(2*st.leases.len(), 64)
	}
	st.leases.set(key, l)
}

func (st *stripe) release(key string, token uint64) {
	if l, ok := st.leases.get(key); ok && l.token == token {
		st.leases.del(key)
	}
	st.wake(key)
}

// wake closes the channels of the callers watching key. The caller holds
// st exclusively.
func (st *stripe) wake(key string) {
	if len(st.watches) == 0 {
		return
	}
	for _, ch := range st.watches[key] {
		close(ch)
	}
	delete(st.watches, key)
}

// Watch implements [store.Waker]: the channel is closed by the next Fill
// or Release of key, or an Invalidate that names it (which breaks its
// lease), whoever makes it.
func (s *Store) Watch(key string) (wake <-chan struct{}, stop func()) {
	st := &s.stripes[s.stripeOf(key)]
	ch := make(chan struct{})
	st.mu.Lock()
	if st.watches == nil {
		st.watches = make(map[string][]chan struct{})
	}
	st.watches[key] = append(st.watches[key], ch)
	st.mu.Unlock()
	return ch, func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		chs := st.watches[key]
		for i, c := range chs {
			if c == ch {
				chs = append(chs[:i], chs[i+1:]...)
				break
			}
		}
		if len(chs) == 0 {
			delete(st.watches, key)
		} else {
			st.watches[key] = chs
		}
	}
}

// Fill implements [store.Store]. It refuses (false, nil) a fill whose
// ticket is of another epoch, older than the key's version or the version
// of any of f.Tags, or newer than any ticket the store has issued; a
// refused Set fill also drops the key's entry unless the entry's ticket is
// newer than the Set's. Otherwise it stores [store.NewEntry] with the
// fill's ticket, or for a Set fill with a new ticket s = ++seq, which also
// becomes the key's version. An accepted fill whose entry would already be
// past its last window stores nothing and drops the key's entry (a Set
// still advances the version).
//
// An entry larger than MaxEntryBytes (or, with its key, than a shard can
// take) is not stored, and Fill returns an error wrapping
// [store.ErrTooLarge]; a Set fill then still drops the key's entry and
// advances its version, as an invalidation of the key would. A key longer
// than 65517 bytes, or a negative fill with a value, is an error wrapping
// [store.ErrInvalidOption], whether or not the fence would refuse the
// fill. (Lookup and Invalidate take such a key: it never has an entry.)
//
// Whatever the outcome, the lease f.Lease on key is released if it is
// still held by that token.
func (s *Store) Fill(_ context.Context, key string, f *store.Fill) (accepted bool, err error) {
	return s.fillAt(key, f, time.Time{})
}

// FillAt is Fill at instant at of the store's clock, for a Cache that has
// just read the clock (see internal/localclock): a store with a Clock of
// its own, and a Set, read the clock as Fill does. Other callers cannot
// make an at.
func (s *Store) FillAt(_ context.Context, key string, f *store.Fill, at localclock.At) (accepted bool, err error) {
	now := at.T
	if !s.LocalClock() || f != nil && f.Set {
		now = time.Time{}
	}
	return s.fillAt(key, f, now)
}

// fillAt is Fill and FillAt: it checks the call, fills at now (zero: as
// the store's clock reads) and tells the subscribers of a Set.
func (s *Store) fillAt(key string, f *store.Fill, now time.Time) (accepted bool, err error) {
	if s.closed.Load() {
		return false, errClosed
	}
	if f == nil {
		return false, invalid("Fill: nil *Fill")
	}
	accepted, err = s.fill(key, f, now)
	if f.Set {
		s.notify([]string{key}, nil) // the key's entry was replaced or dropped
	}
	return accepted, err
}

// fill is Fill; now, unless zero, is the instant the store's clock reads.
func (s *Store) fill(key string, f *store.Fill, now time.Time) (accepted bool, err error) {
	st := &s.stripes[s.stripeOf(key)]
	st.mu.Lock()
	// Hold the shards of the fill's tags, read-locked, from the check to
	// the write. Without them a Set fill could interleave with an
	// InvalidateTags like this:
	//
	//	fill:       version(tag) = 4 <= ticket 5: accept
	//	invalidate: s = ++seq = 6; version(tag) = 6; return
	//	fill:       s = ++seq = 7; write the entry with ticket 7
	//
	// and the entry, newer than the invalidation by its ticket but older by
	// its value, would be served fresh. A plain fill would be hidden on
	// read by its ticket 5, but it would still report "accepted" after the
	// invalidation returned, and the Cache trusts that answer.
	shards := s.shardsOf(f.Tags)
	s.rlockShards(shards)
	// One defer, which the compiler open-codes (three, one of them
	// conditional, cost a miss more than the rest of fill's bookkeeping).
	defer s.fillDone(st, key, f.Lease, shards)
	if err := checkFill(key, f); err != nil {
		return false, err
	}
	if !s.admits(st, key, f) {
		if f.Set && !hooks.SetKeepsOld.Load() {
			s.dropPredating(key, f.Ticket)
		}
		return false, nil
	}
	if hooks.FillTagGap.Load() {
		s.fillGap(st, shards)
		now = time.Time{} // the gap may have taken any time
	}
	if now.IsZero() {
		now = s.now()
	}
	t := f.Ticket
	if f.Set {
		t.Seq = s.seq.Add(1)
	}
	bp := envelope()
	b, until, eerr := store.AppendFillEnvelope((*bp)[:0], f, t, now)
	var werr error
	if !now.Before(until) {
		_ = s.cache.Delete(key)
	} else if werr = s.write(st, key, b, eerr); werr != nil && f.Set {
		// A Set that cannot store its entry still replaces the key's:
		// it follows a write to the source of truth, so the old entry
		// goes, and the version advances below, as for an invalidation
		// of the key, so that no load that began before the Set fills
		// the value it replaced either.
		_ = s.cache.Delete(key)
	}
	putEnvelope(bp, b) // bigcache has copied it
	if f.Set {
		st.versions.set(key, t.Seq)
	}
	if werr != nil {
		return false, werr
	}
	return true, nil
}

// fillDone ends a fill of key under st and the tag shards: it gives the
// shards back, releases the fill's lease if it is still held by that
// token (a zero lease holds none) and wakes the key's watchers either way,
// and unlocks st.
func (s *Store) fillDone(st *stripe, key string, lease uint64, shards []int) {
	s.runlockShards(shards)
	if lease != 0 {
		st.release(key, lease) // and wakes the key's watchers
	} else {
		st.wake(key)
	}
	st.mu.Unlock()
}

// envelopes holds the buffers fills encode their envelopes in: bigcache
// copies an entry in, so a buffer serves fill after fill. One pool for
// every stripe rather than a buffer per stripe: a fill then writes its
// envelope to a buffer that the CPU's caches hold (the last fill's, on
// the same processor), where the buffers of 256 stripes, one written
// per fill, took a cache of their own to keep.
var envelopes sync.Pool

// maxEnvelopeBuf is the largest envelope buffer kept for another fill; a
// larger one is left to the collector.
const maxEnvelopeBuf = 64 << 10

// envelope returns a buffer from envelopes, for putEnvelope.
func envelope() *[]byte {
	if p, ok := envelopes.Get().(*[]byte); ok {
		return p
	}
	return new([]byte)
}

// putEnvelope gives back p, which b, appended to it, may have outgrown.
func putEnvelope(p *[]byte, b []byte) {
	if cap(b) <= maxEnvelopeBuf {
		*p = b[:0]
		envelopes.Put(p)
	}
}

// write stores the envelope b under key, or returns the error eerr of its
// encoding. The caller holds key's stripe st. An entry that is too large
// (or that did not encode) is an error wrapping [store.ErrTooLarge]; the
// key's old entry may stay.
func (s *Store) write(st *stripe, key string, b []byte, eerr error) error {
	if eerr != nil {
		return fmt.Errorf("memstore: Fill(%q): %w: %w", key, store.ErrTooLarge, eerr)
	}
	if len(b) > s.maxEntry {
		return fmt.Errorf("memstore: entry of %d bytes for %q, more than MaxEntryBytes %d: %w",
			len(b), key, s.maxEntry, store.ErrTooLarge)
	}
	if !fits(len(b)+len(key)+wrapOverhead, s.shardBytes) {
		return fmt.Errorf("memstore: entry of %d bytes with a key of %d bytes does not fit in a shard of %d bytes: %w",
			len(b), len(key), s.shardBytes, store.ErrTooLarge)
	}
	if err := s.cache.Set(key, b); err != nil {
		// Only "entry is bigger than max shard size", which fits rules
		// out. bigcache has already dropped the old entry.
		return fmt.Errorf("memstore: Fill(%q): %w: %w", key, store.ErrTooLarge, err)
	}
	return nil
}

// fillGap opens the race that Fill's comment writes out, for the property
// tests that check it is caught (see hooks.FillTagGap): it releases the
// tag shards after the check, yields, and takes them again for the write.
// If hooks.FillGap is set, it releases the key's stripe too and calls it
// with no lock held, so that the callback may make any store call; what it
// does lands between the check and the write. The callback is called only
// here: with FillTagGap off, never.
func (s *Store) fillGap(st *stripe, shards []int) {
	// Deferred, so that a callback that panics leaves the locks as Fill's
	// own defers expect them (unlocking an unlocked mutex is fatal).
	s.runlockShards(shards)
	defer s.rlockShards(shards)
	gap := hooks.FillGap.Load()
	if gap == nil {
		runtime.Gosched() // widen the gap for a racing invalidation
		return
	}
	st.mu.Unlock()
	defer st.mu.Lock()
	(*gap)()
}

func (s *Store) rlockShards(shards []int) {
	for _, i := range shards {
		s.tags[i].mu.RLock()
	}
}

func (s *Store) runlockShards(shards []int) {
	for _, i := range shards {
		s.tags[i].mu.RUnlock()
	}
}

// checkFill reports a fill that no store state could make valid, before
// the fence is checked, so that it is an error whether or not the fill
// would have been refused.
func checkFill(key string, f *store.Fill) error {
	if len(key) > maxKeyLen {
		return fmt.Errorf("memstore: key of %d bytes, more than %d: %w", len(key), maxKeyLen, store.ErrInvalidOption)
	}
	if f.Negative && len(f.Value) > 0 {
		return invalid("Fill(%q): a negative fill has a value", key)
	}
	return nil
}

// admits reports whether fill f of key passes the fence. The caller holds
// key's stripe and the shards of f.Tags.
//
// A ticket beyond the current seq was not issued by this store (seq only
// grows); it is refused too, since its entry would outrank invalidations
// still to come and escape the read-side tag check.
func (s *Store) admits(st *stripe, key string, f *store.Fill) bool {
	if f.Ticket.Epoch != s.epoch.Load() || f.Ticket.Seq > s.seq.Load() ||
		st.versions.get(key) > f.Ticket.Seq {
		return false
	}
	for _, tag := range f.Tags {
		if s.tags[s.shardOf(tag)].soft.get(tag) > f.Ticket.Seq {
			return false
		}
	}
	return true
}

// dropPredating drops key's entry after a Set with ticket t was refused.
// The Set followed a write to the source of truth, so an entry that may
// predate that write holds the value it replaced: left in place, it would
// be served (fresh, when the invalidation that refused the Set was of a tag
// only the new value carries). Only the ticket of the load that wrote an
// entry tells whether it began after t, and an entry written by a Set
// carries the Set's own, newer sequence number instead (two Sets of one
// ticket cannot be ordered by it), so every entry of t's epoch goes; an
// entry of this epoch when t is of another was written after t was taken,
// and stays. A miss is the price of never serving the replaced value. The
// caller holds key's stripe.
func (s *Store) dropPredating(key string, t store.Ticket) {
	e, found, _ := s.read(key, s.epoch.Load(), true)
	if !found || e != nil && e.Ticket.Epoch != t.Epoch {
		return
	}
	_ = s.cache.Delete(key)
}

// LookupMany implements [store.Batcher]: it does [Store.Lookup] of each
// key in turn, each atomic on its own, with the same answer and error per
// key. It takes no lock across keys (a batch in process saves no round
// trip) and, like Lookup, ignores ctx. With len(reqs) != len(keys), every
// key's error wraps [store.ErrInvalidOption]. errs is nil when every
// lookup succeeded.
func (s *Store) LookupMany(ctx context.Context, keys []string, reqs []store.LookupRequest) (lks []store.Lookup, errs []error) {
	lks = make([]store.Lookup, len(keys))
	if len(reqs) != len(keys) {
		return lks, each(len(keys), invalid("LookupMany: %d keys, %d requests", len(keys), len(reqs)))
	}
	for i, key := range keys {
		lk, err := s.Lookup(ctx, key, reqs[i])
		if err != nil {
			if errs == nil {
				errs = make([]error, len(keys))
			}
			errs[i] = err
			continue
		}
		lks[i] = lk
	}
	return lks, errs
}

// FillMany implements [store.Batcher]: it does [Store.Fill] of each key in
// turn, each atomic on its own, with the same answer and error per key
// (an entry too large is [store.ErrTooLarge] for its key only). Like
// LookupMany, it ignores ctx.
func (s *Store) FillMany(ctx context.Context, keys []string, fills []*store.Fill) (accepted []bool, errs []error) {
	accepted = make([]bool, len(keys))
	if len(fills) != len(keys) {
		return accepted, each(len(keys), invalid("FillMany: %d keys, %d fills", len(keys), len(fills)))
	}
	for i, key := range keys {
		ok, err := s.Fill(ctx, key, fills[i])
		if err != nil {
			if errs == nil {
				errs = make([]error, len(keys))
			}
			errs[i] = err
			continue
		}
		accepted[i] = ok
	}
	return accepted, errs
}

// each returns n copies of err, or nil for none.
func each(n int, err error) []error {
	if n == 0 {
		return nil
	}
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// Release implements [store.Store]: it drops key's lease if token holds
// it.
func (s *Store) Release(_ context.Context, key string, token uint64) error {
	if s.closed.Load() {
		return errClosed
	}
	st := &s.stripes[s.stripeOf(key)]
	st.mu.Lock()
	st.release(key, token)
	st.mu.Unlock()
	return nil
}

// Invalidate implements [store.Store]. With s = ++seq, taken while it
// holds the stripes of inv.Keys and the shards of inv.Tags, it sets each
// key's version and each tag's version to s (and the tag's hard version,
// unless inv.Soft). A hard invalidation drops the keys' entries; a soft
// one moves their FreshUntil to now. Either drops the leases of inv.Keys
// (a load that holds one can no longer fill), so that the next lookup
// asking for the lease is granted it; inv.Tags leave leases alone. An
// empty Invalidation does nothing.
func (s *Store) Invalidate(_ context.Context, inv store.Invalidation) error {
	if s.closed.Load() {
		return errClosed
	}
	if len(inv.Keys) == 0 && len(inv.Tags) == 0 {
		return nil
	}
	s.invalidate(inv)
	s.notify(inv.Keys, inv.Tags) // applied, and before Invalidate returns
	return nil
}

func (s *Store) invalidate(inv store.Invalidation) {
	for _, i := range s.stripesOf(inv.Keys) {
		st := &s.stripes[i]
		st.mu.Lock()
		defer st.mu.Unlock()
	}
	for _, i := range s.shardsOf(inv.Tags) {
		sh := &s.tags[i]
		sh.mu.Lock()
		defer sh.mu.Unlock()
	}
	seq := s.seq.Add(1)
	now := s.now()
	epoch := s.epoch.Load()
	breakLeases := !hooks.LeaseOutlivesInvalidation.Load()
	for _, key := range inv.Keys {
		st := &s.stripes[s.stripeOf(key)]
		st.versions.set(key, seq)
		if breakLeases {
			st.leases.del(key)
		}
		st.wake(key)
		if inv.Soft {
			s.soften(key, epoch, now)
		} else {
			_ = s.cache.Delete(key)
		}
	}
	for _, tag := range inv.Tags {
		sh := &s.tags[s.shardOf(tag)]
		sh.soft.set(tag, seq)
		if !inv.Soft {
			sh.hard.set(tag, seq)
		}
	}
}

// soften makes key's entry stale from now on, keeping it until its
// StaleUntil. The caller holds the key's stripe.
func (s *Store) soften(key string, epoch uint64, now time.Time) {
	e, found, _ := s.read(key, epoch, true)
	if !found {
		return
	}
	if e == nil || !now.Before(e.Expires()) {
		_ = s.cache.Delete(key)
		return
	}
	if !now.Before(e.FreshUntil) {
		return
	}
	e.FreshUntil = now
	b, err := e.MarshalBinary()
	if err == nil {
		err = s.cache.Set(key, b)
	}
	if err != nil {
		// It fitted before and is no larger now; should it fail, a miss
		// is as good as stale.
		_ = s.cache.Delete(key)
	}
}

// stripesOf returns the stripe indexes of keys, sorted and without
// duplicates: the order in which to lock them.
func (s *Store) stripesOf(keys []string) []int {
	idx := make([]int, 0, len(keys))
	for _, k := range keys {
		idx = append(idx, s.stripeOf(k))
	}
	slices.Sort(idx)
	return slices.Compact(idx)
}

// shardsOf returns the shard indexes of tags, sorted and without
// duplicates.
func (s *Store) shardsOf(tags []string) []int {
	if len(tags) == 0 {
		return nil
	}
	idx := make([]int, 0, len(tags))
	for _, t := range tags {
		idx = append(idx, s.shardOf(t))
	}
	slices.Sort(idx)
	return slices.Compact(idx)
}

// Close stops the store's cleanup goroutine. Every call after the first,
// and every other method after Close, returns an error wrapping
// [store.ErrClosed].
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return errClosed
	}
	return s.cache.Close()
}

// Evictions returns, per namespace (the part of a key before its first
// ':', or "" for keys without one), how many entries were dropped for
// space or for age (LifeWindow), if the store was made with
// [CountEvictions]; otherwise it returns an empty map. Invalidations and
// replaced entries are not evictions. It implements [store.Stats]; the
// map is the caller's.
func (s *Store) Evictions() map[string]uint64 {
	s.evictMu.Lock()
	defer s.evictMu.Unlock()
	return maps.Clone(s.evictions)
}

// evicted counts an eviction of key. bigcache calls it with one of its
// shard locks held, so it takes no lock but its own.
func (s *Store) evicted(key string) {
	ns, _, ok := strings.Cut(key, ":")
	if !ok {
		ns = ""
	}
	s.evictMu.Lock()
	s.evictions[ns]++
	s.evictMu.Unlock()
}

// Len returns how many entries the store holds, expired ones that
// bigcache has not removed yet among them. It does not count the
// versions of keys and tags, which are kept apart from the entries.
func (s *Store) Len() int { return s.cache.Len() }

// Capacity returns how many bytes the store has allocated for its entries:
// it grows as entries are added, up to the bound ([MaxBytes]), and does
// not shrink when they are removed.
func (s *Store) Capacity() int { return s.cache.Capacity() }

// Corrupt returns how many entries failed to decode (bytes of another
// format, or damaged) and were dropped as misses.
func (s *Store) Corrupt() uint64 { return s.corrupt.Load() }

// flush makes the store lose everything, as a restarted server would: its
// entries, leases and versions, and its epoch, so that tickets and entries
// from before are never trusted again. The conformance suite uses it.
func (s *Store) flush() {
	for i := range s.stripes {
		s.stripes[i].mu.Lock()
		defer s.stripes[i].mu.Unlock()
	}
	for i := range s.tags {
		s.tags[i].mu.Lock()
		defer s.tags[i].mu.Unlock()
	}
	s.epoch.Store(newEpoch(s.epoch.Load()))
	_ = s.cache.Reset()
	for i := range s.stripes {
		st := &s.stripes[i]
		st.leases.clear()
		st.versions.reset()
	}
	for i := range s.tags {
		s.tags[i].soft.reset()
		s.tags[i].hard.reset()
	}
}
