package proptest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/hooks"
	"pgregory.net/rapid"
)

// weights makes rapid draw some actions more often than others: rapid
// draws action names uniformly, so an action of weight w gets w names.
var weights = map[string]int{"Get": 4, "Step": 4, "Invalidate": 2}

// nestedWeights are the weights of a check with layered keys: an outer
// value takes a dozen Steps to build.
var nestedWeights = map[string]int{"Get": 4, "Step": 6, "Invalidate": 2, "GetOuter": 3, "Drive": 2}

func actions(m *machine) map[string]func(*rapid.T) {
	acts := rapid.StateMachineActions(m)
	w := weights
	if m.cfg.nested {
		w = nestedWeights
	} else {
		delete(acts, "GetOuter")
		delete(acts, "InvalidateOuter")
		delete(acts, "Drive")
	}
	for name, w := range w {
		for i := 2; i <= w; i++ {
			acts[fmt.Sprintf("%s%d", name, i)] = acts[name]
		}
	}
	return acts
}

// Get starts a Get of a row on a node. It returns at once if the value is
// at hand, or blocks on a load, which rapid moves on with Step.
//
// On the Remote path (whose store calls time out) the reply of the Get's
// first lookup (its own, its flight's, or its retry's) may be slow: the
// store answers at once, the node hears the answer after the next one to
// three actions, or loses it if time passes first (the call times out).
//
// Half the time it reads the row the last Get read, on the same node, so
// that Gets often meet in one flight.
func (m *machine) Get(t *rapid.T) { m.get(t, false) }

// get starts a Get of a row, or of an outer key if outer: half the time
// the key the last Get of its kind read, on the same node (if it is up),
// else a key of its kind on a node drawn.
func (m *machine) get(t *rapid.T, outer bool) {
	keys, label := rowKeys, "key"
	m.mu.Lock()
	last := m.lastGet
	if outer {
		keys, label, last = outerKeys, "outerKey", m.lastOuter
	}
	m.mu.Unlock()
	var n *node
	var key string
	if last != nil && !last.node.crashed && rapid.Bool().Draw(t, "again") {
		n, key = last.node, last.key
	} else {
		n = m.drawNode(t)
		key = rapid.SampledFrom(keys).Draw(t, label)
	}
	m.startGet(n, key, m.drawSlow(t))
	m.settle()
}

// drawSlow draws how many actions later a Get's first lookup reply
// arrives: 0 (at once) or, on the Remote path, one to three.
func (m *machine) drawSlow(t *rapid.T) int {
	if m.cfg.remote && rapid.IntRange(0, 2).Draw(t, "slowLookup") == 0 {
		return rapid.IntRange(1, 3).Draw(t, "replyAfter")
	}
	return 0
}

// startGet starts a Get of key on n, the reply of its first lookup held
// for slow actions, and returns without waiting for anything.
func (m *machine) startGet(n *node, key string, slow int) *getRec {
	switch slow {
	case 0:
		m.begin("get %s on node %d", key, n.id)
	case holdUntilDelivered:
		m.begin("get %s on node %d (its first lookup reply held)", key, n.id)
	default:
		m.begin("get %s on node %d (its first lookup reply arrives %d actions later)", key, n.id, slow)
	}
	m.mu.Lock()
	m.nextID++
	g := &getRec{id: m.nextID, node: n, key: key, start: m.step, startAt: time.Now()}
	m.gets = append(m.gets, g)
	m.getByID[g.id] = g
	m.getTags[g.id] = earlyTags[key]
	if isOuter(key) {
		m.lastOuter = g
	} else {
		m.lastGet = g
	}
	if slow > 0 {
		m.holdFor[g.id] = slow
	}
	m.logf("  get %d starts", g.id)
	m.mu.Unlock()

	ctx := context.WithValue(context.Background(), getIDKey{}, g.id)
	opts := []paddock.GetOption{}
	if tags := earlyTags[key]; len(tags) > 0 {
		opts = append(opts, paddock.Tags(tags...))
	}
	go func() {
		r, err := n.loaderOf(key).Fetch(ctx, key, m.loadFuncFor(n, key, g.id), opts...)
		m.getDone(g, r, err)
	}()
	return g
}

// Overtake is a Get whose first lookup reply is overtaken: the store
// answers it at once, but before the node hears the answer an invalidation
// of the row (or of one of its tags) returns, and perhaps a second Get of
// the row starts on the node, which on the Remote path joins the first
// Get's flight (its own first lookup reply slow too). Then the first reply
// arrives. Only on the Remote path, whose store calls time out.
func (m *machine) Overtake(t *rapid.T) {
	if !m.cfg.remote {
		t.Skip("a local store's calls do not time out")
	}
	n := m.drawNode(t)
	key := rapid.SampledFrom(rowKeys).Draw(t, "key")
	g := m.startGet(n, key, holdUntilDelivered)
	m.settle()
	var keys, tags []string
	if rapid.Bool().Draw(t, "byTag") {
		tags = []string{rapid.SampledFrom(tagsOf(key)).Draw(t, "tag")}
	} else {
		keys = []string{key}
	}
	m.invalidate(m.drawNode(t), keys, tags, rapid.Bool().Draw(t, "writeFirst"), rapid.IntRange(0, 3).Draw(t, "soft") == 0)
	if rapid.IntRange(0, 3).Draw(t, "secondGet") > 0 {
		m.startGet(n, key, m.drawSlow(t))
		m.settle()
	}
	m.mu.Lock()
	m.logf("  the first lookup reply of get %d arrives", g.id)
	for i := range m.replies {
		if m.replies[i].gid == g.id {
			m.replies[i].due = m.step
		}
	}
	m.mu.Unlock()
	m.settle()
}

// Peek reads a row on a node without loading it. What it finds obeys the
// same invariants as what a Get returns.
func (m *machine) Peek(t *rapid.T) {
	n := m.drawNode(t)
	key := rapid.SampledFrom(rowKeys).Draw(t, "key")
	m.begin("peek %s on node %d", key, n.id)
	m.mu.Lock()
	m.nextID++
	g := &getRec{id: m.nextID, node: n, key: key, start: m.step, startAt: time.Now(), peek: true}
	m.gets = append(m.gets, g)
	m.getByID[g.id] = g
	m.mu.Unlock()
	r, found, err := n.loader.Peek(context.Background(), key)
	if !found && err == nil {
		err = errNothing
	}
	m.getDone(g, r, err)
	m.settle()
}

// GetMany starts a GetMany of every row on a node: one batch load for the
// keys it holds the leases of, and one Get for each of the others.
func (m *machine) GetMany(t *rapid.T) {
	n := m.drawNode(t)
	m.begin("get-many %v on node %d", rowKeys, n.id)
	m.mu.Lock()
	m.nextID++
	gid := m.nextID
	var recs []*getRec
	var early []string
	for _, key := range rowKeys {
		g := &getRec{id: gid, node: n, key: key, start: m.step, startAt: time.Now(), many: true}
		m.gets = append(m.gets, g)
		recs = append(recs, g)
		early = append(early, earlyTags[key]...)
	}
	m.getTags[gid] = early
	m.logf("  get-many %d starts", gid)
	m.mu.Unlock()

	ctx := context.WithValue(context.Background(), getIDKey{}, gid)
	go func() {
		vals, err := n.loader.GetMany(ctx, rowKeys, m.batchFunc(n, gid), paddock.Tags(early...))
		for _, g := range recs {
			v, ok := vals[g.key]
			switch {
			case ok:
				m.getDone(g, paddock.Result[string]{Value: v}, nil)
			case err != nil:
				m.getDone(g, paddock.Result[string]{}, err)
			default:
				m.getDone(g, paddock.Result[string]{}, paddock.ErrNotFound)
			}
		}
	}()
	m.settle()
}

// Step moves a load on by one step: a load that has not read its row
// reads it (and names its late tags); one that has returns its value.
// Now and then the load fails instead; a background refresh fails more
// often (its callers got the stale value; a caller that joins it later
// may get the value again, as stale-if-error, when it fails).
func (m *machine) Step(t *rapid.T) {
	s := m.drawSource(t, func(s *source) bool { return (s.state == running || s.state == hasRead) && !s.reading })
	m.mu.Lock()
	st, refresh := s.state, s.refresh
	left := len(inputsOf[s.key]) - len(s.inputs)
	m.mu.Unlock()
	failOdds := 5
	switch {
	case refresh:
		failOdds = 1
	case m.cfg.nested:
		failOdds = 12 // an outer value needs many loads to succeed
	}
	if rapid.IntRange(0, failOdds).Draw(t, "fail") == failOdds {
		m.begin("load %d fails", s.id)
		s.cmds <- cmdFail
	} else if st == running && isOuter(s.key) {
		// An outer load reads its next input with a nested read, which
		// may start an inner load that Step moves on in turn.
		modes := []cmd{cmdNestGet, cmdNestPeek}
		if left > 1 {
			modes = append(modes, cmdNestMany)
		}
		c := rapid.SampledFrom(modes).Draw(t, "nested")
		m.begin("load %d reads its next input (%v)", s.id, c)
		s.cmds <- c
	} else if st == running {
		m.begin("load %d reads row %s", s.id, s.key)
		s.cmds <- cmdRead
	} else {
		if !s.node.crashed && rapid.IntRange(0, 2).Draw(t, "joinFirst") == 0 {
			// A Get of the row arrives on the load's node just before
			// the load returns: it may join the load's flight, and then
			// takes its value only if the join rule allows.
			m.startGet(s.node, s.key, 0)
			m.settle()
		}
		m.begin("load %d finishes", s.id)
		s.cmds <- cmdFinish
	}
	m.settle()
}

// Write commits a new version of a row without telling the cache. A Get
// may keep returning the old row until the key or a tag is invalidated.
func (m *machine) Write(t *rapid.T) {
	key := rapid.SampledFrom(rowKeys).Draw(t, "key")
	m.begin("write row %s", key)
	m.mu.Lock()
	m.db[key]++
	m.logf("  row %s is v%d", key, m.db[key])
	m.mu.Unlock()
	m.settle()
}

// Invalidate invalidates a key or a tag from a node, hard or soft
// (MarkStale), after writing the rows it covers (the writer's order:
// commit, then invalidate) or not.
func (m *machine) Invalidate(t *rapid.T) {
	n := m.drawNode(t)
	var keys, tags []string
	if rapid.Bool().Draw(t, "byTag") {
		tags = []string{rapid.SampledFrom(rowTags).Draw(t, "tag")}
	} else {
		keys = []string{rapid.SampledFrom(rowKeys).Draw(t, "key")}
	}
	write := rapid.Bool().Draw(t, "writeFirst")
	soft := rapid.IntRange(0, 3).Draw(t, "soft") == 0
	m.invalidate(n, keys, tags, write, soft)
}

// invalidate invalidates keys and tags from node n, hard or soft, after
// writing the rows they cover if write.
func (m *machine) invalidate(n *node, keys, tags []string, write, soft bool) {
	m.invalidateNow(n, keys, tags, write, soft)
	m.settle()
}

// invalidateNow is invalidate without waiting for the effects to settle:
// it may run inside a store call.
func (m *machine) invalidateNow(n *node, keys, tags []string, write, soft bool) {
	byTag := len(tags) > 0
	kind := "invalidate"
	if soft {
		kind = "mark-stale"
	}
	m.begin("%s keys %v tags %v from node %d (write first: %v)", kind, keys, tags, n.id, write)
	touched := slices.Clone(keys)
	for _, tag := range tags {
		touched = append(touched, keysOf(tag)...)
	}
	if write {
		m.mu.Lock()
		for _, k := range touched {
			m.db[k]++
			m.logf("  row %s is v%d", k, m.db[k])
		}
		m.mu.Unlock()
	}

	ctx := context.Background()
	var err error
	switch full := n.fullKeys(keys); {
	case soft && byTag:
		err = n.cache.MarkStaleTags(ctx, tags...)
	case soft:
		err = n.cache.MarkStale(ctx, full...)
	case byTag:
		err = n.cache.InvalidateTags(ctx, tags...)
	default:
		err = n.cache.Invalidate(ctx, full...)
	}
	m.mu.Lock()
	inv := &invRec{step: m.step, kind: kind, keys: keys, tags: tags, soft: soft, ok: err == nil,
		pending: err != nil && errors.Is(err, paddock.ErrStoreUnavailable),
		node:    n, at: time.Now(), vers: make(map[string]int)}
	for _, k := range touched {
		inv.vers[k] = m.db[k]
	}
	if inv.ok {
		inv.dooms = m.doomedBy(n, keys, tags, false)
	}
	m.invs = append(m.invs, inv)
	m.logf("  %s returned %v", kind, err)
	m.count(fmt.Sprintf("%s ok %v", kind, err == nil))
	m.mu.Unlock()
}

// Set writes a new version of a row and puts it in the cache with
// Loader.Set, naming every tag of the row and, half the time, an extra tag
// that no row has (a listing the value appears in, say), so that the new
// value can carry a tag the key's old entry lacks.
//
// The Set may race an invalidation (after a write of the rows it covers,
// or not) of its key or one of its tags: landing between the Set's lookup
// and its fill (the Set must then be refused, and a refused Set leaves no
// entry of the key that predates it); or, when the store offers a gap
// inside its fill (memstore with hooks.FillTagGap), landing in that gap,
// and otherwise right before or right after the Set.
func (m *machine) Set(t *rapid.T) {
	n := m.drawNode(t)
	key := rapid.SampledFrom(rowKeys).Draw(t, "key")
	tags := tagsOf(key)
	extra := rapid.Bool().Draw(t, "extraTag")
	if extra {
		tags = append(tags, extraTag)
	}
	race := rapid.SampledFrom([]string{"none", "midway", "gap"}).Draw(t, "race")
	var racer func()
	if race != "none" {
		rn := m.drawNode(t)
		var rkeys, rtags []string
		switch {
		case extra && rapid.Bool().Draw(t, "raceExtraTag"):
			// The tag the key's older entries lack.
			rtags = []string{extraTag}
		case rapid.Bool().Draw(t, "raceByTag"):
			rtags = []string{rapid.SampledFrom(tags).Draw(t, "raceTag")}
		default:
			rkeys = []string{key}
		}
		write := rapid.Bool().Draw(t, "raceWriteFirst")
		racer = func() { m.invalidateNow(rn, rkeys, rtags, write, false) }
		if race == "gap" && !(m.env.fillGap && hooks.FillTagGap.Load()) {
			race = rapid.SampledFrom([]string{"before", "after"}).Draw(t, "raceAt")
		}
	}
	if race == "before" {
		racer()
		racer = nil
		m.settle()
	}
	m.begin("set row %s from node %d, tags %v (racing invalidation: %s)", key, n.id, tags, race)
	m.mu.Lock()
	m.db[key]++
	m.nextID++
	s := &source{id: m.nextID, set: true, node: n, key: key, begin: m.step, beginAt: time.Now(),
		read: m.step, ver: m.db[key], end: m.step, state: finished, setTags: tags}
	m.srcs[s.id] = s
	m.logf("  row %s is v%d; set %d", key, m.db[key], s.id)
	m.mu.Unlock()

	// The racing invalidation runs once, in the Set's own goroutine, at
	// the point drawn; if the Set never gets there (the store is down), it
	// does not run.
	var ran sync.Once
	once := func() {
		if racer != nil {
			ran.Do(racer)
		}
	}
	switch race {
	case "midway":
		m.mu.Lock()
		n.beforeSetFill = once
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			n.beforeSetFill = nil
			m.mu.Unlock()
		}()
	case "gap":
		gap := once
		if os, ok := m.env.store.(*outsideStore); ok {
			// The store's Fill runs outside the bubble: run the racer
			// back inside it.
			gap = func() { os.out.inside(once) }
		}
		hooks.FillGap.Store(&gap)
		defer hooks.FillGap.Store(nil)
	}
	m.mu.Lock()
	n.setFills = 0
	m.mu.Unlock()
	err := n.loader.Set(context.Background(), key, s.value(), paddock.Tags(tags...))

	m.mu.Lock()
	// A Set the Cache refuses itself, because an invalidation of the key
	// or a tag is pending there, never reaches the store: what binds then
	// is that pending invalidation, as the model has it.
	refused := errors.Is(err, paddock.ErrFenced) && n.setFills > 0
	inv := &invRec{step: m.step, kind: "set", keys: []string{key}, ok: err == nil, node: n, at: time.Now(),
		vers: map[string]int{key: s.ver}, refused: refused, setBegin: s.begin, src: s}
	if inv.ok {
		// The Set invalidates the key's dependency tag once written.
		inv.dooms = m.doomedBy(n, inv.keys, nil, true)
	}
	m.invs = append(m.invs, inv)
	m.logf("  set returned %v", err)
	if errors.Is(err, paddock.ErrFenced) && !refused {
		m.logf("  (refused by the Cache: a pending invalidation covers it)")
	}
	m.mu.Unlock()
	m.settle()
	if race == "after" {
		once()
		m.settle()
	}
}

// LateWrite writes through the contexts of loads that have finished, as
// a goroutine that a load started and that outlived it would: it gives
// the value a day's TTL and a tag. A load that is over writes to nothing;
// the load that reuses its context's state (a load of any key, on the
// same node) must not take these writes for its own: its entry would
// outlive its window.
func (m *machine) LateWrite(t *rapid.T) {
	m.mu.Lock()
	kept := slices.Clone(m.kept)
	m.mu.Unlock()
	if len(kept) == 0 {
		t.Skip("no load has finished")
	}
	m.begin("late writes through %d kept load contexts", len(kept))
	for _, ctx := range kept {
		paddock.SetTTL(ctx, 24*time.Hour)
		paddock.Tag(ctx, "late")
	}
	m.settle()
}

// Advance moves time forward: within the fresh window, past the lease, to
// the end of the fresh window, into and past the stale window.
func (m *machine) Advance(t *rapid.T) {
	d := rapid.SampledFrom([]time.Duration{
		time.Second, 3 * time.Second, leaseTTL, ttl, staleFor,
	}).Draw(t, "by")
	m.begin("advance %v", d)
	m.env.advance(d)
	time.Sleep(d)
	m.settle()
}

// Fault brings the store back if it is down; otherwise it crashes a node,
// cuts the nodes off the store, or (where the store supports it) flushes
// or restarts the store.
func (m *machine) Fault(t *rapid.T) {
	m.mu.Lock()
	down := m.down
	m.mu.Unlock()
	if down {
		m.outage(false)
		return
	}
	kinds := []string{"crash", "outage"}
	if m.env.flush != nil {
		kinds = append(kinds, "flush")
	}
	if m.env.restart != nil {
		kinds = append(kinds, "restart")
	}
	if m.env.flushNode != nil {
		kinds = append(kinds, "flush-node")
	}
	switch rapid.SampledFrom(kinds).Draw(t, "fault") {
	case "crash":
		m.crash(m.drawNode(t))
	case "outage":
		m.outage(true)
	case "flush":
		m.begin("flush the store")
		m.env.flush()
		m.lose()
		m.settle()
	case "restart":
		m.begin("restart the store")
		m.env.restart()
		m.lose()
		m.settle()
	case "flush-node":
		i := rapid.IntRange(0, 2).Draw(t, "storeNode")
		m.begin("flush store node %d", i)
		m.env.flushNode(i)
		m.lose()
		m.settle()
	}
}

// lose records that the store lost everything: entries, versions and
// leases. Loads that began before hold no lease any more.
func (m *machine) lose() {
	m.mu.Lock()
	m.lost = m.step
	m.trouble = time.Now()
	m.mu.Unlock()
}

// crash drops node n: it makes no more store calls, its loads never
// return and its leases expire on their own. A fresh node takes its slot.
func (m *machine) crash(n *node) {
	m.begin("crash node %d", n.id)
	m.mu.Lock()
	n.crashed, n.crashedAt = true, time.Now()
	for _, s := range m.sortedSources() {
		if s.node == n && (s.state == running || s.state == hasRead) {
			s.state = crashed
		}
	}
	m.mu.Unlock()
	nn := m.newNode(n.slot)
	m.mu.Lock()
	m.nodes[n.slot] = nn
	m.logf("  node %d takes slot %d", nn.id, n.slot)
	m.mu.Unlock()
	m.settle()
}

// outage cuts every node off the store, or reconnects them. The store
// keeps its state.
func (m *machine) outage(down bool) {
	m.begin("store down: %v", down)
	if m.env.setDown != nil {
		m.env.setDown(down)
	}
	m.mu.Lock()
	m.down = down
	m.trouble = time.Now()
	if down {
		m.outages = append(m.outages, outageRec{from: time.Now()})
	} else {
		m.outages[len(m.outages)-1].to = time.Now()
	}
	m.mu.Unlock()
	m.settle()
}

func (m *machine) drawNode(t *rapid.T) *node {
	m.mu.Lock()
	nodes := slices.Clone(m.nodes)
	m.mu.Unlock()
	return nodes[rapid.IntRange(0, len(nodes)-1).Draw(t, "node")]
}

// drawSource draws a load in a state that ok accepts, or skips the action.
// Loads are ordered by when they began, key and node, not by id, so that a
// draw means the same load however the scheduler numbered them.
func (m *machine) drawSource(t *rapid.T, ok func(*source) bool) *source {
	m.mu.Lock()
	var cands []*source
	for _, s := range m.sortedSources() {
		if !s.set && !s.node.crashed && s.batch[0] == s && ok(s) {
			cands = append(cands, s)
		}
	}
	m.mu.Unlock()
	if len(cands) == 0 {
		t.Skip("no such load")
	}
	slices.SortStableFunc(cands, func(a, b *source) int {
		switch {
		case a.begin != b.begin:
			return a.begin - b.begin
		case a.key != b.key:
			return strings.Compare(a.key, b.key)
		default:
			return a.node.slot - b.node.slot
		}
	})
	return cands[rapid.IntRange(0, len(cands)-1).Draw(t, "load")]
}

func (m *machine) sortedSources() []*source {
	ss := make([]*source, 0, len(m.srcs))
	for _, s := range m.srcs {
		ss = append(ss, s)
	}
	slices.SortFunc(ss, func(a, b *source) int { return a.id - b.id })
	return ss
}

func (n *node) fullKeys(keys []string) []string {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = fullKey(k)
	}
	return full
}
