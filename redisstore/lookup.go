package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock/store"
)

// The steps of a lookup. [Store.Lookup] runs one key through them and
// [Store.LookupMany] many keys, round by round (see lookups), so that a
// key gets the same answer, through the same calls, either way.
//
// A lookup first tries the hit path (see hit.go): one MGET, which serves a
// warm hit. Anything else runs the lookup script. On Cluster the script
// cannot see the versions of the entry's tags in other slots: they are
// read next (the read-side check), and if one was invalidated after the
// entry's ticket the script runs again, told what the check found, so that
// it drops the entry (or marks it stale) and decides the lease on that
// verdict. A lookup whose caller must load then reads the sequence: its
// ticket. A script that finds its slot uninitialised is run again after
// the slot is fenced, and a tag whose versions do not parse (Cluster) is
// repaired in its own slot before the script runs again. A read made with
// a verified replication ID whose reply comes after a new connection was
// made (see node.go) is made again, with the ID read by the script.

// lookupStep is what a lookup does next.
type lookupStep uint8

const (
	stepHit    lookupStep = iota // the MGET of the hit path
	stepScript                   // run the lookup script
	stepTags                     // read the versions of the entry's tags in other slots
	stepRepair                   // repair a tag's versions in the tag's slot
	stepSeq                      // read the sequence: the ticket
	stepDone                     // lk or err is the answer
)

// A lookupOp is one key's lookup in progress.
type lookupOp struct {
	key  string
	kn   keyNames
	req  store.LookupRequest
	args lookupArgs
	next lookupStep
	plan *hitPlan // the hit path's MGET (stepHit)

	r      lookupResult        // the last reply of the script
	remote map[uint16][]string // the tag keys to read, by slot (stepTags, stepRepair)

	try     int  // runs of the script after a tag check or a repair
	uninits int  // uninit replies in a row, each followed by a fence
	stale   int  // replies that came after a new connection, each read again
	granted bool // a script granted the lease, even if a later step failed
	corrupt bool // a step found data that does not parse

	// The current round (see lookupRound).
	step     lookupStep // the step it makes
	lo, hi   int        // its calls in the round's pipeline
	n        *node      // the server of its script or MGET
	off      int64      // the test offset its script was sent with (µs)
	trusted  bool       // its calls were sent with a verified replication ID
	tc       tagCheck   // what its tag check found
	unfenced bool       // it found a slot uninitialised

	lk  store.Lookup
	err error
}

const maxTries = 3

type lookupArgs struct {
	token                string
	ttl                  int64  // µs
	early                string // "1": early refresh; "-1": a refresh; "0": neither
	hardBelow, softBelow uint64
}

type lookupResult struct {
	lk      store.Lookup
	version uint64 // the key's version (Cluster)
	guard   uint64 // the entry's guard seq
	tk      string // the entry's tag keys (Cluster)
	badTag  string // the key of a tag whose versions do not parse (Cluster)
	view    entryView
	// badEntry: the script returned an entry that does not parse here.
	badEntry bool
}

func (s *Store) newLookup(key string, req store.LookupRequest) lookupOp {
	return s.newLookupNames(key, s.layout.key(key), req)
}

func (s *Store) newLookupNames(key string, kn keyNames, req store.LookupRequest) lookupOp {
	ttl := req.LeaseTTL
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	early := "0"
	switch {
	case req.Refresh:
		early = "-1" // the script's "due now"
	case req.Early:
		early = "1"
	}
	op := lookupOp{
		key:  key,
		kn:   kn,
		req:  req,
		args: lookupArgs{token: token(req.Lease), ttl: max(ttl.Microseconds(), 1), early: early},
		next: stepScript,
	}
	if s.hits && !req.Refresh {
		// A Refresh asks for the lease on a fresh entry: never a hit.
		op.next = stepHit
	}
	return op
}

func (op *lookupOp) fail(err error) { op.err, op.next = err, stepDone }

// again makes op take its step again: its reply came after a new
// connection (see node.go).
func (op *lookupOp) again() {
	if op.stale == maxTries {
		op.fail(errors.New("the connections to Redis keep changing"))
		return
	}
	op.stale++
}

// lookups runs ops to their end, in rounds: each round, every op not done
// takes its next step, and the steps of all of them are one round trip (a
// pipeline, or a single command when there is only one). One op takes
// exactly the calls of a lookup on its own, in the same order; n ops take
// as many rounds as the slowest of them would alone.
func (s *Store) lookups(ctx context.Context, ops []*lookupOp) {
	for s.lookupRound(ctx, ops) {
	}
}

// lookupRound makes the next step of every op not done, in one round
// trip: the MGETs of ops at stepHit, the lookup scripts of ops at
// stepScript, the tag checks of ops at stepTags or stepRepair, and one
// read of the sequence for all ops at stepSeq. A slot found
// uninitialised, by a script or a tag check, is fenced once for all ops
// before they go on. It reports whether any op had a step to make.
func (s *Store) lookupRound(ctx context.Context, ops []*lookupOp) bool {
	var (
		calls []call
		seq   bool
		busy  bool
	)
	var one [1]call // a single key's one call needs no allocation
	calls = one[:0]
	gen := s.gen()
	for _, op := range ops {
		op.step = op.next
		op.lo = len(calls)
		op.n, op.trusted = nil, false
		switch op.next {
		case stepHit:
			op.plan = s.plan(op.key)
			op.kn = op.plan.kn
			op.n = s.nodeFor(ctx, op.kn.entry)
			if !s.hitUsable(op.n, gen) {
				op.step = stepScript
				op.next = stepScript
				calls = s.appendLookupCall(ctx, calls, op, gen)
				break
			}
			calls = append(calls, call{raw: op.plan.args, buf: newHitBuf(op.plan)})
		case stepScript:
			calls = s.appendLookupCall(ctx, calls, op, gen)
		case stepTags, stepRepair:
			var trusted bool
			calls, trusted = s.appendTagCalls(ctx, calls, op.remote, gen)
			op.trusted = trusted
		case stepSeq:
			seq = true
		}
		op.hi, busy = len(calls), busy || op.next != stepDone
	}
	if !busy {
		return false
	}
	var cmd [1]redis.Cmder
	sent := mono()
	cmds, seqCmd := s.pipe(ctx, cmd[:0], calls, seq)
	fresh := s.fresh(gen)

	fence := false
	for _, op := range ops {
		op.unfenced = false
		c := cmds[op.lo:op.hi]
		switch op.step {
		case stepHit:
			if err := c[0].Err(); err != nil {
				s.failed(err)
				op.fail(err)
				continue
			}
			out := hitNo
			var r lookupResult
			if fresh || !s.cfg.checkFailover {
				out, op.lk, r = s.judgeHit(op.plan, op.n, gen, calls[op.lo].buf, op.req)
			}
			switch out {
			case hitServed:
				op.next = stepDone
			case hitTags:
				op.r, op.remote, op.next = r, op.plan.remote, stepTags
			case hitSeq:
				op.r, op.next = r, stepSeq
			default:
				op.next = stepScript
			}
		case stepScript:
			v, err := c[0].(*redis.Cmd).Slice()
			if err != nil {
				s.failed(err)
				op.fail(err)
				continue
			}
			if op.trusted && !fresh {
				// Sent with a verified ID, answered after a new
				// connection: run it again with the ID read by the
				// script.
				op.again()
				continue
			}
			if u, cor := uninit(v); u {
				op.corrupt = op.corrupt || cor
				if op.uninits == maxTries {
					op.fail(errors.New("slot stays uninitialised"))
					continue
				}
				// Fenced below; the script runs again next round.
				op.uninits++
				op.unfenced, fence = true, true
				continue
			}
			op.uninits = 0
			r, err := s.parseLookup(v, op.n, gen, sent, op.off)
			if err != nil {
				op.fail(err)
				continue
			}
			s.judge(op, r)
		case stepTags, stepRepair:
			if op.trusted && !fresh {
				op.again()
				continue
			}
			tc, u, err := s.tagResult(calls[op.lo:op.hi], c, gen)
			op.unfenced, fence = u, fence || u
			if err != nil {
				op.fail(err)
				continue
			}
			op.tc = tc
		}
	}
	var ferr error
	if fence {
		ferr = s.fence(ctx)
	}
	var (
		n      uint64
		seqErr error
	)
	if seq {
		n, seqErr = s.seqOf(ctx, seqCmd)
	}
	for _, op := range ops {
		if op.next == stepDone {
			continue
		}
		if op.unfenced && ferr != nil {
			op.fail(ferr)
			continue
		}
		if op.trusted && !fresh && (op.step == stepTags || op.step == stepRepair) {
			continue // made again next round
		}
		switch op.step {
		case stepSeq:
			if seqErr != nil {
				op.fail(seqErr)
				continue
			}
			op.r.lk.Ticket.Seq = n
			op.finish()
		case stepRepair:
			if op.try == maxTries {
				op.fail(errors.New("tag versions stay corrupt"))
				continue
			}
			op.try++
			op.next = stepScript
		case stepTags:
			op.corrupt = op.corrupt || op.tc.corrupt
			// A slot that lost data after the entry's ticket may have
			// lost an invalidation of its tags: its floor counts as a
			// hard version.
			s.verdict(op, max(op.tc.hard, op.tc.floor), op.tc.any)
		}
	}
	return true
}

// appendLookupCall appends op's lookup script.
func (s *Store) appendLookupCall(ctx context.Context, calls []call, op *lookupOp, gen uint64) []call {
	if op.kn.entry == "" {
		op.kn = s.layout.key(op.key)
	}
	if op.n == nil {
		op.n = s.nodeFor(ctx, op.kn.entry)
	}
	rid, trusted := s.rid(op.n, gen)
	op.trusted, op.off = trusted, s.offset()
	keys := []string{op.kn.entry, op.kn.version, op.kn.lease, s.marker(op.kn.slot), op.kn.fresh}
	if !s.cluster {
		keys = append(keys, s.layout.seq())
	}
	a := &op.args
	return append(calls, call{script: lookupScript, keys: keys, args: []any{
		s.clusterArg(), op.off, candidate(), rid, a.token, a.ttl,
		a.early, a.hardBelow, a.softBelow,
	}})
}

// judge decides op's next step from reply r of its script.
func (s *Store) judge(op *lookupOp, r lookupResult) {
	op.r = r
	op.granted = op.granted || r.lk.Lease
	op.corrupt = op.corrupt || r.lk.Corrupt
	if r.badTag != "" {
		// The script dropped the entry. Repair the tag in its own slot
		// (the tag check fences the slot), then ask again: the key's
		// slot may be the one fenced, and the ticket of the load this
		// lookup grants must be of its new epoch.
		op.next, op.remote = stepRepair, map[uint16][]string{tagKeySlot(r.badTag): {r.badTag}}
		return
	}
	if r.badEntry {
		op.corrupt = true
		s.verdict(op, math.MaxUint64, 0)
		return
	}
	if r.lk.Entry != nil {
		s.notePlan(op.key, op.kn, &r.view)
	}
	switch {
	case s.cluster && r.lk.Entry != nil && len(r.lk.Entry.Tags) > 0:
		local, remote := s.splitTags(op.kn.slot, r.lk.Entry.Tags)
		switch {
		case encodeList(local) != r.tk:
			// The script checked the tag keys the entry names: they must
			// be those of its tags in its slot, or a tag went unchecked.
			op.corrupt = true
			s.verdict(op, math.MaxUint64, 0)
		case len(remote) > 0:
			// The read-side check: tags in other slots were not seen by
			// the script.
			op.next, op.remote = stepTags, remote
		default:
			s.verdict(op, 0, 0)
		}
	default:
		s.verdict(op, 0, 0)
	}
}

// verdict acts on what the check of the entry's tags found: hard and soft
// are the highest hard and soft versions of its tags (zero when the script
// saw them all).
func (s *Store) verdict(op *lookupOp, hard, soft uint64) {
	r := &op.r
	if hard > r.guard || soft > r.guard && r.lk.State == store.StateFresh {
		if op.try == maxTries {
			op.fail(errors.New("the entry kept changing under the tag check"))
			return
		}
		// Ask again with what the check found: the script drops (or
		// marks stale) the entry if it is still the one checked, and
		// decides the lease on that verdict.
		op.try++
		op.args.hardBelow, op.args.softBelow = max(op.args.hardBelow, hard), max(op.args.softBelow, soft)
		op.next = stepScript
		return
	}
	if s.cluster {
		if r.lk.Lease || r.lk.State == store.StateMiss || op.req.Lease == 0 {
			op.next = stepSeq
			return
		}
		// Served without a load: a lower bound spares the sequence's
		// node a call per hit (see the package doc).
		r.lk.Ticket.Seq = max(r.version, r.lk.Entry.Ticket.Seq)
	}
	op.finish()
}

func (op *lookupOp) finish() {
	op.r.lk.Corrupt = op.corrupt
	if op.corrupt {
		// The contract: a lookup that found corrupt data is a miss (the
		// script already dropped whatever entry it served).
		op.r.lk.Entry, op.r.lk.State = nil, store.StateMiss
	}
	op.lk, op.next = op.r.lk, stepDone
}

// releaseFailed gives up the leases that scripts granted to ops that then
// failed: nobody will load with them, so another caller may take them at
// once. It has its own short timeout: ctx may be what failed.
func (s *Store) releaseFailed(ctx context.Context, ops []*lookupOp) {
	var calls []call
	for _, op := range ops {
		if op.err != nil && op.granted && op.args.token != "0" {
			calls = append(calls, releaseCall(op.kn, op.args.token))
		}
	}
	if len(calls) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	_, _ = s.pipe(rctx, nil, calls, false)
	cancel()
}

// parseLookup reads the lookup script's reply, to a call sent to n at
// local monotonic sentUS in generation gen with test offset off. The script parsed the entry
// already; an entry that still does not parse here is reported with
// badEntry, and the caller has the script drop it.
func (s *Store) parseLookup(v []any, n *node, gen uint64, sentUS, off int64) (lookupResult, error) {
	if len(v) != 10 && len(v) != 11 {
		return lookupResult{}, fmt.Errorf("malformed lookup reply of %d elements", len(v))
	}
	var r lookupResult
	r.lk.State = store.State(num(v[1]))
	r.lk.Lease = num(v[2]) == 1
	r.lk.Held = num(v[3]) == 1
	epoch, err := strconv.ParseUint(str(v[4]), 10, 64)
	if err != nil {
		return r, fmt.Errorf("malformed epoch in the lookup reply: %w", err)
	}
	r.lk.Ticket.Epoch = epoch
	if v[5] != nil {
		r.lk.Ticket.Seq = unum(v[5])
	}
	t := num(v[6])
	r.lk.Now = time.UnixMicro(t)
	n.clock(t-off, sentUS)
	if v[7] != nil {
		r.version = unum(v[7])
	}
	switch c := str(v[8]); c {
	case "0":
	case "1":
		r.lk.Corrupt = true
	default:
		r.lk.Corrupt, r.badTag = true, c
	}
	if v[9] != nil {
		s.verified(n, gen, str(v[9]))
	}
	if len(v) == 10 {
		return r, nil
	}
	view, ok := parseEntry([]byte(str(v[10]))) // a copy: the caller owns the value
	if !ok {
		r.badEntry = true
		r.lk.State = store.StateMiss
		return r, nil
	}
	r.view = view
	r.guard = view.guard
	r.tk = string(view.tagKeys)
	r.lk.Entry = view.storeEntry(decodeTags(view.tags))
	return r, nil
}
