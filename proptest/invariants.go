package proptest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/store"
	"pgregory.net/rapid"
)

// lastInv returns the last acknowledged invalidation (or Set) of row key
// that returned before step; soft ones count only if soft.
func (m *machine) lastInv(key string, before int, soft bool) *invRec {
	for i := len(m.invs) - 1; i >= 0; i-- {
		inv := m.invs[i]
		if inv.step < before && inv.ok && (soft || !inv.soft) && inv.affects(key) {
			return inv
		}
	}
	return nil
}

// lastHard returns the last invalidation (or Set) of row key that binds
// as a hard one: binds says which do.
func (m *machine) lastHard(key string, binds func(*invRec) bool) *invRec {
	for i := len(m.invs) - 1; i >= 0; i-- {
		inv := m.invs[i]
		if inv.affects(key) && binds(inv) {
			return inv
		}
	}
	return nil
}

// bindsGet reports whether the hard invalidation inv binds Get g: it was
// acknowledged before g began; or it failed (the store did not acknowledge
// it), and then it binds g at once if g runs on the node that made it (the
// Cache keeps it pending), and a Get on another node once the pending
// invalidation has reached the store (see fleetAt).
//
// Soft invalidations are invariant 3's (see lastInv): one that failed is
// not held against anyone. (While it is pending its node serves nothing it
// covers, but the model cannot tell when the retry lands, after which the
// node may serve the entries as stale.)
func (m *machine) bindsGet(inv *invRec, g *getRec) bool {
	switch {
	case inv.step >= g.start || inv.soft:
		return false
	case inv.ok:
		return true
	case !inv.pending:
		return false
	case inv.node == g.node:
		return true
	}
	at, ok := m.fleetAt(inv)
	return ok && !g.startAt.Before(at)
}

// bindsStore reports whether the hard invalidation inv binds the store's
// entries now: it was acknowledged, or it was pending and has reached the
// store since.
func (m *machine) bindsStore(inv *invRec) bool {
	if inv.soft {
		return false
	}
	if inv.ok {
		return true
	}
	if !inv.pending {
		return false
	}
	at, ok := m.fleetAt(inv)
	return ok && !time.Now().Before(at)
}

// fleetAt returns when a failed invalidation, which its node keeps pending
// and retries, has surely reached the store: retryBound after the store was
// first reachable again (and stayed so for retryBound) after the call
// returned. ok is false if that has not happened yet, or if the node
// crashed before: a pending invalidation lives in its process's memory.
// The caller holds m.mu.
func (m *machine) fleetAt(inv *invRec) (at time.Time, ok bool) {
	cands := []time.Time{inv.at}
	for _, o := range m.outages {
		if !o.to.IsZero() && o.to.After(inv.at) {
			cands = append(cands, o.to)
		}
	}
	for _, up := range cands {
		end := up.Add(retryBound)
		reachable := true
		for _, o := range m.outages {
			// Down at up, or down again before the retry surely landed.
			if !o.from.After(up) && (o.to.IsZero() || up.Before(o.to)) || !o.from.Before(up) && o.from.Before(end) {
				reachable = false
			}
		}
		if !reachable {
			continue
		}
		if inv.node.crashed && inv.node.crashedAt.Before(end) {
			return at, false
		}
		return end, true
	}
	return at, false
}

// checkGet checks what Get g returned (invariants 1 and 3). The caller
// holds m.mu.
func (m *machine) checkGet(g *getRec) {
	id, ok := parseString(g.val)
	s := m.srcs[id]
	if !ok || s == nil {
		m.violate("I0 model: a Get returned a value of no known source", "get %d returned %q", g.id, g.val)
		return
	}
	if s.key != g.key {
		m.violate("I0 model: a Get returned the value of another key", "get %d of %s returned %s", g.id, g.key, g.val)
		return
	}
	if g.parent != nil {
		m.checkNestedRead(g)
	}
	if isOuter(g.key) {
		m.checkOuterGet(g, s)
		return
	}
	// Invariant 1: a Get that starts after an invalidation returned never
	// takes a value from a load that began before it, and never a row
	// older than the row at that invalidation.
	// A stale value is invariant 3's: never after an invalidation.
	kind := "I1 fenced-read: a Get returned a value from a load that began before an invalidation that returned before the Get began"
	if g.status == paddock.StatusStale || g.status == paddock.StatusStaleIfError {
		kind = "I3 stale-window: a Get returned a stale value older than a hard invalidation that returned before the Get began"
	}
	if h := m.lastHard(g.key, func(inv *invRec) bool { return inv.src != s && m.bindsGet(inv, g) }); h != nil {
		if s.begin < h.step {
			m.violate(kind, "get %d (started step %d) returned %s as %v from %v, which began before the %v", g.id, g.start, g.val, g.status, s, h)
		} else if s.ver < h.vers[g.key] {
			m.violate(kind, "get %d (started step %d) returned row %s v%d, older than v%d at the %v", g.id, g.start, g.key, s.ver, h.vers[g.key], h)
		}
	}
	// A Set refused with ErrFenced leaves no entry of its key that
	// predates it.
	if g.status == paddock.StatusHit || g.status == paddock.StatusStale || g.status == paddock.StatusStaleIfError {
		if rs := m.refusedSet(g.key, g.start, s); rs != nil {
			m.violate("I1 refused-set: a Get returned an entry that predates a refused Set of its key",
				"get %d (started step %d) returned %s as %v, filled at step %d, before the %v, refused", g.id, g.start, g.val, g.status, s.fillStep, rs)
		}
	}
	// Invariant 3: a value older than a soft invalidation is served only
	// as stale; a value from the store only inside its windows.
	if g.many {
		return // no status to check
	}
	if sv := m.lastInv(g.key, g.start, true); sv != nil && sv.soft && s.begin < sv.step &&
		g.status != paddock.StatusStale && g.status != paddock.StatusStaleIfError {
		m.violate("I3 stale-window: a Get returned a value older than a soft invalidation, not as stale",
			"get %d returned %s from %v as %v after the %v: only stale is allowed", g.id, g.val, s, g.status, sv)
	}
	switch g.status {
	case paddock.StatusHit, paddock.StatusStale, paddock.StatusStaleIfError:
		if !s.filled {
			m.violate("I0 model: a Get returned a value from the store that was never filled", "get %d returned %s as %v from the store, but no fill of it was accepted", g.id, g.val, g.status)
			return
		}
		end := s.fillAt.Add(ttl)
		switch g.status {
		case paddock.StatusStale:
			end = end.Add(staleFor)
		case paddock.StatusStaleIfError:
			end = end.Add(m.cfg.staleIfError)
		}
		if !g.startAt.Before(end) {
			m.violate(fmt.Sprintf("I3 stale-window: a Get that began past a value's window returned it as %v", g.status),
				"get %d (started at %v) returned %s as %v, filled at %v: past its window (until %v)",
				g.id, m.since(g.startAt), g.val, g.status, m.since(s.fillAt), m.since(end))
		}
	}
}

// refusedSet returns a Set of row key refused (ErrFenced) before step
// before that began after source s's fill, if any: the fill's entry must
// be gone. The caller holds m.mu.
func (m *machine) refusedSet(key string, before int, s *source) *invRec {
	for _, inv := range m.invs {
		if inv.refused && inv.step < before && inv.keys[0] == key && s.filled && s.fillStep < inv.setBegin {
			return inv
		}
	}
	return nil
}

// checkOneLoad checks invariant 2 when load s begins: no other load of the
// key is in flight, in this process or in the fleet, unless it outlived its
// lease, an invalidation of the key broke its lease (see leaseBroken), an
// invalidation of the key or of a tag it carries doomed it (see doomed: it
// can no longer fill, and nobody who began after the invalidation waits for
// it: one load per key per invalidation), or one of the two could not reach
// the store (then no lease binds them, but within one process they still
// share one load). The caller holds m.mu.
func (m *machine) checkOneLoad(s *source) {
	for _, o := range m.sortedSources() {
		if o == s || o.set || o.key != s.key || (o.state != running && o.state != hasRead && o.state != crashed) {
			continue
		}
		if m.doomed(o) {
			continue
		}
		where := "in the fleet"
		if o.node == s.node {
			where = "in one process"
		}
		if o.asked < m.lost || s.asked < m.lost {
			// The store lost o's lease (flush, restart), or s's: a reply
			// held back past the loss hands s a lease the store no
			// longer has, and nothing binds the two.
			continue
		}
		if o.degraded || s.degraded {
			// No lease binds them, but one process still runs one load
			// (unless the first outlived the load's lease TTL).
			if o.degraded && s.degraded && o.node == s.node && s.beginAt.Before(o.beginAt.Add(leaseTTL)) {
				m.violate("I2 one-load: two loads of a key in flight in one process while the store was unavailable",
					"%v began while %v was in flight, both without the store, %s", s, o, where)
			}
			continue
		}
		if inv := m.leaseBroken(o, s); inv != nil {
			// The load with the broken lease can no longer fill: the
			// other was granted the lease at once rather than waiting
			// for a doomed load.
			m.count("load begins while a load whose lease an invalidation broke runs")
			continue
		}
		// The lease lasts leaseTTL by the store's clock from the lookup
		// that granted it.
		if !s.leaseAt.Before(o.leaseAt.Add(leaseTTL)) {
			// o outlived its lease. In one process that cannot happen
			// when loads end at the load timeout, before their lease.
			if o.node == s.node && o.state != crashed && m.cfg.loadTimeout <= leaseTTL {
				m.violate("I2 one-load: two loads of a key in flight in one process, though the load timeout is shorter than the lease",
					"%v began while %v was in flight", s, o)
			}
			continue
		}
		m.violate("I2 one-load: a load began while another load of its key was in flight within its lease "+where,
			"%v began while %v was in flight and within its lease, %s", s, o, where)
	}
}

// doomed reports whether an invalidation that affects o's key returned
// after load o began. A batch load's tags are those of all its keys; an
// outer load's, those its inputs may carry (see mayDoomOuter). The
// caller holds m.mu.
func (m *machine) doomed(o *source) bool {
	if hooks.WaitDoomed.Load() {
		return false // a doomed load keeps its lease and its flight
	}
	keys := []string{o.key}
	for _, b := range o.batch {
		keys = append(keys, b.key)
	}
	for _, inv := range m.invs {
		if isOuter(o.key) && inv.step >= o.begin && m.mayDoomOuter(inv, o.key) {
			return true
		}
		if inv.kind == "set" || inv.step < o.begin {
			continue
		}
		if slices.Contains(inv.keys, o.key) {
			return true
		}
		for _, k := range keys {
			for _, t := range inv.tags {
				if slices.Contains(tagsOf(k), t) {
					return true
				}
			}
		}
	}
	return false
}

// leaseBroken returns an invalidation that may have broken the lease of
// one of loads o and s between their lookups, if any. The store's
// Invalidate breaks the lease of every key it names, hard or soft (a tag
// names no lease, and a Set breaks none), because the load that holds it
// began before the invalidation and can no longer fill; the next lookup is
// granted the lease at once. So two loads of a key may overlap when an
// invalidation of the key lands between their lookups, in either order of
// their beginnings: the later lookup's load may begin first, while the
// reply of the earlier one is slow.
//
// The invalidation must name the key and have begun by the step the later
// lookup was answered. If it was acknowledged or failed for good, it
// reached the store during its call, so after the earlier lookup only if
// it began no earlier than that lookup was answered (a step of both counts:
// their order inside it is unknown); a pending one is retried until it
// lands, at any later step. The caller holds m.mu.
func (m *machine) leaseBroken(o, s *source) *invRec {
	first, second := o, s
	if second.asked < first.asked {
		first, second = second, first
	}
	for _, inv := range m.invs {
		if inv.kind == "set" || !slices.Contains(inv.keys, o.key) || inv.step > second.asked {
			continue
		}
		if inv.pending || inv.step >= first.asked {
			return inv
		}
	}
	return nil
}

// checkLive checks invariant 5: a Get waits only on a load. A blocked Get
// waits on a flight that either runs a load or polls the lease holder; once
// no load of its key runs and every lease of it has ended, a poll ago, the
// Get must have moved on: it loaded, or it returned. A lease ends when its
// load ends, or, if the release did not reach the store (store down,
// breaker open, node crashed), a lease TTL after it began; the check
// assumes the latter. The caller holds m.mu.
func (m *machine) checkLive() {
	now := time.Now()
	for _, g := range m.gets {
		if g.done || g.stuck || g.node.crashed {
			continue
		}
		// A GetMany returns when all its keys are done.
		keys := []string{g.key}
		if g.many {
			keys = rowKeys
		}
		busy, inFlight := g.startAt, false
		for _, k := range keys {
			// A held lookup reply stands for a slow store call: the Get
			// (or the flight it waits on) is still busy with it.
			inFlight = inFlight || m.held[k] > 0
			busy = later(busy, m.heldUntil[k])
		}
		for _, s := range m.srcs {
			if s.set || !slices.Contains(keys, s.key) {
				continue
			}
			switch s.state {
			case running, hasRead:
				inFlight = true
			case crashed:
				busy = later(busy, s.beginAt.Add(leaseTTL))
			default:
				busy = later(busy, s.endAt)
				if !s.degraded {
					busy = later(busy, s.beginAt.Add(leaseTTL))
				}
			}
		}
		if !inFlight && now.Sub(busy) >= time.Second {
			g.stuck = true
			m.violate("I5 liveness: a Get is blocked though no load of its key runs and no lease of it is held",
				"get %d of %s on node %d, started at %v, is still blocked at %v, though no load of %v has run since %v",
				g.id, g.key, g.node.id, m.since(g.startAt), m.since(now), keys, m.since(busy))
		}
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Check runs after every action: it reports what the Gets and loads of the
// step broke, and checks the store's entries (invariant 4).
func (m *machine) Check(t *rapid.T) {
	m.checkStore()
	m.mu.Lock()
	m.checkLive()
	m.checkDoomedWait()
	v := m.violations
	m.mu.Unlock()
	if len(v) == 0 {
		return
	}
	// One call site per invariant: rapid tells failures apart by where
	// they are raised, so a counterexample shrinks without turning into
	// one of another invariant.
	t.Logf("history (step, time since the check began, event):\n%s", m.historyString())
	switch label, _, _ := strings.Cut(v[0], " "); label {
	case "I1":
		t.Fatalf("%s", v[0])
	case "I2":
		t.Fatalf("%s", v[0])
	case "I3":
		t.Fatalf("%s", v[0])
	case "I4":
		t.Fatalf("%s", v[0])
	case "I5":
		t.Fatalf("%s", v[0])
	case "I6":
		t.Fatalf("%s", v[0])
	case "I7":
		t.Fatalf("%s", v[0])
	case "I8":
		t.Fatalf("%s", v[0])
	default:
		t.Fatalf("%s", v[0])
	}
}

// checkStore checks invariant 4: every servable entry holds a value that a
// load read after the last invalidation of its key and tags (so, once the
// loads in flight finish, the cache holds nothing an invalidation dropped).
func (m *machine) checkStore() {
	if m.env.peek == nil {
		return
	}
	m.checkOuterStore()
	for _, key := range rowKeys {
		lk, err := m.env.peek(context.Background(), namespace+":"+key)
		if err != nil || (lk.State != store.StateFresh && lk.State != store.StateStale) {
			continue
		}
		m.mu.Lock()
		id, ok := parseValue(lk.Entry.Value)
		s := m.srcs[id]
		switch {
		case !ok || s == nil:
			m.violate("I0 model: the store holds a value of no known source", "the store holds %q under %s", lk.Entry.Value, key)
		default:
			if h := m.lastHard(key, func(inv *invRec) bool { return inv.src != s && m.bindsStore(inv) }); h != nil && s.begin < h.step {
				m.violate("I4 cached-values: the store serves a value from a load that began before the last invalidation of its key or tags",
					"the store holds %s (%v) under %s, from %v, which began before the %v",
					s.value(), lk.State, key, s, h)
			}
			if rs := m.refusedSet(key, m.step+1, s); rs != nil {
				m.violate("I4 cached-values: the store serves an entry that predates a refused Set of its key",
					"the store holds %s (%v) under %s, filled at step %d, before the %v, refused", s.value(), lk.State, key, s.fillStep, rs)
			}
			if sv := m.lastInv(key, m.step+1, true); sv != nil && sv.soft && s.begin < sv.step && lk.State == store.StateFresh {
				m.violate("I4 cached-values: the store serves as fresh a value older than a soft invalidation",
					"the store holds %s fresh under %s after the %v", s.value(), key, sv)
			}
		}
		m.mu.Unlock()
	}
}
