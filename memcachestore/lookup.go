package memcachestore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/paddockcache/paddock/store"
)

// Lookup implements [store.Store]. In one round trip it reads the
// sequence (the ticket), the key's entry with its remaining TTL, the key's
// versions and, when the caller asks for the lease, the key's lease item;
// an entry with tags costs a second round trip for the tags' versions.
//
// The entry is judged at the later of the local clock and the instant the
// server's countdown gives (the entry's last instant less its remaining
// TTL), so a node whose clock is behind never keeps an entry longer than
// the server does:
//
//   - no entry, one of another epoch or that fails to decode, one whose
//     key's or tags' versions are unknown (evicted), or hard-invalidated
//     after its ticket, or past its last window: a miss without the entry
//     (and the item is dropped);
//   - before FreshUntil and not soft-invalidated: fresh;
//   - soft-invalidated (its item marked stale by md I, or a version newer
//     than its ticket) or past FreshUntil, before StaleUntil: stale;
//   - then, before ErrorUntil: a miss with the entry, for stale-if-error.
//
// The lease is a lease item of its own, created by "mg N<ttl>": memcached
// answers W to the one request that creates it and Z to the others, and
// drops it when its TTL runs out. A lookup granted the lease of a key
// whose versions are missing writes them, at its ticket, in the same round
// trip as the lease.
func (s *Store) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	if s.closed.Load() {
		return store.Lookup{}, errClosed
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	l := s.newLookup(key, req)
	s.lookups(ctx, []*lookupOp{l})
	return l.res, l.err
}

// lookupOp is one key's lookup, taken round by round by lookups, so that
// the lookups of a batch share their round trips.
type lookupOp struct {
	key                string
	req                store.LookupRequest
	kn                 *node
	en, vn, ln         string
	eOp, vOp, lOp      *op
	tagOps             []*op // the versions of the entry's tags, if read
	e                  *store.Entry
	soft, drop         bool
	wantLease, granted bool
	grab, vCreate      *op   // the lease taken, the key's versions written
	after              []*op // this key's commands of the last round
	res                store.Lookup
	err                error
}

// add adds commands of l's key to the round b.
func (l *lookupOp) add(b batch, ops ...*op) {
	b.add(l.kn, ops...)
	l.after = append(l.after, ops...)
}

func (s *Store) newLookup(key string, req store.LookupRequest) *lookupOp {
	l := &lookupOp{key: key, req: req, kn: s.keyNode(key),
		en: s.name(kindEntry, key), vn: s.name(kindVersions, key), ln: s.name(kindLease, key)}
	if req.Lease != 0 && req.LeaseTTL <= 0 {
		l.err = invalid("Lookup: lease TTL %v is not positive", req.LeaseTTL)
	}
	return l
}

// lookups runs the lookups ls together, in at most three round trips
// whatever their number: (1) the sequence, once, and each key's entry,
// versions and lease item; (2) the versions of the tags of the entries
// that have some; (3) each key's drop of a dead entry and lease request.
// Each round is one pipeline per server, the servers in parallel. A
// round trip that fails is the error of every key that had a command in
// it.
func (s *Store) lookups(ctx context.Context, ls []*lookupOp) {
	seqOp := s.readSeq()
	b := batch{}
	b.add(s.seqNode(), seqOp)
	for _, l := range ls {
		if l.err != nil {
			continue
		}
		l.eOp, l.vOp = get(l.en, "v c t"), get(l.vn, "v")
		b.add(l.kn, l.eOp, l.vOp)
		if l.req.Lease != 0 {
			l.lOp = get(l.ln, "c t")
			b.add(l.kn, l.lOp)
		}
	}
	_ = s.run(ctx, b)
	cur, seqErr := seqValue(seqOp)
	tags := batch{}
	for _, l := range ls {
		if l.err != nil {
			continue
		}
		if err := firstErr(l.eOp, l.vOp, l.lOp); err != nil {
			l.err = fmt.Errorf("memcachestore: Lookup(%q): %w", l.key, err)
			continue
		}
		if seqErr != nil {
			l.err = seqErr
			continue
		}
		s.judgeEntry(l, cur)
		if l.e != nil && len(l.e.Tags) > 0 {
			l.tagOps = make([]*op, len(l.e.Tags))
			for i, tag := range l.e.Tags {
				l.tagOps[i] = get(s.name(kindTag, tag), "v")
				tags.add(s.tagNode(tag), l.tagOps[i])
			}
		}
	}
	if len(tags) > 0 {
		_ = s.run(ctx, tags)
	}
	after := batch{}
	for _, l := range ls {
		if l.err != nil {
			continue
		}
		if l.tagOps != nil {
			if err := firstErr(l.tagOps...); err != nil {
				l.err = err
				continue
			}
			if hard, soft := tagState(l.tagOps, l.e, cur); hard {
				l.e, l.drop = nil, true
			} else {
				l.soft = l.soft || soft
			}
		}
		s.decide(l, cur, after)
	}
	if len(after) == 0 {
		return
	}
	_ = s.run(ctx, after)
	for _, l := range ls {
		if l.err != nil {
			continue
		}
		// The drop and the renewal of a held lease: their outcome does not
		// change the answer, but a failed round trip is an error.
		if err := firstNetErr(l.after); err != nil {
			l.err = err
			continue
		}
		if l.grab == nil {
			continue
		}
		if l.grab.err != nil {
			l.err = l.grab.err
			continue
		}
		if l.grab.has('W') {
			l.res.Lease = true
			s.grant(l.key, heldLease{token: l.req.Lease, cas: l.grab.uint('c'), until: time.Now().Add(l.req.LeaseTTL)})
		} else {
			l.res.Held = true
		}
	}
}

// judgeEntry decodes l's entry and judges it by the key's versions: it
// sets l.e (nil if there is none, or it is dead), l.soft and l.drop.
func (s *Store) judgeEntry(l *lookupOp, cur uint64) {
	now := s.now()
	l.res = store.Lookup{Now: now, Ticket: store.Ticket{Epoch: s.epochOf(cur), Seq: cur}}
	if l.eOp.status == "VA" {
		e := new(store.Entry)
		if err := e.UnmarshalBinary(l.eOp.value); err != nil {
			l.drop, l.res.Corrupt = true, true
		} else if e.Ticket.Epoch != l.res.Ticket.Epoch {
			l.drop = true
		} else {
			l.e = e
		}
	}
	if l.e == nil {
		return
	}
	v, known := parseVersions(l.vOp, cur)
	l.soft = l.eOp.has('X') || known && v.soft > l.e.Ticket.Seq
	if !known || v.hard > l.e.Ticket.Seq {
		l.e, l.drop = nil, true
	}
}

// decide judges l's entry by time and adds to after the drop of a dead
// entry and the lease request.
func (s *Store) decide(l *lookupOp, cur uint64, after batch) {
	res := &l.res
	now := res.Now
	e := l.e
	if e != nil {
		if t := l.eOp.int('t'); t >= 0 {
			if at := e.Expires().Add(-s.remaining(t)); at.After(now) {
				now = at
				res.Now = at
			}
		}
		if !now.Before(e.Expires()) {
			e, l.drop = nil, true
		}
	}
	want := l.req.Lease != 0
	if e != nil {
		switch {
		case !l.soft && now.Before(e.FreshUntil):
			res.State = store.StateFresh
			want = want && (l.req.Refresh || l.req.Early && e.DueEarly(now))
		case now.Before(e.StaleUntil):
			res.State = store.StateStale
		case now.Before(e.ErrorUntil):
			res.State = store.StateMiss
		default:
			e, l.drop = nil, true
		}
		res.Entry = e
	}
	if l.drop {
		l.add(after, del(l.en, fmt.Sprintf("C%d", l.eOp.uint('c'))))
	}
	if l.lOp != nil {
		if _, known := parseVersions(l.vOp, cur); !known && want {
			// The caller may load: write the key's versions now, at
			// the ticket, so that its fill finds them at most its
			// ticket (see Fill: a fill that finds them missing is
			// refused unless its ticket is the current sequence).
			l.vCreate = s.createVersions(l.vn, l.vOp, lostVersions(cur))
		}
		s.lease(l, want, after)
	}
}

// tagState judges e by the versions of its tags that ops read: hard if one
// is unknown (its item was evicted, or never written) or was
// hard-invalidated after e's ticket, soft if one was invalidated after it.
func tagState(ops []*op, e *store.Entry, cur uint64) (hard, soft bool) {
	for _, o := range ops {
		v, known := parseVersions(o, cur)
		if !known || v.hard > e.Ticket.Seq {
			return true, true
		}
		if v.soft > e.Ticket.Seq {
			soft = true
		}
	}
	return false, soft
}

// firstNetErr is the error of a pipeline that failed as a whole (every
// command then carries it), or nil.
func firstNetErr(ops []*op) error {
	for _, o := range ops {
		if o.err != nil && !errors.Is(o.err, errServer) {
			return o.err
		}
	}
	return nil
}

// lease decides the lease part of l, a lookup that asked for it, and adds
// its commands to after. l.lOp read the key's lease item. The caller's
// token holds the lease if this Store granted it to that token and the
// item is the one it granted (same CAS). A request for the lease is sent
// with l.vCreate, if any, which writes the key's missing versions.
func (s *Store) lease(l *lookupOp, want bool, after batch) {
	key, req, lOp, res := l.key, l.req, l.lOp, &l.res
	live := lOp.found() && (lOp.int('t') < 0 || s.leaseLeft(lOp.int('t')) > 0)
	s.mu.Lock()
	held, mine := s.leases[key]
	ours := live && mine && held.token == req.Lease && held.cas == lOp.uint('c')
	rel, wasReleased := s.released[key]
	late := wasReleased && rel.token == req.Lease && time.Now().Before(rel.until)
	s.mu.Unlock()
	ttl := fmt.Sprintf("%d", s.ttlSeconds(req.LeaseTTL))
	switch {
	case !want:
		res.Held = live && !ours
	case ours:
		// The holder asks again: renew its lease.
		res.Lease = true
		l.add(after, get(l.ln, "T"+ttl))
	case live || late:
		// Held by another; or a late lookup of a token already released,
		// which must not take the lease again.
		res.Held = true
	default:
		if lOp.found() {
			// Expired by the store's clock (the test offset), not yet by
			// the server's: take it over unless it changed.
			l.add(after, del(l.ln, fmt.Sprintf("C%d", lOp.uint('c'))))
		}
		l.grab = get(l.ln, "N"+ttl+" c")
		l.add(after, l.grab)
		if l.vCreate != nil {
			l.add(after, l.vCreate) // its outcome does not matter: another writer's versions are as good
		}
	}
}

func (s *Store) grant(key string, l heldLease) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.leases)+len(s.released) >= s.sweepAt {
		now := time.Now()
		for k, old := range s.leases {
			if now.After(old.until) {
				delete(s.leases, k)
			}
		}
		for k, old := range s.released {
			if now.After(old.until) {
				delete(s.released, k)
			}
		}
		s.sweepAt = max(2*(len(s.leases)+len(s.released)), 64)
	}
	s.leases[key] = l
	delete(s.released, key)
}

// takeLease forgets this Store's lease on key if token holds it, and
// returns the lease item's CAS to delete it by (zero: not held).
func (s *Store) takeLease(key string, token uint64) uint64 {
	if token == 0 {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[key]
	if !ok || l.token != token {
		return 0
	}
	delete(s.leases, key)
	s.released[key] = l
	return l.cas
}

// Release implements [store.Store]: it deletes key's lease item if token
// holds it (the item is still the one granted, by its CAS). A lookup with
// the same token that arrives after Release is not granted the lease
// again for the lease's TTL.
func (s *Store) Release(ctx context.Context, key string, token uint64) error {
	if s.closed.Load() {
		return errClosed
	}
	cas := s.takeLease(key, token)
	if cas == 0 {
		return nil
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	o := del(s.name(kindLease, key), fmt.Sprintf("C%d", cas))
	if err := s.keyNode(key).do(ctx, []*op{o}); err != nil {
		return err
	}
	return o.err
}
