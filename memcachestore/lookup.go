package memcachestore

import (
	"context"
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
	if req.Lease != 0 && req.LeaseTTL <= 0 {
		return store.Lookup{}, invalid("Lookup: lease TTL %v is not positive", req.LeaseTTL)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	kn := s.keyNode(key)
	en, vn, ln := s.name(kindEntry, key), s.name(kindVersions, key), s.name(kindLease, key)
	seqOp, eOp, vOp := s.readSeq(), get(en, "v c t"), get(vn, "v")
	b := batch{}
	b.add(s.seqNode(), seqOp)
	b.add(kn, eOp, vOp)
	var lOp *op
	if req.Lease != 0 {
		lOp = get(ln, "c t")
		b.add(kn, lOp)
	}
	if err := s.run(ctx, b); err != nil {
		return store.Lookup{}, err
	}
	if err := firstErr(eOp, vOp, lOp); err != nil {
		return store.Lookup{}, fmt.Errorf("memcachestore: Lookup(%q): %w", key, err)
	}
	cur, err := seqValue(seqOp)
	if err != nil {
		return store.Lookup{}, err
	}
	now := s.now()
	res := store.Lookup{Now: now, Ticket: store.Ticket{Epoch: s.epochOf(cur), Seq: cur}}

	var e *store.Entry
	drop := false
	if eOp.status == "VA" {
		e = new(store.Entry)
		if err := e.UnmarshalBinary(eOp.value); err != nil {
			e, drop, res.Corrupt = nil, true, true
		} else if e.Ticket.Epoch != res.Ticket.Epoch {
			e, drop = nil, true
		}
	}
	soft := false
	if e != nil {
		v, known := parseVersions(vOp, cur)
		hard := !known || v.hard > e.Ticket.Seq
		soft = eOp.has('X') || known && v.soft > e.Ticket.Seq
		if !hard && len(e.Tags) > 0 {
			th, ts, err := s.tagState(ctx, e, cur)
			if err != nil {
				return store.Lookup{}, err
			}
			hard, soft = th, soft || ts
		}
		if t := eOp.int('t'); t >= 0 {
			if at := e.Expires().Add(-s.remaining(t)); at.After(now) {
				now = at
				res.Now = at
			}
		}
		if hard || !now.Before(e.Expires()) {
			e, drop = nil, true
		}
	}
	wantLease := req.Lease != 0
	if e != nil {
		switch {
		case !soft && now.Before(e.FreshUntil):
			res.State = store.StateFresh
			wantLease = wantLease && (req.Refresh || req.Early && e.DueEarly(now))
		case now.Before(e.StaleUntil):
			res.State = store.StateStale
		case now.Before(e.ErrorUntil):
			res.State = store.StateMiss
		default:
			e, drop = nil, true
		}
		res.Entry = e
	}
	var after batch
	if drop {
		after = batch{}
		after.add(kn, del(en, fmt.Sprintf("C%d", eOp.uint('c'))))
	}
	if lOp != nil {
		var vCreate *op
		if _, known := parseVersions(vOp, cur); !known && wantLease {
			// The caller may load: write the key's versions now, at
			// the ticket, so that its fill finds them at most its
			// ticket (see Fill: a fill that finds them missing is
			// refused unless its ticket is the current sequence).
			vCreate = s.createVersions(vn, vOp, lostVersions(cur))
		}
		if err := s.lease(ctx, key, ln, kn, req, lOp, wantLease, vCreate, after, &res); err != nil {
			return store.Lookup{}, err
		}
	} else if after != nil {
		if err := s.run(ctx, after); err != nil {
			return store.Lookup{}, err
		}
	}
	return res, nil
}

// tagState reads the versions of e's tags: hard if one is unknown (its
// item was evicted, or never written) or was hard-invalidated after e's
// ticket, soft if one was invalidated after it.
func (s *Store) tagState(ctx context.Context, e *store.Entry, cur uint64) (hard, soft bool, err error) {
	b := batch{}
	ops := make([]*op, len(e.Tags))
	for i, tag := range e.Tags {
		ops[i] = get(s.name(kindTag, tag), "v")
		b.add(s.tagNode(tag), ops[i])
	}
	if err := s.run(ctx, b); err != nil {
		return false, false, err
	}
	for _, o := range ops {
		if o.err != nil {
			return false, false, o.err
		}
		v, known := parseVersions(o, cur)
		if !known || v.hard > e.Ticket.Seq {
			return true, true, nil
		}
		if v.soft > e.Ticket.Seq {
			soft = true
		}
	}
	return false, soft, nil
}

// lease decides the lease part of a lookup that asked for it. lOp read the
// key's lease item; vCreate, if not nil, writes the key's missing
// versions, sent with the lease request when the lookup takes the lease. The caller's token holds the lease if this Store
// granted it to that token and the item is the one it granted (same CAS).
// after holds commands to run in the same round trip, or nil.
func (s *Store) lease(ctx context.Context, key, ln string, kn *node, req store.LookupRequest,
	lOp *op, want bool, vCreate *op, after batch, res *store.Lookup) error {
	live := lOp.found() && (lOp.int('t') < 0 || s.remaining(lOp.int('t')) > 0)
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
		if after == nil {
			after = batch{}
		}
		after.add(kn, get(ln, "T"+ttl))
	case live || late:
		// Held by another; or a late lookup of a token already released,
		// which must not take the lease again.
		res.Held = true
	default:
		if after == nil {
			after = batch{}
		}
		if lOp.found() {
			// Expired by the store's clock (the test offset), not yet by
			// the server's: take it over unless it changed.
			after.add(kn, del(ln, fmt.Sprintf("C%d", lOp.uint('c'))))
		}
		grab := get(ln, "N"+ttl+" c")
		after.add(kn, grab)
		if vCreate != nil {
			after.add(kn, vCreate) // its outcome does not matter: another writer's versions are as good
		}
		if err := s.run(ctx, after); err != nil {
			return err
		}
		if grab.err != nil {
			return grab.err
		}
		if grab.has('W') {
			res.Lease = true
			s.grant(key, heldLease{token: req.Lease, cas: grab.uint('c'), until: time.Now().Add(req.LeaseTTL)})
		} else {
			res.Held = true
		}
		return nil
	}
	if after != nil {
		return s.run(ctx, after)
	}
	return nil
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
