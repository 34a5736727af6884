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
// A lookup runs the lookup script. On Cluster the script cannot see the
// versions of the entry's tags in other slots: they are read next (the
// read-side check), and if one was invalidated after the entry's ticket
// the script runs again, told what the check found, so that it drops the
// entry (or marks it stale) and decides the lease on that verdict. A
// lookup whose caller must load then reads the sequence: its ticket. A
// script that finds its slot uninitialised is run again after the slot is
// fenced, and a tag whose versions do not parse (Cluster) is repaired in
// its own slot before the script runs again.

// lookupStep is what a lookup does next.
type lookupStep uint8

const (
	stepScript lookupStep = iota // run the lookup script
	stepTags                     // read the versions of the entry's tags in other slots
	stepRepair                   // repair a tag's versions in the tag's slot
	stepSeq                      // read the sequence: the ticket
	stepDone                     // lk or err is the answer
)

// A lookupOp is one key's lookup in progress.
type lookupOp struct {
	kn   keyNames
	req  store.LookupRequest
	args lookupArgs
	next lookupStep

	r      lookupResult        // the last reply of the script
	remote map[uint16][]string // the tag keys to read, by slot (stepTags, stepRepair)

	try     int  // runs of the script after a tag check or a repair
	uninits int  // uninit replies in a row, each followed by a fence
	granted bool // a script granted the lease, even if a later step failed
	corrupt bool // a step found data that does not parse

	// The current round (see lookupRound).
	step     lookupStep // the step it makes
	lo, hi   int        // its calls in the round's pipeline
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
	lk       store.Lookup
	version  uint64 // the key's version (Cluster)
	guard    uint64 // the entry's guard seq
	tk       string // the entry's tag keys (Cluster)
	badEntry bool   // the script returned an entry that does not parse
	badTag   string // the key of a tag whose versions do not parse (Cluster)
}

func (s *Store) newLookup(key string, req store.LookupRequest) lookupOp {
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
	return lookupOp{
		kn:   s.layout.key(key),
		req:  req,
		args: lookupArgs{token: token(req.Lease), ttl: max(ttl.Microseconds(), 1), early: early},
	}
}

func (op *lookupOp) fail(err error) { op.err, op.next = err, stepDone }

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
// trip: the lookup scripts of ops at stepScript, the tag checks of ops at
// stepTags or stepRepair, and one read of the sequence for all ops at
// stepSeq. A slot found uninitialised, by a script or a tag check, is
// fenced once for all ops before they go on. It reports whether any op
// had a step to make.
func (s *Store) lookupRound(ctx context.Context, ops []*lookupOp) bool {
	var (
		calls []call
		seq   bool
		busy  bool
	)
	var one [1]call // a single key's one call needs no allocation
	calls = one[:0]
	for _, op := range ops {
		op.step = op.next
		op.lo = len(calls)
		switch op.next {
		case stepScript:
			a := &op.args
			calls = append(calls, call{lookupScript, []string{op.kn.entry, op.kn.version, op.kn.lease, s.marker(op.kn.slot)}, []any{
				s.clusterArg(), s.offset(), candidate(), s.check, a.token, a.ttl,
				a.early, a.hardBelow, a.softBelow,
			}})
		case stepTags, stepRepair:
			calls = s.appendTagCalls(calls, op.remote)
		case stepSeq:
			seq = true
		}
		op.hi, busy = len(calls), busy || op.next != stepDone
	}
	if !busy {
		return false
	}
	var cmd [1]*redis.Cmd
	cmds, seqCmd := s.pipe(ctx, cmd[:0], calls, seq)

	fence := false
	for _, op := range ops {
		op.unfenced = false
		c := cmds[op.lo:op.hi]
		switch op.step {
		case stepScript:
			v, err := c[0].Slice()
			if err != nil {
				op.fail(err)
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
			r, err := parseLookup(v)
			if err != nil {
				op.fail(err)
				continue
			}
			s.judge(op, r)
		case stepTags, stepRepair:
			tc, u, err := tagResult(c)
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
	switch {
	case r.badEntry:
		op.corrupt = true
		s.verdict(op, math.MaxUint64, 0)
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

// parseLookup reads the lookup script's reply. The script parsed the entry
// already; an entry that still does not parse here is reported with
// badEntry, and the caller has the script drop it.
func parseLookup(v []any) (lookupResult, error) {
	if len(v) < 9 {
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
	r.lk.Now = time.UnixMicro(num(v[6]))
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
	if len(v) == 9 {
		return r, nil
	}
	if len(v) != 22 {
		return r, fmt.Errorf("malformed lookup reply of %d elements", len(v))
	}
	f := v[9:]
	tags, ok := decodeList(str(f[9]))
	var nums [9]int64
	for i := range nums {
		j := i
		if i == 8 {
			j = 12 // the early lead, after n, tg, v, tk
			if f[j] == nil {
				continue // an entry written before entries kept a lead: never early
			}
		}
		n, err := strconv.ParseInt(str(f[j]), 10, 64)
		ok = ok && err == nil && (n >= 0 || i >= 3 && i <= 6)
		nums[i] = n
	}
	if !ok {
		r.badEntry = true
		r.lk.State = store.StateMiss
		return r, nil
	}
	e := &store.Entry{
		Negative:     str(f[8]) == "1",
		Ticket:       store.Ticket{Epoch: uint64(nums[0]), Seq: uint64(nums[1])},
		Tags:         tags,
		Created:      time.UnixMicro(nums[3]),
		FreshUntil:   time.UnixMicro(nums[4]),
		StaleUntil:   time.UnixMicro(nums[5]),
		ErrorUntil:   time.UnixMicro(nums[6]),
		LoadDuration: time.Duration(nums[7]),
	}
	if lead := nums[8]; lead > 0 {
		e.RefreshAt = e.FreshUntil.Add(-time.Duration(lead) * time.Microsecond)
	}
	if !e.Negative {
		e.Value = []byte(str(f[10])) // a copy: the caller owns it
	}
	r.guard = uint64(nums[2])
	r.tk = str(f[11])
	r.lk.Entry = e
	return r, nil
}
