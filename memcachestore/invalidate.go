package memcachestore

import (
	"context"
	"fmt"
	"slices"

	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/store"
)

// Invalidate implements [store.Store]. It takes s = ++seq, raises the
// versions of each key and tag to s (the hard version too unless
// inv.Soft) by a CAS loop, and then, for each key, deletes its entry
// (hard) or marks it stale with "md <key> I" (soft: memcached keeps the
// item, bumps its CAS so that a fill in flight is refused, and answers X
// to later reads), and deletes its lease item: the load that holds it can
// no longer fill. Versions are written before the entries go, so a fill
// that slips in between is caught by its post-check or, if it checked
// first, hidden on read by the key's versions. An empty Invalidation does
// nothing.
func (s *Store) Invalidate(ctx context.Context, inv store.Invalidation) error {
	if s.closed.Load() {
		return errClosed
	}
	if len(inv.Keys) == 0 && len(inv.Tags) == 0 {
		return nil
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	keys := slices.Compact(slices.Sorted(slices.Values(inv.Keys)))
	tags := slices.Compact(slices.Sorted(slices.Values(inv.Tags)))
	inc := s.incrSeq()
	if err := s.seqNode().do(ctx, []*op{inc}); err != nil {
		return err
	}
	seq, err := seqValue(inc)
	if err != nil {
		return err
	}
	// Raise the versions, one CAS loop per item, all items of a server in
	// one pipeline per round.
	type item struct {
		n    *node
		name string
	}
	var items []item
	for _, k := range keys {
		items = append(items, item{s.keyNode(k), s.name(kindVersions, k)})
	}
	for _, t := range tags {
		items = append(items, item{s.tagNode(t), s.name(kindTag, t)})
	}
	pending := items
	for round := 0; len(pending) > 0; round++ {
		if round == 64 {
			return fmt.Errorf("memcachestore: Invalidate: too many concurrent writers")
		}
		reads, rb := make([]*op, len(pending)), batch{}
		for i, it := range pending {
			reads[i] = get(it.name, "v c")
			rb.add(it.n, reads[i])
		}
		if err := s.run(ctx, rb); err != nil {
			return err
		}
		writes, wb := make([]*op, len(pending)), batch{}
		for i, it := range pending {
			if reads[i].err != nil {
				return reads[i].err
			}
			v, ok := parseVersions(reads[i], seq)
			if !ok {
				v = lostVersions(seq) // hard too: the lost item's history is unknown
			}
			v.soft = max(v.soft, seq)
			if !inv.Soft {
				v.hard = max(v.hard, seq)
			}
			writes[i] = s.createVersions(it.name, reads[i], v)
			wb.add(it.n, writes[i])
		}
		if err := s.run(ctx, wb); err != nil {
			return err
		}
		var again []item
		for i, w := range writes {
			if w.err != nil {
				return w.err
			}
			if w.status != "HD" {
				again = append(again, pending[i])
			}
		}
		pending = again
	}
	b := batch{}
	breakLeases := !hooks.LeaseOutlivesInvalidation.Load()
	for _, k := range keys {
		n := s.keyNode(k)
		if inv.Soft {
			b.add(n, del(s.name(kindEntry, k), "I"))
		} else {
			b.add(n, del(s.name(kindEntry, k), ""))
		}
		if breakLeases {
			b.add(n, del(s.name(kindLease, k), ""))
			s.mu.Lock()
			delete(s.leases, k)
			s.mu.Unlock()
		}
	}
	if err := s.run(ctx, b); err != nil {
		return err
	}
	for _, ops := range b {
		if err := firstErr(ops...); err != nil {
			return err
		}
	}
	return nil
}
