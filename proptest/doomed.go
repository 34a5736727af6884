package proptest

import (
	"slices"
	"time"

	"github.com/paddockcache/paddock"
	"pgregory.net/rapid"
)

// A doom is a load in flight that an invalidation doomed when it
// returned: the load began before it and can no longer fill.
type doom struct {
	src *source
	// byKey: the invalidation named the load's key, so the store broke
	// the load's lease (a Get in any process that looks the key up takes
	// it at once).
	byKey bool
	// local: the invalidation was made in the load's process, which
	// detached the load's flight and gave its lease back: it named the
	// key, or a tag the flight was known to carry (see source.known).
	local bool
}

// doomedBy returns the loads in flight that an invalidation of keys and
// tags from node n, which just returned nil, dooms (set: a Set of keys[0],
// which invalidates only the key's dependency tag). The caller holds m.mu.
func (m *machine) doomedBy(n *node, keys, tags []string, set bool) []doom {
	names := slices.Clone(tags)
	for _, k := range keys {
		names = append(names, paddock.DependencyTag(fullKey(k)))
	}
	var ds []doom
	for _, s := range m.sortedSources() {
		if s.set || s.begin >= m.step || (s.state != running && s.state != hasRead && s.state != crashed) {
			continue
		}
		d := doom{src: s, byKey: !set && slices.Contains(keys, s.key)}
		d.local = s.node == n && s.state != crashed && (d.byKey || intersects(s.known, names))
		if d.byKey || d.local {
			ds = append(ds, d)
			how := "its key"
			if !d.byKey {
				how = "a tag it is known to carry"
			}
			m.logf("  it dooms %v (%s, in the load's process: %v)", s, how, d.local)
		}
	}
	return ds
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// mayDoomOuter reports whether inv may doom a load of outer key: it names
// the key or one its entries may depend on, or a tag they may carry. The
// caller holds m.mu.
func (m *machine) mayDoomOuter(inv *invRec, key string) bool {
	keys := staticKeys(key)
	for _, k := range inv.keys {
		if slices.Contains(keys, k) {
			return true
		}
	}
	return intersects(inv.tags, staticTags(key))
}

// doomedGrace is how long after it began a blocked Get is given to move
// on from doomed loads: a flight that polls the holder of a lease the
// store broke takes it at its next poll, tens of milliseconds later.
const doomedGrace = time.Second

// checkDoomedWait checks invariant 7: a Get that began after an
// invalidation doomed a load of its key (see doomedBy) does not wait for
// that load. Once it has been blocked for doomedGrace (and no load of its
// key has ended for as long: a flight that waited for its lease polls
// again), some load of its
// key that no invalidation before it doomed must be in flight (one it can
// wait for, or its own): if every load of its key in flight is doomed for
// it, it waits for a doomed one.
//
// A load is doomed for a Get when an invalidation made in the load's
// process named its key or a tag its flight was known to carry (the
// flight is detached and its lease given back), or when an invalidation
// from anywhere named its key (the store broke its lease) and the Get runs
// in another process. In the load's own process the flight is detached
// only by an invalidation made there: a Get there that finds the lease
// held (by a load that took the broken lease, say), or that joins the
// flights of its process first (the Remote path), joins the doomed
// flight. A tag invalidation does not reach the flights of other
// processes, whose leases hold.
//
// The check keeps away from store trouble (outages, lost replies,
// flushes, restarts): a lease given back while the breaker is open is
// held until the store answers again. The caller holds m.mu.
func (m *machine) checkDoomedWait() {
	now := time.Now()
	for _, g := range m.gets {
		if g.done || g.stuck || g.many || g.node.crashed || now.Sub(g.startAt) < doomedGrace {
			continue
		}
		if m.troubledSince(g.startAt.Add(-leaseTTL - 2*coolDown)) {
			continue
		}
		if m.held[g.key] > 0 || now.Before(m.heldUntil[g.key].Add(doomedGrace)) {
			continue // busy with a slow store call, or a lease it lost
		}
		var inFlight []*source
		quiet := g.startAt
		for _, s := range m.sortedSources() {
			switch {
			case s.set || s.key != g.key:
			case s.state == running || s.state == hasRead || s.state == crashed:
				inFlight = append(inFlight, s)
			default:
				// A flight that waited for its lease polls again.
				quiet = later(quiet, s.endAt)
			}
		}
		if len(inFlight) == 0 || now.Sub(quiet) < doomedGrace {
			continue // none (invariant 5's), or one just ended
		}
		var by []*invRec
		for _, s := range inFlight {
			inv := m.doomFor(s, g)
			if inv == nil {
				by = nil
				break
			}
			by = append(by, inv)
		}
		if by == nil {
			continue
		}
		g.stuck = true
		m.violate("I7 doomed-wait: a Get that began after an invalidation doomed every load of its key in flight waits for them",
			"get %d of %s on node %d, started step %d at %v, is still blocked at %v; the loads of %s in flight are %v, doomed by the %v",
			g.id, g.key, g.node.id, g.start, m.since(g.startAt), m.since(now), g.key, inFlight, by)
	}
}

// doomFor returns an invalidation that returned before Get g began and
// doomed load s for g (see checkDoomedWait), or nil. The caller holds
// m.mu.
func (m *machine) doomFor(s *source, g *getRec) *invRec {
	for _, inv := range m.invs {
		if !inv.ok || inv.step >= g.start {
			continue
		}
		for _, d := range inv.dooms {
			if d.src != s {
				continue
			}
			if d.local || d.byKey && g.node != s.node {
				return inv
			}
		}
	}
	return nil
}

// troubledSince reports whether the store was unavailable, a reply was
// lost, or the store lost its state at any time since from. The caller
// holds m.mu.
func (m *machine) troubledSince(from time.Time) bool {
	for _, o := range m.outages {
		if o.to.IsZero() || !o.to.Before(from) {
			return true
		}
	}
	return !m.trouble.Before(from)
}

// Doom aims at invariant 7: a Get of a key starts (or joins) a load, an
// invalidation of the key or of one of its row's tags lands from some
// node while the load is held, another Get of the key starts on some
// node, and a second passes, so that the second Get has had time to move
// on from the doomed load.
func (m *machine) Doom(t *rapid.T) {
	keys := rowKeys
	if m.cfg.nested {
		keys = append(slices.Clone(rowKeys), outerKeys...)
	}
	key := rapid.SampledFrom(keys).Draw(t, "key")
	m.startGet(m.drawNode(t), key, 0)
	m.settle()
	var ikeys, itags []string
	if tags := tagsOf(key); len(tags) > 0 && rapid.Bool().Draw(t, "byTag") {
		itags = []string{rapid.SampledFrom(tags).Draw(t, "tag")}
	} else {
		ikeys = []string{key}
	}
	m.invalidate(m.drawNode(t), ikeys, itags, !isOuter(key) && rapid.Bool().Draw(t, "writeFirst"), false)
	m.startGet(m.drawNode(t), key, 0)
	m.settle()
	m.begin("advance %v", doomedGrace)
	m.env.advance(doomedGrace)
	time.Sleep(doomedGrace)
	m.settle()
}
