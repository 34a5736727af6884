package memcachestore

import (
	"context"
	"fmt"
	"slices"

	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/store"
)

// Fill implements [store.Store]. memcached has no step that checks one
// item and writes another, so a fill is checked twice:
//
//  1. One round trip reads the sequence, the entry's CAS and the versions
//     of the key and of each tag. The fill is refused if its ticket is of
//     another epoch, newer than the sequence, or older than any of those
//     versions (a refused Set also drops an entry of its ticket's epoch).
//     A missing version (never written, or evicted) is recreated at the
//     sequence just read, which is above every ticket issued before: a
//     fill whose ticket is older is refused, since the lost version may
//     have been written by an invalidation after its ticket.
//
//  2. Then the entry is written with "ms ... C<cas>" (or, if there was
//     none, as an add), which memcached refuses (EX, NS) if the item
//     changed since step 1: an invalidation of the key (md, md I) or
//     another fill. In the same pipeline, after the write, the versions
//     are read again.
//
//  3. If one moved past the ticket, an invalidation landed between the
//     two reads: the entry is deleted (by the CAS of the write) and the
//     fill reports refused. So a fill never reports "accepted" after an
//     invalidation of its key or tags returned:
//
//     fill:       versions <= ticket 5, CAS 7
//     invalidate: s = 6; version(tag) = 6; return
//     fill:       ms C7: stored
//     fill:       version(tag) = 6 > 5: delete the entry, refused
//
// A Set first takes s = ++seq and raises the key's versions to s (a CAS
// loop), then writes the entry with ticket s. The lease f.Lease is
// released (its item deleted by CAS) whatever the outcome.
//
// An envelope of more than MaxItemBytes (less the name), or one the
// server refuses as too large, is an error wrapping [store.ErrTooLarge];
// a Set then still drops the key's entry and advances its version, as an
// invalidation of the key would. A negative fill with a value is an error
// wrapping [store.ErrInvalidOption].
func (s *Store) Fill(ctx context.Context, key string, f *store.Fill) (accepted bool, err error) {
	if s.closed.Load() {
		return false, errClosed
	}
	if f == nil {
		return false, invalid("Fill: nil *Fill")
	}
	if f.Negative && len(f.Value) > 0 {
		return false, invalid("Fill(%q): a negative fill has a value", key)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	lcas := s.takeLease(key, f.Lease)
	kn := s.keyNode(key)
	ln := s.name(kindLease, key)
	accepted, err = s.fill(ctx, key, kn, f)
	if lcas != 0 {
		o := del(ln, fmt.Sprintf("C%d", lcas))
		if rerr := kn.do(ctx, []*op{o}); rerr != nil && err == nil {
			err = rerr
		}
	}
	return accepted, err
}

func (s *Store) fill(ctx context.Context, key string, kn *node, f *store.Fill) (bool, error) {
	en, vn := s.name(kindEntry, key), s.name(kindVersions, key)
	tags := slices.Compact(slices.Sorted(slices.Values(f.Tags)))
	seqOp, eOp, vOp := s.readSeq(), get(en, "c v"), get(vn, "v c")
	tagOps := make([]*op, len(tags))
	b := batch{}
	b.add(s.seqNode(), seqOp)
	b.add(kn, eOp, vOp)
	for i, tag := range tags {
		tagOps[i] = get(s.name(kindTag, tag), "v c")
		b.add(s.tagNode(tag), tagOps[i])
	}
	if err := s.run(ctx, b); err != nil {
		return false, err
	}
	if err := firstErr(append([]*op{eOp, vOp}, tagOps...)...); err != nil {
		return false, err
	}
	cur, err := seqValue(seqOp)
	if err != nil {
		return false, err
	}
	t := f.Ticket
	admit := t.Epoch == s.epochOf(cur) && t.Seq <= cur
	// A missing version (never written, or evicted) stands for the
	// current sequence: the last invalidation of the key or tag may have
	// been any one up to cur, so only a ticket of cur is above it.
	//
	//	invalidate: s = 10; version(tag) = 10
	//	load:       (ticket 5, taken before) still running
	//	memcached:  evicts version(tag)
	//	fill:       version(tag) missing; recreated at cur >= 10 > 5: refused
	//
	// A fill that would have been accepted (the version was never
	// written, or was at most its ticket) is refused once, and the next
	// load, whose ticket is at least cur, fills.
	kv, kvKnown := parseVersions(vOp, cur)
	if !kvKnown {
		kv = lostVersions(cur)
	}
	if admit && kv.soft > t.Seq {
		admit = false
	}
	tagKnown := make([]bool, len(tags))
	for i, o := range tagOps {
		v, known := parseVersions(o, cur)
		tagKnown[i] = known
		if !known {
			v = lostVersions(cur)
		}
		if admit && v.soft > t.Seq {
			admit = false
		}
	}
	// Stage one writes the missing versions, whatever the outcome, so
	// that an older load's fill after this one sees them too.
	recreate := batch{}
	if !kvKnown {
		recreate.add(kn, s.createVersions(vn, vOp, lostVersions(cur)))
	}
	for i, tag := range tags {
		if !tagKnown[i] {
			recreate.add(s.tagNode(tag), s.createVersions(s.name(kindTag, tag), tagOps[i], lostVersions(cur)))
		}
	}
	if !admit {
		if len(recreate) > 0 {
			if err := s.run(ctx, recreate); err != nil {
				return false, err
			}
		}
		if f.Set && !hooks.SetKeepsOld.Load() {
			return false, s.dropPredating(ctx, kn, en, eOp, t)
		}
		return false, nil
	}
	threshold := t.Seq // the post-check's: no version may pass it
	if f.Set {
		s1, err := s.bumpKey(ctx, kn, vn, cur)
		if err != nil {
			return false, err
		}
		if s.epochOf(s1) != t.Epoch {
			return false, nil
		}
		t.Seq, threshold = s1, s1
		kvKnown = true
	}
	now := s.now()
	e := store.NewEntry(f, t, now)
	buf, err := e.AppendBinary(nil)
	if err == nil && len(buf)+len(en)+64 > s.maxItem {
		err = fmt.Errorf("memcachestore: entry of %d bytes for %q, more than MaxItemBytes %d", len(buf), key, s.maxItem)
	}
	if err != nil {
		return false, s.tooLargeFill(ctx, key, f, err)
	}
	// Stage one: create the missing versions, at cur, and write the
	// entry. Stage two: read the versions again.
	write, check := recreate, batch{}
	left := e.Expires().Sub(now)
	var eWrite *op
	if left <= 0 {
		eWrite = del(en, "")
	} else {
		mode := "ME"
		if eOp.found() {
			mode = fmt.Sprintf("C%d", eOp.uint('c'))
		}
		eWrite = set(en, buf, fmt.Sprintf("T%d c %s", s.ttlSeconds(left), mode))
	}
	write.add(kn, eWrite)
	vCheck := get(vn, "v")
	check.add(kn, vCheck)
	tagChecks := make([]*op, len(tags))
	for i, tag := range tags {
		tagChecks[i] = get(s.name(kindTag, tag), "v")
		check.add(s.tagNode(tag), tagChecks[i])
	}
	if err := s.stages(ctx, write, check); err != nil {
		return false, err
	}
	if tooLarge(eWrite) {
		return false, s.tooLargeFill(ctx, key, f, eWrite.err)
	}
	if err := firstErr(append([]*op{eWrite, vCheck}, tagChecks...)...); err != nil {
		return false, err
	}
	if left <= 0 {
		return true, nil
	}
	if eWrite.status != "HD" {
		return false, nil // the item changed since the first read
	}
	if !s.postCheck {
		return true, nil
	}
	moved := false
	if v, ok := parseVersions(vCheck, cur); !ok || v.soft > threshold {
		moved = true
	}
	for _, o := range tagChecks {
		if v, ok := parseVersions(o, cur); !ok || v.soft > f.Ticket.Seq {
			moved = true
		}
	}
	if moved {
		o := del(en, fmt.Sprintf("C%d", eWrite.uint('c')))
		if err := kn.do(ctx, []*op{o}); err != nil {
			return false, err
		}
		return false, nil
	}
	return true, nil
}

// lostVersions are what a missing versions item is recreated with, by a
// fill or an invalidation that reads cur as the sequence: both versions at
// cur. The item may have been evicted after any invalidation up to cur,
// soft or hard, so the recreated item is above every ticket issued before
// it (a fill of an older ticket is refused) and hides, as hard, every
// entry filled before it (an entry of a tag hard-invalidated before the
// eviction is not served again, not even as stale).
func lostVersions(cur uint64) versions { return versions{soft: cur, hard: cur} }

// createVersions writes v under name unless the item is there: an add if
// there was none, a CAS write if it held versions of another epoch.
func (s *Store) createVersions(name string, read *op, v versions) *op {
	if read.found() {
		return set(name, v.encode(), fmt.Sprintf("T0 C%d", read.uint('c')))
	}
	return set(name, v.encode(), "T0 ME")
}

// bumpKey takes s = ++seq and raises the key's versions to s, soft and
// hard, with a CAS loop, and returns s.
func (s *Store) bumpKey(ctx context.Context, kn *node, vn string, cur uint64) (uint64, error) {
	inc := s.incrSeq()
	if err := s.seqNode().do(ctx, []*op{inc}); err != nil {
		return 0, err
	}
	s1, err := seqValue(inc)
	if err != nil {
		return 0, err
	}
	return s1, s.raise(ctx, kn, vn, s1, false)
}

// raise sets the versions item name to at least seq (the hard version too
// unless soft), by a CAS loop: memcached has no "max".
func (s *Store) raise(ctx context.Context, n *node, name string, seq uint64, soft bool) error {
	for range 64 {
		r := get(name, "v c")
		if err := n.do(ctx, []*op{r}); err != nil {
			return err
		}
		if r.err != nil {
			return r.err
		}
		v, ok := parseVersions(r, seq)
		if !ok {
			v = lostVersions(seq)
		}
		v.soft = max(v.soft, seq)
		if !soft {
			v.hard = max(v.hard, seq)
		}
		w := s.createVersions(name, r, v)
		if err := n.do(ctx, []*op{w}); err != nil {
			return err
		}
		if w.err != nil {
			return w.err
		}
		if w.status == "HD" {
			return nil
		}
	}
	return fmt.Errorf("memcachestore: versions %q: too many concurrent writers", name)
}

// dropPredating drops the key's entry after a refused Set with ticket t,
// unless it is of another epoch than t (then it was written after t was
// taken). An entry that does not decode goes too.
func (s *Store) dropPredating(ctx context.Context, kn *node, en string, eOp *op, t store.Ticket) error {
	if !eOp.found() {
		return nil
	}
	var e store.Entry
	if err := e.UnmarshalBinary(eOp.value); err == nil && e.Ticket.Epoch != t.Epoch {
		return nil
	}
	o := del(en, fmt.Sprintf("C%d", eOp.uint('c')))
	if err := kn.do(ctx, []*op{o}); err != nil {
		return err
	}
	if o.status == "EX" {
		// Rewritten since: by a fill that read the key after the Set's
		// refusal point, or by one before it; drop it either way.
		return s.dropAny(ctx, kn, en)
	}
	return nil
}

func (s *Store) dropAny(ctx context.Context, kn *node, en string) error {
	return kn.do(ctx, []*op{del(en, "")})
}

// tooLargeFill reports an entry too large; a Set still drops the key's
// entry and advances its version, as an invalidation of the key would.
func (s *Store) tooLargeFill(ctx context.Context, key string, f *store.Fill, cause error) error {
	if f.Set {
		if err := s.Invalidate(ctx, store.Invalidation{Keys: []string{key}}); err != nil {
			return err
		}
	}
	return fmt.Errorf("memcachestore: Fill(%q): %w: %w", key, store.ErrTooLarge, cause)
}
