package proptest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/store"
	"pgregory.net/rapid"
)

// The world's constants. Durations are whole seconds and every Advance
// moves time by whole seconds, so that events happen on a coarse grid and a
// store whose clock drifts a little (a real server) agrees with the model.
const (
	ttl         = 10 * time.Second
	staleFor    = 20 * time.Second // the stale window, after ttl
	leaseTTL    = 5 * time.Second
	waitTimeout = 24 * time.Hour // waiters load on their own only when the lease is free
	coolDown    = time.Second    // the breaker's
	namespace   = "row"
	// retryBound is how long after the store is reachable again a node's
	// pending invalidation (one whose call failed) surely reaches it: the
	// Cache retries it with a backoff capped at this.
	retryBound = time.Second
)

// The rows and their tags. A row's tags never change. Some are named by
// the Get (paddock.Tags, known before the load) and some by the load after
// it read the row (paddock.Tag, "late" tags), so both paths are fenced:
//
//	a: t0 (late)
//	b: t0 (early), t1 (late)
var (
	rowKeys   = []string{"a", "b"}
	rowTags   = []string{"t0", "t1"}
	earlyTags = map[string][]string{"a": nil, "b": {"t0"}}
	lateTags  = map[string][]string{"a": {"t0"}, "b": {"t1"}}
)

// extraTag is a tag no row has, which a Set may name on top of its row's:
// the key's entries from loads lack it.
const extraTag = "t2"

// tagsOf returns every tag of row key, sorted.
func tagsOf(key string) []string {
	t := append(slices.Clone(earlyTags[key]), lateTags[key]...)
	slices.Sort(t)
	return t
}

// keysOf returns the rows that carry tag.
func keysOf(tag string) []string {
	var ks []string
	for _, k := range rowKeys {
		if slices.Contains(tagsOf(k), tag) {
			ks = append(ks, k)
		}
	}
	return ks
}

var (
	errLoad    = errors.New("proptest: load failed")
	errDown    = errors.New("proptest: store unavailable")
	errCrashed = errors.New("proptest: node crashed")
	errNothing = errors.New("proptest: Peek found nothing")
)

// cmd is what the machine tells a blocked load to do next.
type cmd uint8

const (
	cmdRead cmd = iota + 1
	cmdFinish
	cmdFail
)

type srcState uint8

const (
	running  srcState = iota // begun, has not read the row
	hasRead                  // read the row, not returned
	finished                 // returned its value
	failed                   // returned an error
	crashed                  // its node crashed while it ran: it never returns
)

func (s srcState) String() string {
	return [...]string{"running", "read", "finished", "failed", "crashed"}[s]
}

// A source is where a value comes from: a load or a Loader.Set. Values are
// "key#id@vN": the source's id and the row version it read, so the model
// can tell the provenance of anything a Get returns or the store holds.
type source struct {
	id    int
	set   bool
	node  *node
	key   string
	owner int // the Get whose flight runs the load (0 for a Set)
	// refresh: a background refresh (its Get had returned when it began)
	refresh bool

	begin   int // step at which the load was called (or the Set made)
	beginAt time.Time
	read    int // step of the row read; 0 before
	ver     int // the row version read
	end     int
	endAt   time.Time
	state   srcState

	// How the load's flight stood with the store when the load began.
	leased   bool      // its own lookup, a moment before, granted the lease
	degraded bool      // its lookup failed or was skipped (store down, breaker open)
	leaseAt  time.Time // the store's clock at that lookup (when the lease began)
	asked    int       // the step of that lookup at the store

	filled bool      // a fill of this value was accepted (or may have been)
	fillAt time.Time // when
	// fillStep is the step of that fill
	fillStep int

	cmds  chan cmd
	batch []*source // the sources of one load of several keys (GetMany), in order

	// known: the tags the load's flight is known to carry so far, by
	// their full names: the Get's Tags option, the tags the load named,
	// and the dependency tags and inner tags of its nested reads. An
	// invalidation in its process that names one of them dooms it.
	known []string
	// setTags: the tags a Set named.
	setTags []string
	// An outer key's load (nested_test.go): the inputs it has read, in
	// order; whether it is inside a nested read now; its value, once
	// built.
	inputs  []inRec
	reading bool
	val     string
}

func (s *source) value() string {
	if s.val != "" {
		return s.val
	}
	return fmt.Sprintf("%s#%d@v%d", s.key, s.id, s.ver)
}

func (s *source) String() string {
	kind := "load"
	if s.set {
		kind = "set"
	}
	if isOuter(s.key) {
		var in []string
		for _, i := range s.inputs {
			in = append(in, i.String())
		}
		return fmt.Sprintf("%s %d (key %s, node %d, began step %d, inputs [%s], %v)",
			kind, s.id, s.key, s.node.id, s.begin, strings.Join(in, ", "), s.state)
	}
	return fmt.Sprintf("%s %d (key %s, node %d, began step %d, read v%d at step %d, %v)",
		kind, s.id, s.key, s.node.id, s.begin, s.ver, s.read, s.state)
}

// parseValue returns the source id in an encoded value (the Loader's value
// version header, then "key#id@vN").
func parseValue(b []byte) (id int, ok bool) {
	_, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, false
	}
	return parseString(string(b[n:]))
}

func parseString(v string) (id int, ok bool) {
	_, rest, ok := strings.Cut(v, "#")
	if !ok {
		return 0, false
	}
	var ver int
	if _, err := fmt.Sscanf(rest, "%d@v%d", &id, &ver); err != nil {
		return 0, false
	}
	return id, true
}

// A getRec is one Get and what it returned.
type getRec struct {
	id      int
	node    *node
	key     string
	start   int
	startAt time.Time
	done    bool
	end     int
	val     string
	err     error
	status  paddock.Status // 0 for a GetMany, which does not report it
	many    bool           // one key of a GetMany
	peek    bool           // a Peek
	stuck   bool           // reported by checkLive or checkDoomedWait
	// parent is the outer load a nested read is made in (nil for a Get
	// the machine made).
	parent *source
}

// An invRec is an invalidation (or a Set, which is a versioned write that
// fences older loads of its key like an invalidation).
type invRec struct {
	step int
	kind string // "invalidate", "mark-stale", "set"
	keys []string
	tags []string
	soft bool
	ok   bool // acknowledged: the call returned nil
	// pending: a hard invalidation whose call failed; the node that made
	// it keeps it and retries it until the store acknowledges it
	pending bool
	node    *node     // the node that made it
	at      time.Time // when the call returned
	// refused: a Set refused with ErrFenced, which must leave no entry of
	// the key from a fill before setBegin, the step at which the Set began
	refused  bool
	setBegin int
	src      *source        // a Set's own value
	vers     map[string]int // row versions of the rows it touches, when it returned
	// dooms: the loads in flight when it returned that it doomed (see
	// doomedBy), if it was acknowledged.
	dooms []doom
}

// affects reports whether inv fences row key: it names the key or one of
// the row's tags.
func (inv *invRec) affects(key string) bool {
	if slices.Contains(inv.keys, key) {
		return true
	}
	for _, t := range inv.tags {
		if slices.Contains(tagsOf(key), t) {
			return true
		}
	}
	return false
}

func (inv *invRec) String() string {
	var what []string
	for _, k := range inv.keys {
		what = append(what, "key "+k)
	}
	for _, t := range inv.tags {
		what = append(what, "tag "+t)
	}
	return fmt.Sprintf("%s of %s at step %d", inv.kind, strings.Join(what, ", "), inv.step)
}

// An outageRec is a time the store was unavailable to the nodes, from
// the instant it went down to the instant it came back (zero while down).
type outageRec struct{ from, to time.Time }

// A node is one process: a Cache and its Loaders (of the rows and of the
// outer keys) over the shared store, through a nodeStore that can crash
// it or cut it off.
type node struct {
	id     int
	slot   int
	cache  *paddock.Cache
	loader *paddock.Loader[string] // rows
	// lists and pages: the Loaders of the outer keys (nested_test.go)
	lists, pages *paddock.Loader[string]
	crashed      bool
	crashedAt    time.Time
	// beforeSetFill, if set, runs before the store sees a Set's fill.
	beforeSetFill func()
	// setFills counts the Set fills the node sent the store.
	setFills int
	// lookups is the last lookup each Get's flight made through this node,
	// by Get id (the id rides on the context) and key.
	lookups map[lookupKey]lookupObs
}

type lookupKey struct {
	gid int
	key string
}

type lookupObs struct {
	step     int       // when the node heard the reply
	asked    int       // when the store answered (earlier if the reply was held)
	at       time.Time // the bubble's clock
	storeNow time.Time // the store's clock (Lookup.Now)
	ok       bool
	lease    bool
}

type getIDKey struct{}

// config is what rapid draws once per check.
type config struct {
	nodes        int
	remote       bool // nodes share one lookup per key (the Remote path), for stores that are not remote
	loadTimeout  time.Duration
	staleIfError time.Duration
	beta         float64 // early refresh (with Rand fixed at 0.5)
	nested       bool    // Gets of the outer keys (nested_test.go) are among the actions
}

// machine is the state machine. Its exported methods of type func(*rapid.T)
// are the actions; Check holds the invariants.
type machine struct {
	t     *rapid.T
	tally *tally
	env   *env
	cfg   config
	start time.Time // the bubble's clock when the check began

	// dead is closed at teardown: what a crashed node blocks on, and what
	// every load still blocked gives up on.
	dead chan struct{}

	mu        sync.Mutex // guards everything below; Gets, flights and loads report under it
	step      int
	db        map[string]int
	nodes     []*node // the live node in each slot
	all       []*node // every node ever, crashed ones included
	gets      []*getRec
	lastGet   *getRec // the last Get action's
	srcs      map[int]*source
	invs      []*invRec
	down      bool                 // the store is unavailable to the nodes
	outages   []outageRec          // every time it was, in order
	holdFor   map[int]int          // Gets whose first lookup reply is to be held, for how many actions
	replies   []heldReply          // the lookup replies held
	held      map[string]int       // lookup replies held, by row key
	heldUntil map[string]time.Time // when the last held reply of a row key was delivered or lost
	lost      int                  // the last step at which the store lost its state (flush, restart)
	// trouble is the last time a store call may have failed or a lease
	// been lost for a reason the model does not follow step by step
	// (outages, lost replies, flushes, restarts): checkDoomedWait
	// keeps away from it.
	trouble    time.Time
	getTags    map[int][]string // the Tags option of each Get (and GetMany), by id
	getByID    map[int]*getRec
	lastOuter  *getRec
	closing    bool
	nextID     int
	violations []string
	history    []string
	// kept holds the contexts of the last loads that finished, kept past
	// their end as a load may keep its own (see LateWrite).
	kept []context.Context
}

// maxKept is how many finished loads' contexts the machine keeps.
const maxKept = 8

// runMachine runs the state machine against the store of b, each check in
// its own synctest bubble.
func runMachine(t *testing.T, b backend) {
	t.Helper()
	open := b.setup(t)
	tl := new(tally)
	defer func() { t.Logf("what the checks did:%v", tl) }()
	withChecks(b.checks, func() {
		rapid.Check(t, func(rt *rapid.T) {
			rapid.SyncTest(rt, func(rt *rapid.T) {
				m := newMachine(rt, open(rt))
				m.tally = tl
				defer m.teardown(rt)
				rt.Repeat(actions(m))
			})
		})
	})
}

func newMachine(t *rapid.T, e *env) *machine {
	m := &machine{
		t:     t,
		env:   e,
		dead:  make(chan struct{}),
		db:    make(map[string]int),
		srcs:  make(map[int]*source),
		start: time.Now(),

		holdFor:   make(map[int]int),
		held:      make(map[string]int),
		heldUntil: make(map[string]time.Time),
		getTags:   make(map[int][]string),
		getByID:   make(map[int]*getRec),
	}
	m.cfg.nodes = rapid.IntRange(2, 3).Draw(t, "nodes")
	if r, ok := e.store.(store.Remote); ok && r.Remote() {
		m.cfg.remote = true
	} else {
		m.cfg.remote = rapid.Bool().Draw(t, "remote")
	}
	// A load that honors its context ends at the load timeout: before its
	// lease expires, or after (a slow load that outlives its lease).
	m.cfg.loadTimeout = 45 * time.Second
	if rapid.IntRange(0, 3).Draw(t, "shortLoadTimeout") == 0 {
		m.cfg.loadTimeout = 3 * time.Second
	}
	m.cfg.staleIfError = rapid.SampledFrom([]time.Duration{0, 40 * time.Second}).Draw(t, "staleIfError")
	m.cfg.beta = rapid.SampledFrom([]float64{0, 1}).Draw(t, "beta")
	m.cfg.nested = rapid.Bool().Draw(t, "nested")
	for _, k := range rowKeys {
		m.db[k] = 1
	}
	for i := range m.cfg.nodes {
		m.nodes = append(m.nodes, m.newNode(i))
	}
	m.logf("config: %+v", m.cfg)
	return m
}

func (m *machine) newNode(slot int) *node {
	m.nextID++
	n := &node{id: m.nextID, slot: slot, lookups: make(map[lookupKey]lookupObs)}
	var st store.Store = &nodeStore{m: m, n: n}
	if _, ok := m.env.store.(store.Notifier); ok {
		// The Loaders keep hot tiers, as they would on this store.
		st = &notifyingNodeStore{nodeStore{m: m, n: n}}
	}
	c, err := paddock.New(st,
		paddock.LeaseTTL(leaseTTL),
		paddock.WaitTimeout(waitTimeout),
		paddock.StoreTimeout(time.Second),
		paddock.Breaker(2, coolDown),
		paddock.Rand(func() float64 { return 0.5 }),
	)
	if err != nil {
		m.t.Fatalf("paddock.New: %v", err)
	}
	n.cache, n.loader = c, m.newLoader(c, namespace)
	n.lists, n.pages = m.newLoader(c, "list"), m.newLoader(c, "page")
	m.all = append(m.all, n)
	return n
}

// begin starts an action: a new step.
func (m *machine) begin(format string, args ...any) {
	m.mu.Lock()
	m.step++
	m.logf(format, args...)
	m.count("action " + strings.Fields(fmt.Sprintf(format, args...))[0])
	m.mu.Unlock()
}

func (m *machine) count(what string) {
	if m.tally != nil && !m.closing {
		m.tally.add(what)
	}
}

// holdUntilDelivered holds a Get's first lookup reply until the action
// that started it delivers it.
const holdUntilDelivered = 1 << 30

// settle delivers the lookup replies held until this step, and waits
// until every goroutine of the bubble (Gets, flights, loads, background
// refreshes) is blocked: the action's effects are complete.
func (m *machine) settle() {
	m.mu.Lock()
	kept := m.replies[:0]
	for _, r := range m.replies {
		if r.due <= m.step {
			close(r.deliver)
		} else {
			kept = append(kept, r)
		}
	}
	m.replies = kept
	m.mu.Unlock()
	synctest.Wait()
}

// A heldReply is a lookup reply the store sent and the node has not heard.
type heldReply struct {
	gid     int           // the Get it was made for
	due     int           // the step after whose action it arrives
	deliver chan struct{} // closed when it arrives
}

// logf records an event in the history printed with a counterexample. The
// caller holds m.mu.
func (m *machine) logf(format string, args ...any) {
	m.history = append(m.history, fmt.Sprintf("%3d %6s  ", m.step, m.elapsed())+fmt.Sprintf(format, args...))
}

// elapsed is the bubble's time since the check began.
func (m *machine) elapsed() string { return m.since(time.Now()) }

// violate records a broken invariant: kind names it, the same way every
// time (rapid tells failures apart by their message, and shrinks a
// counterexample only into one that fails the same way); the details go to
// the history. The caller holds m.mu. Kinds start with the invariant's
// label ("I2 one-load: ..."); with only set (the can-fail tests), the
// others are not reported.
func (m *machine) violate(kind, format string, args ...any) {
	if m.closing {
		return
	}
	if only != "" && !strings.HasPrefix(kind, only+" ") || ignore != "" && strings.Contains(kind, ignore) {
		return
	}
	m.violations = append(m.violations, kind)
	m.logf("VIOLATION %s\n%12s%s", kind, "", fmt.Sprintf(format, args...))
}

func (m *machine) since(at time.Time) string {
	return at.Sub(m.start).Truncate(time.Millisecond).String()
}

func (m *machine) historyString() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(m.history, "\n")
}

// settle waits, in the bubble, until pending reports no call of the
// check still blocked, letting a lease TTL pass at a time (waiters on a
// lease poll as time passes), and reports the calls still blocked after
// ten.
func settle(t *rapid.T, env *env, what string, pending func() int) {
	synctest.Wait()
	for i := 0; ; i++ {
		n := pending()
		if n == 0 {
			return
		}
		if i == 10 {
			t.Errorf("%d %s still blocked after %v", n, what, time.Duration(i)*leaseTTL)
			return
		}
		env.advance(leaseTTL)
		time.Sleep(leaseTTL)
		synctest.Wait()
	}
}

// teardown ends the check: it releases every blocked load and crashed
// node, lets the Gets finish (leases of crashed nodes expire on the way),
// and closes the caches and the store. Nothing outlives the bubble.
func (m *machine) teardown(t *rapid.T) {
	if os.Getenv("PADDOCK_PROPTEST_TRACE") != "" {
		fmt.Printf("---- check\n%s\n", m.historyString())
	}
	m.mu.Lock()
	m.closing = true
	m.down = false
	m.mu.Unlock()
	if m.env.setDown != nil {
		m.env.setDown(false)
	}
	close(m.dead)
	settle(t, m.env, "Gets", func() (pending int) {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, g := range m.gets {
			if !g.done {
				pending++
			}
		}
		return pending
	})
	for _, n := range m.all {
		n.cache.Close()
	}
	m.env.close()
}
