package memcachestore

import (
	"context"
	"fmt"
	"slices"
	"time"

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
//     another fill. An item gone since step 1 (NF) is written again as an
//     add (see rewrite). In the same pipeline, after the write, the
//     versions are read again.
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
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	fo := s.newFill(key, f)
	s.fills(ctx, []*fillOp{fo})
	return fo.ok, fo.err
}

// fillOp is one key's fill, taken round by round by fills, so that the
// fills of a batch share their round trips.
type fillOp struct {
	key        string
	f          *store.Fill
	kn         *node
	en, vn     string
	tags       []string
	lcas       uint64 // the CAS of the lease item to delete, or zero
	eOp, vOp   *op
	tagOps     []*op
	t          store.Ticket // the entry's ticket (a Set's is its own)
	threshold  uint64       // the post-check's: no key version may pass it
	cur        uint64
	eWrite     *op
	left       time.Duration // the entry's life from now; <= 0: a delete
	vCheck     *op
	tagChecks  []*op
	last       []*op  // its commands of the last round
	buf        []byte // the entry's envelope
	rewritten  bool   // written again after its CAS write found no item
	ok, active bool   // accepted; still going
	err        error
}

func (s *Store) newFill(key string, f *store.Fill) *fillOp {
	fo := &fillOp{key: key, f: f, kn: s.keyNode(key), en: s.name(kindEntry, key), vn: s.name(kindVersions, key), active: true}
	switch {
	case f == nil:
		fo.err, fo.active = invalid("Fill: nil *Fill"), false
	case f.Negative && len(f.Value) > 0:
		fo.err, fo.active = invalid("Fill(%q): a negative fill has a value", key), false
	default:
		fo.tags = slices.Compact(slices.Sorted(slices.Values(f.Tags)))
		fo.lcas = s.takeLease(key, f.Lease)
	}
	return fo
}

func (fo *fillOp) fail(err error) {
	fo.ok, fo.err, fo.active = false, err, false
}

// fills runs the fills fs together: (1) one round trip reads the sequence,
// once, and each key's entry and versions and its tags' versions; (2) one
// writes the missing versions and the entries, and (3) one reads the
// versions again, (2) and (3) in one pipeline when every command goes to
// one server; (4) one deletes the entries whose post-check failed and the
// leases. Each round is one pipeline per server, the servers in parallel.
// A Set takes its own round trips between (1) and (2): the sequence and
// its key's versions.
func (s *Store) fills(ctx context.Context, fs []*fillOp) {
	seqOp := s.readSeq()
	b := batch{}
	b.add(s.seqNode(), seqOp)
	for _, fo := range fs {
		if !fo.active {
			continue
		}
		fo.eOp, fo.vOp = get(fo.en, "c v"), get(fo.vn, "v c")
		b.add(fo.kn, fo.eOp, fo.vOp)
		fo.tagOps = make([]*op, len(fo.tags))
		for i, tag := range fo.tags {
			fo.tagOps[i] = get(s.name(kindTag, tag), "v c")
			b.add(s.tagNode(tag), fo.tagOps[i])
		}
	}
	_ = s.run(ctx, b)
	cur, seqErr := seqValue(seqOp)
	write, check := batch{}, batch{}
	for _, fo := range fs {
		if !fo.active {
			continue
		}
		if err := firstErr(append([]*op{fo.eOp, fo.vOp}, fo.tagOps...)...); err != nil {
			fo.fail(err)
			continue
		}
		if seqErr != nil {
			fo.fail(seqErr)
			continue
		}
		fo.cur = cur
		s.prepareFill(ctx, fo, write, check)
	}
	if len(write) > 0 || len(check) > 0 {
		_ = s.stages(ctx, write, check)
	}
	last := batch{}
	for _, fo := range fs {
		n := len(last[fo.kn])
		if fo.active {
			s.judgeFill(ctx, fo, last)
		}
		if fo.lcas != 0 {
			last.add(fo.kn, del(s.name(kindLease, fo.key), fmt.Sprintf("C%d", fo.lcas)))
		}
		fo.last = last[fo.kn][n:]
	}
	if len(last) == 0 {
		return
	}
	_ = s.run(ctx, last)
	for _, fo := range fs {
		if fo.err != nil {
			continue
		}
		// The deletes' outcome does not change the answer, a failed
		// round trip does: the entry may still be there.
		if err := firstNetErr(fo.last); err != nil {
			fo.fail(err)
		}
	}
}

// prepareFill decides fo after the first round (cur is the sequence) and
// adds its writes to write and its post-write reads to check.
func (s *Store) prepareFill(ctx context.Context, fo *fillOp, write, check batch) {
	f, cur := fo.f, fo.cur
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
	// load, whose ticket is at least cur, fills. The missing versions are
	// written whatever the outcome, so that an older load's fill after
	// this one sees them too.
	kv, kvKnown := parseVersions(fo.vOp, cur)
	if !kvKnown {
		kv = lostVersions(cur)
	}
	if admit && kv.soft > t.Seq {
		admit = false
	}
	for i, o := range fo.tagOps {
		v, known := parseVersions(o, cur)
		if !known {
			v = lostVersions(cur)
			write.add(s.tagNode(fo.tags[i]), s.createVersions(s.name(kindTag, fo.tags[i]), o, v))
		}
		if admit && v.soft > t.Seq {
			admit = false
		}
	}
	if !admit {
		if !kvKnown {
			write.add(fo.kn, s.createVersions(fo.vn, fo.vOp, lostVersions(cur)))
		}
		fo.active = false
		if f.Set && !hooks.SetKeepsOld.Load() {
			if err := s.dropPredating(ctx, fo.kn, fo.en, fo.eOp, t); err != nil {
				fo.fail(err)
			}
		}
		return
	}
	if gap := hooks.FillGap.Load(); gap != nil {
		// A test's invalidation, in the gap between the check and the
		// write that the second read closes: for a Set, before its
		// sequence number, so that the entry's ticket is above it and
		// only the second read can refuse the Set.
		(*gap)()
	}
	fo.threshold = t.Seq
	if f.Set {
		s1, err := s.bumpKey(ctx, fo.kn, fo.vn, cur)
		if err != nil {
			fo.fail(err)
			return
		}
		if s.epochOf(s1) != t.Epoch {
			fo.active = false
			return
		}
		t.Seq, fo.threshold = s1, s1
	} else if !kvKnown {
		write.add(fo.kn, s.createVersions(fo.vn, fo.vOp, lostVersions(cur)))
	}
	fo.t = t
	now := s.now()
	buf, until, err := store.AppendFillEnvelope(nil, f, t, now)
	if err == nil && len(buf)+len(fo.en)+64 > s.maxItem {
		err = fmt.Errorf("memcachestore: entry of %d bytes for %q, more than MaxItemBytes %d", len(buf), fo.key, s.maxItem)
	}
	if err != nil {
		fo.fail(s.tooLargeFill(ctx, fo.key, f, err))
		return
	}
	fo.left = until.Sub(now)
	if fo.left <= 0 {
		fo.eWrite = del(fo.en, "")
	} else {
		mode := "ME"
		if fo.eOp.found() {
			mode = fmt.Sprintf("C%d", fo.eOp.uint('c'))
		}
		fo.buf = buf
		fo.eWrite = set(fo.en, buf, fmt.Sprintf("T%d c %s", s.ttlSeconds(fo.left), mode))
	}
	write.add(fo.kn, fo.eWrite)
	s.addChecks(fo, check)
}

// addChecks adds fo's post-write reads of its versions to check.
func (s *Store) addChecks(fo *fillOp, check batch) {
	fo.vCheck = get(fo.vn, "v")
	check.add(fo.kn, fo.vCheck)
	fo.tagChecks = make([]*op, len(fo.tags))
	for i, tag := range fo.tags {
		fo.tagChecks[i] = get(s.name(kindTag, tag), "v")
		check.add(s.tagNode(tag), fo.tagChecks[i])
	}
}

// rewrite writes fo's entry again as an add, after its CAS write found the
// item gone (NF), and reads the versions again after it. The item went
// since the first read by a delete: an invalidation of the key, which
// raised the key's versions first, so the post-write check refuses the
// fill; or a lookup that dropped the entry it replaces, dead by then (an
// early refresh that ends after the old entry's last instant), or memcached
// evicting it, after which the fill is as good as one that found no item.
//
//	refresh: first read: entry CAS 7 (still fresh, due early)
//	reader:  the entry is past its end: md C7
//	refresh: ms C7: NF; ms ME: stored; versions <= ticket: accepted
func (s *Store) rewrite(ctx context.Context, fo *fillOp) {
	write, check := batch{}, batch{}
	fo.eWrite = set(fo.en, fo.buf, fmt.Sprintf("T%d c ME", s.ttlSeconds(fo.left)))
	write.add(fo.kn, fo.eWrite)
	s.addChecks(fo, check)
	_ = s.stages(ctx, write, check)
}

// judgeFill decides fo after the write and the post-write reads, and adds
// to last the delete of an entry written after an invalidation.
func (s *Store) judgeFill(ctx context.Context, fo *fillOp, last batch) {
	fo.active = false
	if tooLarge(fo.eWrite) {
		fo.fail(s.tooLargeFill(ctx, fo.key, fo.f, fo.eWrite.err))
		return
	}
	if err := firstErr(append([]*op{fo.eWrite, fo.vCheck}, fo.tagChecks...)...); err != nil {
		fo.fail(err)
		return
	}
	if fo.left <= 0 {
		fo.ok = true
		return
	}
	if fo.eWrite.status == "NF" && fo.buf != nil && !fo.rewritten {
		fo.rewritten = true
		s.rewrite(ctx, fo)
		s.judgeFill(ctx, fo, last)
		return
	}
	if fo.eWrite.status != "HD" {
		return // the item changed since the first read
	}
	if hooks.FillTagGap.Load() {
		fo.ok = true // the second read skipped: the gap stays open
		return
	}
	moved := false
	if v, ok := parseVersions(fo.vCheck, fo.cur); !ok || v.soft > fo.threshold {
		moved = true
	}
	for _, o := range fo.tagChecks {
		if v, ok := parseVersions(o, fo.cur); !ok || v.soft > fo.f.Ticket.Seq {
			moved = true
		}
	}
	if moved {
		last.add(fo.kn, del(fo.en, fmt.Sprintf("C%d", fo.eWrite.uint('c'))))
		return
	}
	fo.ok = true
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
