package proptest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
)

// The near-cache machine: two or three processes, each a paddock Cache
// with NearCache over its own redisstore Store (its own client, its own
// subscription) on one real redis-server. Rapid draws Gets of the rows,
// invalidations of a row or a tag and Sets from any process, Gets that
// race an invalidation, waits for one process's feed to catch up, and
// kills of every subscription (CLIENT KILL TYPE pubsub), after which the
// feeds come back on their own.
//
// The invariant, N1: a Get in a process never returns a value older than
// a change (an invalidation, a Set) that had reached the process when
// the Get began, nor, in the process that made the change, one older
// than a change whose call had returned. The machine runs no bubble: the
// feeds' messages arrive on their own goroutines, in real time, and the
// machine learns where each process stands from its feed, which it taps
// between the Store and the Cache:
//
//   - A change reached a process when the Cache was handed its message.
//     Messages come in the order Redis ran the changes (one connection),
//     and the changes run one at a time, so a message is matched to the
//     first change after the last one matched with the same keys and
//     tags; a match never lands later than the change that sent it, so
//     the floor it gives is never too high. Every change before a matched
//     one reached the process too: its message arrived, or it was lost
//     while the subscription was gone, and then the feed went down, and
//     came up again only after that change had run (Redis confirms a
//     subscription in order), so no copy of a Get that began after the
//     later message predates it.
//   - When a process's feed comes up, every change whose call had
//     returned reached it: the Cache drops its copies, and the Gets after
//     read Redis, which has run those changes.
//
// FeedDropsChanges (internal/hooks) makes each Store's feed lose every
// other change without going down; TestCanFail checks that N1 then fails.
func TestRedisNearCache(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t, nil)
	var checks atomic.Int64
	withChecks(40, func() {
		rapid.Check(t, func(rt *rapid.T) {
			m := newNearMachine(rt, srv, admin, fmt.Sprintf("nc%d:", checks.Add(1)))
			defer m.close()
			rt.Repeat(rapid.StateMachineActions(m))
		})
	})
}

// nearOp is one change: an invalidation, a Set's fill, or the
// invalidation of a Set's dependency tag.
type nearOp struct {
	id         int
	keys, tags []string       // as the store publishes them, sorted
	floor      map[string]int // the row versions a Get that knows of it returns at least
	by         *nearProc
	ran        bool // the call returned without an error
	returned   bool
}

func (o *nearOp) String() string {
	return fmt.Sprintf("change %d by process %d (keys %q, tags %q)", o.id, o.by.id, o.keys, o.tags)
}

// nearProc is one process.
type nearProc struct {
	id     int
	client *redis.Client
	store  *redisstore.Store
	cache  *paddock.Cache
	l      *paddock.Loader[string]
	// Under the machine's mu: how far its feed has brought it.
	matched int  // changes up to the last one matched to a message
	synced  int  // changes returned when its feed last came up
	up      bool // its feed is up
	ups     int  // times its feed came up
}

type nearMachine struct {
	t     *rapid.T
	admin *redis.Client
	procs []*nearProc

	mu         sync.Mutex // the feeds report from their own goroutines
	db         map[string]int
	ops        []*nearOp
	returned   int // changes whose call returned: a prefix of ops
	violations []string
	history    []string
	start      time.Time
}

// nearStore taps a process's feed: the Cache hears of a change first, and
// the machine after; the machine hears that the feed is up first, and the
// Cache after (see TestRedisNearCache).
type nearStore struct {
	*redisstore.Store
	m *nearMachine
	p *nearProc
}

func (s nearStore) Listen(changed func(keys, tags []string), up func(bool)) func() {
	return s.Store.Listen(func(keys, tags []string) {
		changed(keys, tags)
		s.m.arrived(s.p, keys, tags)
	}, func(b bool) {
		if b {
			s.m.feedUp(s.p)
		}
		up(b)
		if !b {
			s.m.feedDown(s.p)
		}
	})
}

func newNearMachine(t *rapid.T, srv *redistest.Server, admin *redis.Client, prefix string) *nearMachine {
	m := &nearMachine{t: t, admin: admin, db: map[string]int{}, start: time.Now()}
	for _, k := range rowKeys {
		m.db[k] = 1
	}
	n := rapid.IntRange(2, 3).Draw(t, "processes")
	for i := range n {
		p := &nearProc{id: i + 1}
		o := srv.Options()
		o.MaxRetries = -1
		p.client = redis.NewClient(o)
		s, err := redisstore.New(p.client, redisstore.Prefix(prefix))
		if err != nil {
			t.Fatalf("redisstore.New: %v", err)
		}
		p.store = s
		c, err := paddock.New(nearStore{s, m, p}, paddock.NearCache(time.Hour), paddock.StoreTimeout(callTimeout))
		if err != nil {
			t.Fatalf("paddock.New: %v", err)
		}
		p.cache = c
		if p.l, err = paddock.NewLoader[string](c, namespace, paddock.TTL(time.Hour), paddock.Beta(0)); err != nil {
			t.Fatalf("NewLoader: %v", err)
		}
		m.procs = append(m.procs, p)
	}
	m.waitUp()
	return m
}

func (m *nearMachine) close() {
	for _, p := range m.procs {
		_ = p.cache.Close()
		_ = p.store.Close()
		_ = p.client.Close()
	}
}

// logf records an event; the caller holds m.mu.
func (m *nearMachine) logf(format string, args ...any) {
	m.history = append(m.history, fmt.Sprintf("%8s  ", time.Since(m.start).Truncate(time.Microsecond))+fmt.Sprintf(format, args...))
}

// violate records a broken invariant; the caller holds m.mu.
func (m *nearMachine) violate(kind, format string, args ...any) {
	if only != "" && !strings.HasPrefix(kind, only+" ") {
		return
	}
	m.violations = append(m.violations, kind)
	m.logf("VIOLATION %s\n          %s", kind, fmt.Sprintf(format, args...))
}

// arrived matches a message that reached p to a change (see
// TestRedisNearCache).
func (m *nearMachine) arrived(p *nearProc, keys, tags []string) {
	keys, tags = slices.Sorted(slices.Values(keys)), slices.Sorted(slices.Values(tags))
	m.mu.Lock()
	defer m.mu.Unlock()
	for j := p.matched; j < len(m.ops); j++ {
		if op := m.ops[j]; slices.Equal(op.keys, keys) && slices.Equal(op.tags, tags) {
			p.matched = j + 1
			m.logf("  process %d heard %v", p.id, op)
			return
		}
	}
	m.violate("N0 model: a message no change sent", "process %d heard keys %q, tags %q", p.id, keys, tags)
}

func (m *nearMachine) feedUp(p *nearProc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p.synced, p.up = max(p.synced, m.returned), true
	p.ups++
	m.logf("  process %d: feed up (changes returned: %d)", p.id, m.returned)
}

func (m *nearMachine) feedDown(p *nearProc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p.up = false
	m.logf("  process %d: feed down", p.id)
}

// waitUp waits, in real time, until every process's feed is up.
func (m *nearMachine) waitUp() {
	deadline := time.Now().Add(time.Minute)
	for {
		m.mu.Lock()
		all := true
		for _, p := range m.procs {
			all = all && p.up
		}
		m.mu.Unlock()
		if all {
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatal("the feeds did not come up within a minute")
		}
		time.Sleep(time.Millisecond) // polling for the feeds, not ordering
	}
}

func (m *nearMachine) drawProc(t *rapid.T, label string) *nearProc {
	return m.procs[rapid.IntRange(0, len(m.procs)-1).Draw(t, label)]
}

func (m *nearMachine) load(key string) paddock.LoadFunc[string] {
	return func(context.Context) (string, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		return "v" + strconv.Itoa(m.db[key]), nil
	}
}

// floor is the oldest row version a Get of key in p that begins now may
// return. The caller holds m.mu.
func (m *nearMachine) floor(p *nearProc, key string) (int, *nearOp) {
	f, why := 0, (*nearOp)(nil)
	reach := max(p.matched, p.synced)
	for j, op := range m.ops {
		known := j < reach || op.by == p && op.returned
		if known && (op.ran || !op.returned) {
			// A change not yet returned that reached p has run in Redis.
			if v := op.floor[key]; v > f {
				f, why = v, op
			}
		}
	}
	return f, why
}

// get makes a Get of key in p and checks it.
func (m *nearMachine) get(p *nearProc, key string) {
	m.mu.Lock()
	floor, why := m.floor(p, key)
	m.mu.Unlock()
	v, err := p.l.Get(context.Background(), key, m.load(key), paddock.Tags(tagsOf(key)...))
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.logf("  get %s in process %d: %v", key, p.id, err)
		return
	}
	ver, perr := strconv.Atoi(strings.TrimPrefix(v, "v"))
	if perr != nil {
		m.violate("N0 model: a value of no version", "get %s in process %d returned %q", key, p.id, v)
		return
	}
	m.logf("  get %s in process %d: %s (floor v%d)", key, p.id, v, floor)
	if ver < floor {
		m.violate("N1 near: a Get returned a value older than a change that had reached its process",
			"get %s in process %d returned %s; %v, which had reached it, wrote v%d", key, p.id, v, why, floor)
	}
}

// change records the changes a call is about to make, runs it, and
// records its outcome.
func (m *nearMachine) change(p *nearProc, what string, ops []*nearOp, call func() error) {
	m.mu.Lock()
	for _, op := range ops {
		op.id, op.by = len(m.ops)+1, p
		slices.Sort(op.keys)
		slices.Sort(op.tags)
		m.ops = append(m.ops, op)
	}
	m.logf("%s in process %d (changes %d-%d)", what, p.id, ops[0].id, ops[len(ops)-1].id)
	m.mu.Unlock()
	err := call()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, op := range ops {
		// A refused Set's fill ran; its dependency invalidation did not.
		op.ran, op.returned = err == nil || i == 0 && errors.Is(err, paddock.ErrFenced), true
	}
	for _, op := range m.ops[m.returned:] {
		if !op.returned {
			break
		}
		m.returned++
	}
	if err != nil {
		m.logf("  %s: %v", what, err)
	}
}

// invalidation is the change Invalidate or InvalidateTags makes: the keys
// with their dependency tags, and the tags.
func (m *nearMachine) invalidation(p *nearProc, t *rapid.T) (what string, op *nearOp, call func() error) {
	op = &nearOp{floor: map[string]int{}}
	if rapid.Bool().Draw(t, "byTag") {
		tag := rapid.SampledFrom(rowTags).Draw(t, "tag")
		m.mu.Lock()
		for _, k := range keysOf(tag) {
			m.db[k]++
			op.floor[k] = m.db[k]
		}
		m.mu.Unlock()
		op.tags = []string{tag}
		return "invalidate tag " + tag, op, func() error { return p.cache.InvalidateTags(context.Background(), tag) }
	}
	key := rapid.SampledFrom(rowKeys).Draw(t, "key")
	full := p.l.Key(key)
	m.mu.Lock()
	m.db[key]++
	op.floor[key] = m.db[key]
	m.mu.Unlock()
	op.keys, op.tags = []string{full}, []string{paddock.DependencyTag(full)}
	return "invalidate " + key, op, func() error { return p.l.Invalidate(context.Background(), key) }
}

// Get gets a row in a process.
func (m *nearMachine) Get(t *rapid.T) {
	m.get(m.drawProc(t, "proc"), rapid.SampledFrom(rowKeys).Draw(t, "key"))
}

// Get2 makes Gets twice as likely: a copy is taken by a second Get.
func (m *nearMachine) Get2(t *rapid.T) { m.Get(t) }

// Invalidate writes a row (or the rows of a tag) and invalidates it from
// a process.
func (m *nearMachine) Invalidate(t *rapid.T) {
	p := m.drawProc(t, "proc")
	what, op, call := m.invalidation(p, t)
	m.change(p, what, []*nearOp{op}, call)
}

// Set writes a row and Sets its new value from a process: the fill, then
// the invalidation of the key's dependency tag.
func (m *nearMachine) Set(t *rapid.T) {
	p := m.drawProc(t, "proc")
	key := rapid.SampledFrom(rowKeys).Draw(t, "key")
	full := p.l.Key(key)
	m.mu.Lock()
	m.db[key]++
	v := m.db[key]
	m.mu.Unlock()
	fill := &nearOp{keys: []string{full}, floor: map[string]int{key: v}}
	dep := &nearOp{tags: []string{paddock.DependencyTag(full)}}
	m.change(p, "set "+key, []*nearOp{fill, dep}, func() error {
		return p.l.Set(context.Background(), key, "v"+strconv.Itoa(v), paddock.Tags(tagsOf(key)...))
	})
}

// Race runs a Get in one process while another process (or the same)
// invalidates.
func (m *nearMachine) Race(t *rapid.T) {
	g := m.drawProc(t, "getProc")
	key := rapid.SampledFrom(rowKeys).Draw(t, "getKey")
	p := m.drawProc(t, "invProc")
	what, op, call := m.invalidation(p, t)
	var wg sync.WaitGroup
	wg.Go(func() { m.change(p, what, []*nearOp{op}, call) })
	wg.Go(func() { m.get(g, key) })
	wg.Wait()
}

// CatchUp waits, in real time, for a process's feed to have brought every
// change (or to be down), for at most 100 ms: the Gets after then
// check the whole history.
func (m *nearMachine) CatchUp(t *rapid.T) {
	p := m.drawProc(t, "proc")
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		done := !p.up || max(p.matched, p.synced) >= len(m.ops)
		m.mu.Unlock()
		if done {
			return
		}
		time.Sleep(100 * time.Microsecond) // polling for the feed, not ordering
	}
}

// KillFeeds kills every subscription (CLIENT KILL TYPE pubsub); the feeds
// report down and come back on their own, while the next actions run.
// Half the time the machine waits for them to be back.
func (m *nearMachine) KillFeeds(t *rapid.T) {
	m.mu.Lock()
	m.logf("kill every subscription")
	ups := make([]int, len(m.procs)) // before the kill: a feed may be back before it returns
	for i, p := range m.procs {
		ups[i] = p.ups
	}
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := m.admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL: %v", err)
	}
	if rapid.Bool().Draw(t, "waitBack") {
		deadline := time.Now().Add(time.Minute)
		for {
			m.mu.Lock()
			back := true
			for i, p := range m.procs {
				back = back && p.up && p.ups > ups[i]
			}
			m.mu.Unlock()
			if back {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the feeds did not come back within a minute")
			}
			time.Sleep(time.Millisecond) // polling for the feeds, not ordering
		}
	}
}

// Check reports the first violation, with the history.
func (m *nearMachine) Check(t *rapid.T) {
	m.mu.Lock()
	v := m.violations
	h := strings.Join(m.history, "\n")
	m.mu.Unlock()
	if len(v) == 0 {
		return
	}
	t.Logf("history:\n%s", h)
	// One call site per invariant, as in machine.Check.
	switch label, _, _ := strings.Cut(v[0], " "); label {
	case "N1":
		t.Fatalf("%s", v[0])
	default:
		t.Fatalf("%s", v[0])
	}
}
