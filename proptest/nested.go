package proptest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/store"
	"pgregory.net/rapid"
)

// Layered keys. Besides the rows, each node has two more Loaders of its
// Cache, whose loads read other keys with nested reads (a Get, Fetch,
// GetMany or Peek made with the load's context), so that the outer entry
// depends on the inner keys and their tags:
//
//	list "ab"   (namespace "list") reads rows a and b
//	page "home" (namespace "page") reads list "ab": page -> list -> rows
//
// An outer load is stepped like a row load: each Step reads its next input
// (a nested Fetch, a Peek that falls back to a Fetch when it finds
// nothing, or a GetMany of the list's two rows), and a nested read may
// start an inner load that Step moves on in turn; once every input is
// read, Step finishes (or fails) it. So invalidations of the inner keys
// and of the rows' tags land at every point of the outer and inner loads.
// An outer value is "key#id@v0(inputs)": the values it was built from.
const (
	listKey = "ab"
	pageKey = "home"
	// outerTTL is longer than the rows' TTL, so that an outer value built
	// from an older inner value is kept only as long as its input.
	outerTTL = 2 * ttl
)

var (
	outerKeys = []string{listKey, pageKey}
	// inputsOf lists the keys an outer key's load reads, in order.
	inputsOf = map[string][]string{listKey: {"a", "b"}, pageKey: {listKey}}
)

// Commands to an outer load: read the next input with a nested Fetch,
// Peek (and Fetch if it finds nothing), or GetMany of every input left.
const (
	cmdNestGet cmd = iota + 10
	cmdNestPeek
	cmdNestMany
)

func (c cmd) String() string {
	switch c {
	case cmdRead:
		return "read"
	case cmdFinish:
		return "finish"
	case cmdFail:
		return "fail"
	case cmdNestGet:
		return "nested get"
	case cmdNestPeek:
		return "nested peek"
	case cmdNestMany:
		return "nested get-many"
	}
	return fmt.Sprintf("cmd(%d)", uint8(c))
}

func isOuter(key string) bool { _, ok := inputsOf[key]; return ok }

// nsOf returns the namespace of a row or outer key.
func nsOf(key string) string {
	switch key {
	case listKey:
		return "list"
	case pageKey:
		return "page"
	}
	return namespace
}

// fullKey returns the store key of a row or outer key.
func fullKey(key string) string { return nsOf(key) + ":" + key }

// shortKey is the inverse of fullKey.
func shortKey(full string) string {
	if _, k, ok := strings.Cut(full, ":"); ok {
		return k
	}
	return full
}

func ttlOf(key string) time.Duration {
	if isOuter(key) {
		return outerTTL
	}
	return ttl
}

// newLoader returns the Loader of namespace ns on c, with the machine's
// options.
func (m *machine) newLoader(c *paddock.Cache, ns string) *paddock.Loader[string] {
	t := ttl
	if ns != namespace {
		t = outerTTL
	}
	l, err := paddock.NewLoader[string](c, ns,
		paddock.TTL(t), paddock.Stale(staleFor), paddock.Beta(m.cfg.beta),
		paddock.StaleIfError(m.cfg.staleIfError),
		paddock.LoadTimeout(m.cfg.loadTimeout), paddock.NegativeTTL(0))
	if err != nil {
		m.t.Fatalf("paddock.NewLoader: %v", err)
	}
	return l
}

func (n *node) loaderOf(key string) *paddock.Loader[string] {
	switch nsOf(key) {
	case "list":
		return n.lists
	case "page":
		return n.pages
	}
	return n.loader
}

// loadFuncFor is the load of key for Get gid on node n.
func (m *machine) loadFuncFor(n *node, key string, gid int) paddock.LoadFunc[string] {
	if !isOuter(key) {
		return m.loadFunc(n, key, gid)
	}
	return func(ctx context.Context) (string, error) { return m.runOuter(ctx, n, key, gid) }
}

// An inRec is one input of an outer load: the value a nested read
// returned and how.
type inRec struct {
	src    *source
	status paddock.Status // 0 for a GetMany's, which does not report it
	at     time.Time      // when the nested read began
	step   int
	how    string
}

// stale reports whether the nested read served the input stale: the
// outer value must then be stored already stale.
func (in inRec) stale() bool {
	return in.status == paddock.StatusStale || in.status == paddock.StatusStaleIfError
}

func (in inRec) String() string {
	st := "?"
	if in.status != 0 {
		st = in.status.String()
	}
	return fmt.Sprintf("%s (%s, %s at step %d)", in.src.value(), st, in.how, in.step)
}

// GetOuter starts a Get of an outer key on a node, like Get does for rows.
func (m *machine) GetOuter(t *rapid.T) { m.get(t, true) }

// Drive moves loads on by several steps in one action, none failing (in
// checks with outer keys, whose values take many steps to build): each
// step reads the next input of a load or its row, or finishes it.
func (m *machine) Drive(t *rapid.T) {
	if !m.cfg.nested {
		t.Skip("no outer keys")
	}
	steps := rapid.IntRange(2, 8).Draw(t, "steps")
	for i := 0; i < steps; i++ {
		var cands []*source
		m.mu.Lock()
		for _, s := range m.sortedSources() {
			if !s.set && !s.node.crashed && s.batch[0] == s && (s.state == running || s.state == hasRead) && !s.reading {
				cands = append(cands, s)
			}
		}
		m.mu.Unlock()
		if len(cands) == 0 {
			if i == 0 {
				t.Skip("no load to drive")
			}
			return
		}
		s := cands[rapid.IntRange(0, len(cands)-1).Draw(t, "load")]
		m.mu.Lock()
		st := s.state
		m.mu.Unlock()
		switch {
		case st == hasRead:
			m.begin("load %d finishes (driven)", s.id)
			s.cmds <- cmdFinish
		case isOuter(s.key):
			m.begin("load %d reads its next input (driven)", s.id)
			s.cmds <- cmdNestGet
		default:
			m.begin("load %d reads row %s (driven)", s.id, s.key)
			s.cmds <- cmdRead
		}
		m.settle()
	}
}

// InvalidateOuter invalidates an outer key from a node, hard or soft: the
// page depends on the list's key.
func (m *machine) InvalidateOuter(t *rapid.T) {
	n := m.drawNode(t)
	key := rapid.SampledFrom(outerKeys).Draw(t, "outerKey")
	m.invalidate(n, []string{key}, nil, false, rapid.IntRange(0, 3).Draw(t, "soft") == 0)
}

// runOuter is the load of an outer key: it registers with the model and
// reads its inputs with nested reads, one Step at a time.
func (m *machine) runOuter(ctx context.Context, n *node, key string, gid int) (string, error) {
	ss := m.beginLoad(n, []string{key}, gid)
	if ss == nil { // a crashed node, or the check is over
		<-m.dead
		return "", errCrashed
	}
	s := ss[0]
	for {
		var c cmd
		select {
		case c = <-s.cmds:
		case <-ctx.Done():
			m.endLoad(ss, failed, "load timeout")
			return "", ctx.Err()
		case <-m.dead:
			return "", errCrashed
		}
		switch c {
		case cmdNestGet, cmdNestPeek, cmdNestMany:
			if err := m.nestedRead(ctx, n, s, c); err != nil {
				m.endLoad(ss, failed, "a nested read failed")
				return "", err
			}
		case cmdFinish:
			m.mu.Lock()
			var parts []string
			for _, in := range s.inputs {
				parts = append(parts, in.src.value())
			}
			s.val = fmt.Sprintf("%s#%d@v0(%s)", s.key, s.id, strings.Join(parts, ","))
			v := s.val
			m.mu.Unlock()
			m.endLoad(ss, finished, "")
			return v, nil
		case cmdFail:
			m.endLoad(ss, failed, "")
			return "", errLoad
		}
	}
}

// nestedRead reads the next input of outer load s (every input left, for
// a GetMany), on the load's context.
func (m *machine) nestedRead(ctx context.Context, n *node, s *source, c cmd) error {
	m.mu.Lock()
	keys := inputsOf[s.key][len(s.inputs):]
	if c != cmdNestMany {
		keys = keys[:1]
	}
	s.reading = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		s.reading = false
		if len(s.inputs) == len(inputsOf[s.key]) && s.state == running {
			s.state, s.read = hasRead, m.step
		}
		m.mu.Unlock()
	}()
	switch c {
	case cmdNestMany:
		return m.nestedMany(ctx, n, s, keys)
	case cmdNestPeek:
		g := m.newNestedGet(n, keys[0], s, "peek")
		r, found, err := n.loaderOf(keys[0]).Peek(context.WithValue(ctx, getIDKey{}, g.id), keys[0])
		if !found && err == nil {
			err = errNothing
		}
		m.getDone(g, r, err)
		if err == nil {
			return m.addInput(s, g, r.Value, r.Status)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return m.nestedGet(ctx, n, s, keys[0])
}

func (m *machine) nestedGet(ctx context.Context, n *node, s *source, key string) error {
	g := m.newNestedGet(n, key, s, "get")
	var opts []paddock.GetOption
	if tags := earlyTags[key]; len(tags) > 0 {
		opts = append(opts, paddock.Tags(tags...))
	}
	r, err := n.loaderOf(key).Fetch(context.WithValue(ctx, getIDKey{}, g.id), key, m.loadFuncFor(n, key, g.id), opts...)
	m.getDone(g, r, err)
	if err != nil {
		return err
	}
	return m.addInput(s, g, r.Value, r.Status)
}

func (m *machine) nestedMany(ctx context.Context, n *node, s *source, keys []string) error {
	m.mu.Lock()
	m.nextID++
	gid := m.nextID
	var recs []*getRec
	var early []string
	for _, key := range keys {
		g := &getRec{id: gid, node: n, key: key, start: m.step, startAt: time.Now(), many: true, parent: s}
		m.gets = append(m.gets, g)
		recs = append(recs, g)
		early = append(early, earlyTags[key]...)
	}
	m.getTags[gid] = early
	m.logf("  nested get-many %d of %v in load %d", gid, keys, s.id)
	m.mu.Unlock()
	vals, err := n.loader.GetMany(context.WithValue(ctx, getIDKey{}, gid), keys, m.batchFunc(n, gid), paddock.Tags(early...))
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
	for _, g := range recs {
		v, ok := vals[g.key]
		if !ok {
			if err == nil {
				err = paddock.ErrNotFound
			}
			return err
		}
		if err := m.addInput(s, g, v, 0); err != nil {
			return err
		}
	}
	return nil
}

func (m *machine) newNestedGet(n *node, key string, s *source, how string) *getRec {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	g := &getRec{id: m.nextID, node: n, key: key, start: m.step, startAt: time.Now(), parent: s, peek: how == "peek"}
	m.gets = append(m.gets, g)
	m.getByID[g.id] = g
	m.getTags[g.id] = earlyTags[key]
	m.logf("  nested %s %d of %s in load %d", how, g.id, key, s.id)
	return g
}

// addInput records that outer load s read value v with nested read g,
// and the tags its flight now knows: the input's dependency tag and the
// tags of its entry.
func (m *machine) addInput(s *source, g *getRec, v string, st paddock.Status) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := parseString(v)
	src := m.srcs[id]
	if !ok || src == nil || src.key != g.key {
		m.violate("I0 model: a nested read returned a value of no known source", "nested read %d of %s returned %q", g.id, g.key, v)
		return errNothing
	}
	how := "get"
	switch {
	case g.many:
		how = "get-many"
	case g.peek:
		how = "peek"
	}
	s.inputs = append(s.inputs, inRec{src: src, status: st, at: g.startAt, step: g.start, how: how})
	m.count(fmt.Sprintf("nested %s of %s into %s: %v", how, nsOf(src.key), nsOf(s.key), st))
	s.known = append(s.known, paddock.DependencyTag(fullKey(src.key)))
	s.known = append(s.known, entryTags(src)...)
	return nil
}

// entryTags returns tags that the entry of source x carries (those the
// model can be sure of).
func entryTags(x *source) []string {
	if x.set {
		return x.setTags
	}
	if !isOuter(x.key) {
		return tagsOf(x.key)
	}
	var tags []string
	for _, in := range x.inputs {
		tags = append(tags, paddock.DependencyTag(fullKey(in.src.key)))
		tags = append(tags, entryTags(in.src)...)
	}
	return tags
}

// depKeys returns the keys whose invalidation (or Set) invalidates x's
// value: its own key and its inputs', transitively.
func depKeys(x *source) []string {
	keys := []string{x.key}
	for _, in := range x.inputs {
		keys = append(keys, depKeys(in.src)...)
	}
	return keys
}

// depTags returns the tags whose invalidation invalidates x's value: the
// tags of its row inputs' entries, transitively.
func depTags(x *source) []string {
	if !isOuter(x.key) {
		if x.set {
			return x.setTags
		}
		return tagsOf(x.key)
	}
	var tags []string
	for _, in := range x.inputs {
		tags = append(tags, depTags(in.src)...)
	}
	return tags
}

// staticKeys returns the keys an entry of key may depend on, key
// included; staticTags, the tags. For invariant 2's doomed exception.
func staticKeys(key string) []string {
	keys := []string{key}
	for _, k := range inputsOf[key] {
		keys = append(keys, staticKeys(k)...)
	}
	return keys
}

func staticTags(key string) []string {
	tags := []string{extraTag}
	for _, k := range staticKeys(key) {
		tags = append(tags, tagsOf(k)...)
	}
	return tags
}

// affectsSrc reports whether inv invalidates source x's value: it names
// one of its keys or tags, or it is a Set of one of its keys (other than
// x itself).
func affectsSrc(inv *invRec, x *source) bool {
	keys := depKeys(x)
	if inv.kind == "set" {
		return inv.src != x && slices.Contains(keys, inv.keys[0])
	}
	for _, k := range inv.keys {
		if slices.Contains(keys, k) {
			return true
		}
	}
	if len(inv.tags) == 0 {
		return false
	}
	tags := depTags(x)
	for _, t := range inv.tags {
		if slices.Contains(tags, t) {
			return true
		}
	}
	return false
}

// closure returns the inputs of s, transitively, each once, innermost
// first.
func closure(s *source) []*source {
	var out []*source
	var walk func(x *source)
	walk = func(x *source) {
		for _, in := range x.inputs {
			walk(in.src)
			if !slices.Contains(out, in.src) {
				out = append(out, in.src)
			}
		}
	}
	walk(s)
	return out
}

// lastFor returns the last invalidation (or Set) that affects x's value
// and that ok accepts.
func (m *machine) lastFor(x *source, ok func(*invRec) bool) *invRec {
	for i := len(m.invs) - 1; i >= 0; i-- {
		if inv := m.invs[i]; ok(inv) && affectsSrc(inv, x) {
			return inv
		}
	}
	return nil
}

// windows returns when source x's value stops being fresh, servable
// stale, and servable after a failed load, as its load kept it: its own
// TTL and windows from when it was loaded, cut to those of its inputs as
// its nested reads saw them (an input read stale ends its freshness at
// once). A store whose clock runs ahead keeps them shorter still.
func (m *machine) windows(x *source) (fresh, stale, errEnd time.Time) {
	base := x.endAt
	if x.set {
		base = x.beginAt
	}
	t := ttlOf(x.key)
	fresh, stale, errEnd = base.Add(t), base.Add(t+staleFor), base.Add(t+m.cfg.staleIfError)
	for _, in := range x.inputs {
		f, s, e := m.windows(in.src)
		if in.stale() {
			f = in.at
		}
		fresh, stale, errEnd = earlier(fresh, f), earlier(stale, s), earlier(errEnd, e)
	}
	fresh = later(fresh, base)
	return fresh, later(stale, fresh), later(errEnd, fresh)
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// checkOuterGet checks invariants 6 and 8 for Get g of an outer key,
// which returned s's value. The caller holds m.mu.
//
// Invariant 6: a Get that began after an invalidation of an inner key, or
// of a tag an inner entry carries, returned never returns an outer value
// built, transitively, from an inner value older than that invalidation,
// nor one from an outer load that began before it; after a soft one, such
// a value only as stale.
//
// Invariant 8: an outer value is never served fresher than its inputs:
// not as a hit once an input's fresh window ended, if an input was read
// stale, or if an input is older than a soft invalidation of it; and not
// past the stale or stale-if-error window of an input.
func (m *machine) checkOuterGet(g *getRec, s *source) {
	m.count(fmt.Sprintf("get of %s: %v, %d inputs deep", nsOf(g.key), g.status, len(closure(s))))
	stale := g.status == paddock.StatusStale || g.status == paddock.StatusStaleIfError
	for _, x := range append(closure(s), s) {
		h := m.lastFor(x, func(inv *invRec) bool { return !inv.soft && m.bindsGet(inv, g) })
		switch {
		case h == nil:
		case x != s && (x.begin < h.step || !isOuter(x.key) && x.ver < h.vers[x.key]):
			m.violate("I6 nested: a Get of an outer key returned a value built from an inner value older than an invalidation that returned before the Get began",
				"get %d of %s (started step %d) returned %s as %v, built from %v, older than the %v", g.id, g.key, g.start, g.val, g.status, x, h)
			return
		case x == s && x.begin < h.step:
			m.violate("I6 nested: a Get of an outer key returned a value from a load that began before an invalidation of one of its inputs that returned before the Get began",
				"get %d of %s (started step %d) returned %s as %v, from %v, which began before the %v", g.id, g.key, g.start, g.val, g.status, s, h)
			return
		}
		if g.many {
			continue
		}
		sv := m.lastFor(x, func(inv *invRec) bool { return inv.ok && inv.step < g.start })
		if sv == nil || !sv.soft || x.begin >= sv.step {
			continue
		}
		if x == s && !stale {
			m.violate("I6 nested: a Get of an outer key returned a value older than a soft invalidation of one of its inputs, not as stale",
				"get %d returned %s from %v as %v after the %v: only stale is allowed", g.id, g.val, s, g.status, sv)
			return
		}
		if x != s && g.status == paddock.StatusHit {
			m.violate("I8 nested-windows: a Get of an outer key returned as fresh a value built from an input older than a soft invalidation",
				"get %d returned %s as %v, built from %v, older than the %v", g.id, g.val, g.status, x, sv)
			return
		}
	}
	switch g.status {
	case paddock.StatusHit, paddock.StatusStale, paddock.StatusStaleIfError:
		if !s.filled {
			m.violate("I0 model: a Get returned a value from the store that was never filled", "get %d returned %s as %v from the store, but no fill of it was accepted", g.id, g.val, g.status)
			return
		}
		fresh, staleEnd, errEnd := m.windows(s)
		end := fresh
		switch g.status {
		case paddock.StatusStale:
			end = staleEnd
		case paddock.StatusStaleIfError:
			end = errEnd
		}
		if !g.startAt.Before(end) {
			m.violate(fmt.Sprintf("I8 nested-windows: a Get of an outer key that began past a window its inputs bound returned it as %v", g.status),
				"get %d (started at %v) returned %s as %v; by its own TTL and its inputs' windows it is fresh until %v, stale until %v, stale-if-error until %v",
				g.id, m.since(g.startAt), g.val, g.status, m.since(fresh), m.since(staleEnd), m.since(errEnd))
		}
	}
}

// checkNestedRead checks what a nested read g returned: a nested Get in
// a background refresh, or in a load started by a nested Get that needs
// a fresh value, takes no stale value (invariant 8). (A Peek may; a
// failed load may still fall back to stale-if-error.) The caller holds
// m.mu.
func (m *machine) checkNestedRead(g *getRec) {
	if g.peek || g.many || g.status != paddock.StatusStale || !m.needsFresh(g) {
		return
	}
	m.violate("I8 nested-windows: a nested Get inside a background refresh returned a stale value",
		"get %d of %s, in %v, returned %s as %v", g.id, g.key, g.parent, g.val, g.status)
}

// needsFresh reports whether nested read g needs a fresh value: the load
// it is made in is a background refresh, or was started by a nested Get
// that needs one.
func (m *machine) needsFresh(g *getRec) bool {
	p := g.parent
	if p == nil {
		return false
	}
	if p.refresh {
		return true
	}
	og := m.getByID[p.owner]
	return og != nil && og.parent != nil && !og.peek && !og.many && m.needsFresh(og)
}

// checkOuterStore checks invariants 6 and 8 on the store's outer
// entries: none is built from a value older than an invalidation of its
// inputs that has reached the store (6), none is served fresh after a soft
// invalidation of its inputs (6 for the outer load's own, 8 for an
// input's), or past an input's fresh window (8).
func (m *machine) checkOuterStore() {
	for _, key := range outerKeys {
		lk, err := m.env.peek(context.Background(), fullKey(key))
		if err != nil || (lk.State != store.StateFresh && lk.State != store.StateStale) {
			continue
		}
		m.mu.Lock()
		id, ok := parseValue(lk.Entry.Value)
		s := m.srcs[id]
		if !ok || s == nil {
			m.violate("I0 model: the store holds a value of no known source", "the store holds %q under %s", lk.Entry.Value, key)
			m.mu.Unlock()
			continue
		}
		for _, x := range append(closure(s), s) {
			if h := m.lastFor(x, func(inv *invRec) bool { return m.bindsStore(inv) }); h != nil && x.begin < h.step {
				m.violate("I6 nested: the store serves an outer value built from a value older than the last invalidation of its inputs",
					"the store holds %s (%v) under %s, built from %v, older than the %v", s.value(), lk.State, key, x, h)
				break
			}
			if lk.State != store.StateFresh {
				continue
			}
			if sv := m.lastFor(x, func(inv *invRec) bool { return inv.ok }); sv != nil && sv.soft && x.begin < sv.step {
				if x == s {
					m.violate("I6 nested: the store serves as fresh an outer value older than a soft invalidation of its inputs",
						"the store holds %s fresh under %s, from %v, older than the %v", s.value(), key, s, sv)
				} else {
					m.violate("I8 nested-windows: the store serves as fresh an outer value built from a value older than a soft invalidation",
						"the store holds %s fresh under %s, built from %v, older than the %v", s.value(), key, x, sv)
				}
				break
			}
		}
		if fresh, _, _ := m.windows(s); lk.State == store.StateFresh && !time.Now().Before(fresh) {
			m.violate("I8 nested-windows: the store serves as fresh an outer value past the fresh window of an input",
				"the store holds %s fresh under %s at %v; by its inputs it is fresh until %v", s.value(), key, m.since(time.Now()), m.since(fresh))
		}
		m.mu.Unlock()
	}
}
