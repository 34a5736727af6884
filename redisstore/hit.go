package redisstore

import (
	"context"
	"hash/maphash"
	"io"
	"slices"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock/store"
)

// The hit path: a warm hit is one MGET, atomic on the server, of
//
//	the entry, its fresh marker, the epoch marker of its slot, then the
//	versions of the entry's tags in the key's slot (all of them
//	standalone), which the fill created,
//
// which the client checks by the lookup script's rules: the entry parses
// and is not soft-invalidated; every key but the sequence is there (MGET
// answers nothing for a key of another type as for a missing one, so
// nothing is left to the script); the marker parses, names an instant before
// the end of the entry's freshness, and that instant is still ahead of
// the Store's reading of the server's clock (see node.go); the epoch
// marker names the entry's epoch and, with the failover check, the
// server's replication ID as the Store verified it (in the generation of
// connections the reply came in); no tag was invalidated after the
// entry's guard. Then the entry is served as fresh, without a lease:
// exactly what the script would answer, since the marker lives only while
// the entry needs no lease (see lookupScript). Its ticket is the entry's
// own, a lower bound of the sequence, as [store.Lookup].Ticket allows for
// an entry served without a lease: a Set made with it is refused no more
// often than with the sequence, since every version a fill compares it
// with (the key's, those of the entry's tags) is at most the ticket of an
// entry that is fresh and not soft-invalidated. Anything else (no marker:
// missing, stale, due for early refresh, soft-invalidated; a version above
// the guard; anything that does not parse; a reply that is not an array of
// strings) is left to the lookup script, which decides leases, stale
// serving, early refresh and corruption atomically: a miss costs the MGET
// and the script.
//
// The client must know the entry's tags before it reads them, in the same
// MGET: the Store keeps, per key, the MGET it makes (a plan) with the tags
// of the entry it last saw (bounded: planSets × planWays plans, 8192, see
// plans). An entry whose tags are not those of the plan is left to the
// script, and the plan follows the entry's tags. A key whose plan was
// pushed out costs one more script lookup when its entry has tags.
//
// On Cluster the MGET reads the key's slot; the entry's tags in other
// slots are read next, as after the script (the read-side check).

// A hitPlan is the MGET of one key's warm hit.
type hitPlan struct {
	key    string
	kn     keyNames
	args   []any               // "mget", the names above
	tags   string              // the entry's tag list that args reads, as the entry stores it
	tk     string              // its tag-key list, as the entry stores it
	remote map[uint16][]string // Cluster: the tag keys in other slots, by slot
	size   atomic.Int32        // the length of the last reply: the next one's buffer
}

// A hitBuf is what one MGET allocates: the buffer its reply is read into,
// raw (redis.RawWriteToCmd), sized from the last reply of the key so that
// it is read in place, and the Entry a hit returns, whose value is a
// slice of the buffer.
type hitBuf struct {
	e store.Entry
	b []byte
}

// newHitBuf returns the buffer of plan p's next MGET.
func newHitBuf(p *hitPlan) *hitBuf {
	n := int(p.size.Load())
	if n == 0 {
		n = 2 << 10
	}
	return &hitBuf{b: make([]byte, 0, n)}
}

// Write appends the reply's lines.
func (h *hitBuf) Write(p []byte) (int, error) {
	h.b = append(h.b, p...)
	return len(p), nil
}

// ReadFrom appends a bulk string's bytes, read straight into the buffer.
// go-redis gives it the string's length, as an io.LimitedReader.
func (h *hitBuf) ReadFrom(r io.Reader) (int64, error) {
	lr, _ := r.(*io.LimitedReader)
	var n int64
	for {
		if lr != nil {
			if lr.N <= 0 {
				return n, nil
			}
			h.b = slices.Grow(h.b, int(min(lr.N, 1<<30)))
		} else if len(h.b) == cap(h.b) {
			h.b = slices.Grow(h.b, 512)
		}
		m, err := r.Read(h.b[len(h.b):cap(h.b)])
		h.b = h.b[:len(h.b)+m]
		n += int64(m)
		switch {
		case err == io.EOF:
			return n, nil
		case err != nil:
			return n, err
		}
	}
}

// The plan table: planSets sets of planWays plans; a key's plan is in the
// set of its hash, and a new plan takes the place of the set's next one in
// turn. A set of several ways keeps two keys of one batch that hash alike
// from taking each other's place on every lookup.
const (
	planSets = 1 << 11
	planWays = 4
)

// plans is the table of hit plans.
type plans struct {
	seed maphash.Seed
	t    [planSets]planSet
}

type planSet struct {
	ways [planWays]atomic.Pointer[hitPlan]
	next atomic.Uint32 // the way the next new plan takes
}

func (p *plans) set(key string) *planSet {
	return &p.t[maphash.String(p.seed, key)&(planSets-1)]
}

// get returns key's plan in set ps, if it holds one.
func (ps *planSet) get(key string) *hitPlan {
	for i := range ps.ways {
		if p := ps.ways[i].Load(); p != nil && p.key == key {
			return p
		}
	}
	return nil
}

// put keeps p in set ps: in place of the key's plan, or of the set's next
// one.
func (ps *planSet) put(p *hitPlan) {
	for i := range ps.ways {
		if q := ps.ways[i].Load(); q != nil && q.key == p.key {
			ps.ways[i].Store(p)
			return
		}
	}
	ps.ways[(ps.next.Add(1)-1)%planWays].Store(p)
}

// plan returns the hit plan of key: the one kept, or one for an entry
// without tags.
func (s *Store) plan(key string) *hitPlan {
	ps := s.plans.set(key)
	if p := ps.get(key); p != nil {
		return p
	}
	p := s.newPlan(key, s.layout.key(key), nil)
	ps.put(p)
	return p
}

// newPlan builds the plan of key (names kn) for an entry tagged tags.
func (s *Store) newPlan(key string, kn keyNames, tags []string) *hitPlan {
	local, remote := s.splitTags(kn.slot, tags)
	p := &hitPlan{key: key, kn: kn, tags: encodeList(tags), tk: encodeList(local), remote: remote}
	p.args = make([]any, 0, 4+len(local))
	p.args = append(p.args, "mget", kn.entry, kn.fresh, s.markerArg)
	if s.cluster {
		p.args[3] = s.layout.slotMarker(kn.slot)
	}
	for _, k := range local {
		p.args = append(p.args, k)
	}
	return p
}

// notePlan keeps the plan for an entry of key tagged as v is, if the one
// kept reads other tags. The lookup script checked v.
func (s *Store) notePlan(key string, kn keyNames, v *entryView) {
	ps := s.plans.set(key)
	if p := ps.get(key); p != nil && p.tags == string(v.tags) {
		return
	}
	p := s.newPlan(key, kn, decodeTags(v.tags))
	if p.tk != string(v.tagKeys) {
		return // the script checks this too (Cluster: judge)
	}
	ps.put(p)
}

// hitOutcome is what an MGET found.
type hitOutcome uint8

const (
	hitNo     hitOutcome = iota // left to the script
	hitServed                   // lk is the answer
	hitTags                     // served once the tags in other slots pass (r and op.remote are set)
	hitSeq                      // served with the sequence as its ticket (Cluster, no lease asked)
)

// hitUsable reports whether n can be read by MGET in generation gen: its
// clock is known and, with the failover check, it is verified in gen.
func (s *Store) hitUsable(n *node, gen uint64) bool {
	if n == nil || !n.clocked.Load() {
		return false
	}
	_, ok := s.rid(n, gen)
	return ok || !s.cfg.checkFailover
}

// judgeHit checks the reply, in h, of plan p's MGET, sent to n in
// generation gen (see the hit path above), for a lookup asking req. On
// hitServed, lk is the answer; on hitTags and hitSeq, r is the lookup so
// far, to finish as after the script.
func (s *Store) judgeHit(p *hitPlan, n *node, gen uint64, h *hitBuf, req store.LookupRequest) (out hitOutcome, lk store.Lookup, r lookupResult) {
	p.size.Store(int32(min(len(h.b), 1<<30)))
	a, ok := readArray(h.b)
	if !ok {
		return hitNo, lk, r
	}
	eb, ok1 := a.next()
	fb, ok2 := a.next()
	mb, ok3 := a.next()
	if !(ok1 && ok2 && ok3) || eb == nil || fb == nil || mb == nil {
		return hitNo, lk, r
	}
	v, ok := parseEntry(eb)
	switch {
	case !ok || v.soft():
		return hitNo, lk, r
	case string(v.tags) != p.tags || string(v.tagKeys) != p.tk:
		s.notePlan(p.key, p.kn, &v)
		return hitNo, lk, r
	}
	until, holder, ok := parseFresh(fb)
	if !ok || until > v.fresh {
		return hitNo, lk, r
	}
	// A marker that names a token: an early refresh holds the lease. To
	// a lookup that asks for early refresh, the script answers "held",
	// or renews the lease of its holder.
	held := holder != nil && req.Early
	if held && req.Lease != 0 && string(holder) == token(req.Lease) {
		return hitNo, lk, r
	}
	epoch, _, rid, ok := parseMarker(mb)
	if !ok || epoch != v.epoch {
		return hitNo, lk, r
	}
	if s.cfg.checkFailover {
		want, ok := s.rid(n, gen)
		if !ok || string(rid) != want {
			return hitNo, lk, r
		}
	}
	for a.n > 0 {
		tb, ok := a.next()
		if !ok || tb == nil {
			return hitNo, lk, r
		}
		hard, any, ok := parseTagVersions(tb)
		if !ok || hard > v.guard || any > v.guard {
			return hitNo, lk, r
		}
	}
	now, ok := n.now()
	if !a.done() || !ok {
		return hitNo, lk, r
	}
	now += s.offset()
	if now >= until {
		return hitNo, lk, r
	}
	v.fillEntry(&h.e, decodeTags(v.tags))
	lk = store.Lookup{
		Entry:  &h.e,
		State:  store.StateFresh,
		Held:   held,
		Ticket: store.Ticket{Epoch: epoch, Seq: v.q},
		Now:    time.UnixMicro(now),
	}
	if !s.cluster {
		return hitServed, lk, r
	}
	// Cluster: the script path reports max(the key's version, the
	// entry's ticket), the same for an entry served as fresh: a version
	// above the ticket means an invalidation that dropped the entry or
	// marked it soft.
	r = lookupResult{lk: lk, guard: v.guard}
	switch {
	case len(p.remote) > 0:
		return hitTags, lk, r
	case req.Lease == 0:
		return hitSeq, lk, r
	}
	return hitServed, lk, r
}

// hit tries the hit path for one key: one MGET. On hitTags and hitSeq the
// lookup goes on from r; on hitNo it starts with the script.
func (s *Store) hit(ctx context.Context, key string, req store.LookupRequest) (hitOutcome, store.Lookup, lookupResult, *hitPlan, error) {
	p := s.plan(key)
	n := s.nodeFor(ctx, p.kn.entry)
	gen := s.gen()
	if !s.hitUsable(n, gen) {
		return hitNo, store.Lookup{}, lookupResult{}, p, nil
	}
	h := newHitBuf(p)
	cmd := redis.NewRawWriteToCmd(ctx, h, p.args...)
	_ = s.client.Process(ctx, cmd)
	if err := cmd.Err(); err != nil {
		s.failed(err)
		return hitNo, store.Lookup{}, lookupResult{}, p, err
	}
	if s.cfg.checkFailover && !s.fresh(gen) {
		return hitNo, store.Lookup{}, lookupResult{}, p, nil
	}
	out, lk, r := s.judgeHit(p, n, gen, h, req)
	return out, lk, r, p, nil
}
