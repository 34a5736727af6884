package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/store"
)

// The steps of a fill. [Store.Fill] runs one key through them and
// [Store.FillMany] many keys, round by round (see fills), so that a key
// gets the same answer, through the same calls, either way.
//
// A fill runs the fill script, which checks the key's version and the
// versions of its tags in the key's slot and writes the entry. On Cluster
// the versions of its tags in other slots are checked before, and a Set
// takes its sequence number before (the pre-fill). A value too large is
// not sent: the fill only gives its lease back.

// fillStep is what a fill does next.
type fillStep uint8

const (
	fillCheck   fillStep = iota // Cluster: check the tags in other slots, take a Set's seq
	fillRun                     // run the fill script
	fillRelease                 // the value is too large: give the lease back
	fillDone                    // ok or err is the answer
)

// A fillOp is one key's fill in progress.
type fillOp struct {
	key  string
	kn   keyNames
	f    *store.Fill
	tok  string
	next fillStep

	remote map[uint16][]string // tag keys in other slots, to check before (fillCheck)
	keys   []string            // the script's KEYS
	local  int                 // where the tag keys begin in keys
	check  int                 // how many tag keys the script checks
	set    string              // "0", "1", or on Cluster the Set's seq
	refuse bool                // the pre-fill refused the fill
	keep   bool                // hooks.SetKeepsOld, as read when the fill began

	uninits int // uninit replies in a row, each followed by a fence

	// The current round (see fillRound).
	step     fillStep   // the step it makes
	lo, hi   int        // its calls in the round's pipeline
	n        *node      // the server of its script
	tc       tagCheck   // what its pre-fill's tag check found
	seq      *redis.Cmd // its pre-fill's call for a Set's seq
	unfenced bool       // it found a slot uninitialised

	ok  bool
	err error
	// dropSet: a Set too large to store, which still replaces the key's
	// entry: once its lease is released, the key is invalidated (see
	// dropTooLarge).
	dropSet bool
}

// dropTooLarge invalidates the keys of ops that are Sets too large to
// store, as the store contract asks of a Set that cannot be stored (see
// store.Fill.Set): it follows a write to the source of truth, so the old
// entry must go and the version advance, or a load that began before it
// could fill the value it replaced. An invalidation that fails is added
// to the op's error.
func (s *Store) dropTooLarge(ctx context.Context, ops []*fillOp) {
	var keys []string
	for _, op := range ops {
		if op.dropSet {
			keys = append(keys, op.key)
		}
	}
	if len(keys) == 0 {
		return
	}
	if err := s.Invalidate(ctx, store.Invalidation{Keys: keys}); err != nil {
		for _, op := range ops {
			if op.dropSet {
				op.err = errors.Join(op.err, fmt.Errorf("the key's old entry could not be dropped: %w", err))
			}
		}
	}
}

func (op *fillOp) fail(err error) { op.err, op.next = err, fillDone }

// newFill prepares the fill of f under key. It makes no call. The test
// switches are read here, once per fill (see internal/hooks).
func (s *Store) newFill(key string, f *store.Fill) fillOp {
	op := fillOp{key: key, kn: s.layout.key(key), f: f}
	if f == nil {
		op.fail(fmt.Errorf("%w: nil *store.Fill", store.ErrInvalidOption))
		return op
	}
	op.tok = token(f.Lease)
	if len(f.Value) > s.cfg.maxValueSize {
		op.err = fmt.Errorf("%w: %d bytes, the limit is %d (MaxValueSize)",
			store.ErrTooLarge, len(f.Value), s.cfg.maxValueSize)
		op.dropSet = f.Set
		op.next = fillRelease
		if op.tok == "0" {
			op.next = fillDone
		}
		return op
	}
	local, remote := s.splitTags(op.kn.slot, f.Tags)
	op.check = len(local)
	if hooks.FillFirstTagOnly.Load() && len(f.Tags) > 0 {
		// Check only f.Tags[0]: the first local key if it is local,
		// else (Cluster) only its remote slot.
		first, sl := s.layout.tagKey(f.Tags[0])
		op.check = 0
		if !s.cluster || sl == op.kn.slot {
			op.check, remote = 1, nil
		} else {
			remote = map[uint16][]string{sl: {first}}
		}
	}
	if hooks.NoClusterPreFill.Load() {
		remote = nil
	}
	op.keep = hooks.SetKeepsOld.Load()
	op.set = "0"
	if f.Set {
		op.set = "1"
	}
	op.keys = make([]string, 0, 6+len(local))
	op.keys = append(op.keys, op.kn.entry, op.kn.version, op.kn.lease, s.marker(op.kn.slot), op.kn.fresh)
	if !s.cluster {
		op.keys = append(op.keys, s.layout.seq())
	}
	op.local = len(op.keys)
	op.keys = append(op.keys, local...)
	op.next = fillRun
	if s.cluster && (len(remote) > 0 || f.Set) {
		op.next, op.remote = fillCheck, remote
	}
	return op
}

// fills runs ops to their end, in rounds: each round, every op not done
// takes its next step (its pre-fill, its script, or the release of its
// lease), and the steps of all of them are one round trip. One op takes
// exactly the calls of a fill on its own; n ops take as many rounds as the
// slowest of them would alone.
func (s *Store) fills(ctx context.Context, ops []*fillOp) {
	for s.fillRound(ctx, ops) {
	}
}

// fillRound makes the next step of every op not done, in one round trip.
// A slot found uninitialised, by a pre-fill or a script, is fenced once
// for all ops before they go on. It reports whether any op had a step to
// make.
//
// The pre-fill (Cluster) checks the fill's tags outside its key's slot
// against its ticket and, for a Set, takes the Set's sequence number. A
// tag invalidated after the check and before the fill lands is caught by
// the read-side check: the entry keeps the ticket as its guard.
func (s *Store) fillRound(ctx context.Context, ops []*fillOp) bool {
	var (
		calls []call
		busy  bool
	)
	var one [1]call // a single key's one call needs no allocation
	calls = one[:0]
	gen := s.gen()
	for _, op := range ops {
		op.step = op.next
		op.lo = len(calls)
		switch op.next {
		case fillCheck:
			calls, _ = s.appendTagCalls(ctx, calls, op.remote, gen)
			if op.f.Set {
				calls = append(calls, call{script: seqScript, keys: []string{s.layout.seq()}})
			}
		case fillRun:
			op.n = s.nodeFor(ctx, op.kn.entry)
			rid, _ := s.rid(op.n, gen)
			calls = append(calls, call{script: fillScript, keys: op.keys, args: s.fillArgs(op, rid)})
		case fillRelease:
			calls = append(calls, releaseCall(op.kn, op.tok))
		}
		op.hi, busy = len(calls), busy || op.next != fillDone
	}
	if !busy {
		return false
	}
	var cmd [1]redis.Cmder
	cmds, _ := s.pipe(ctx, cmd[:0], calls, false)

	fence := false
	for _, op := range ops {
		op.unfenced, op.seq = false, nil
		c := cmds[op.lo:op.hi]
		switch op.step {
		case fillCheck:
			cl := calls[op.lo:op.hi]
			if op.f.Set {
				c, op.seq = c[:len(c)-1], c[len(c)-1].(*redis.Cmd)
				cl = cl[:len(cl)-1]
			}
			tc, u, err := s.tagResult(cl, c, gen)
			op.unfenced, fence = u, fence || u
			if err != nil {
				op.fail(err)
				continue
			}
			op.tc = tc
		case fillRun:
			v, err := slice(c[0])
			if err != nil {
				s.failed(err)
				op.fail(err)
				continue
			}
			if u, _ := uninit(v); u {
				// The key's slot lost its data since the ticket was
				// taken (or the script found a version that does not
				// parse and deleted the slot's marker): fence it; the
				// retry refuses the fill (other epoch) and releases the
				// lease.
				if op.uninits == maxTries {
					op.fail(errors.New("slot stays uninitialised"))
					continue
				}
				op.uninits++
				op.unfenced, fence = true, true
				continue
			}
			if len(v) != 4 {
				op.fail(errors.New("malformed fill reply"))
				continue
			}
			if v[3] != nil {
				s.verified(op.n, gen, str(v[3]))
			}
			op.ok, op.next = num(v[1]) == 1, fillDone
			if op.ok {
				// The next hit of the key reads the tags of this entry.
				s.plans.set(op.key).put(s.newPlan(op.key, op.kn, op.f.Tags))
			}
		case fillRelease:
			// The error is the value's size; a release that fails
			// leaves a lease that expires.
			op.next = fillDone
		}
	}
	var ferr error
	if fence {
		ferr = s.fence(ctx)
	}
	for _, op := range ops {
		if op.next == fillDone {
			continue
		}
		if op.unfenced && ferr != nil {
			op.fail(ferr)
			continue
		}
		if op.step != fillCheck {
			continue
		}
		var seq string
		if op.seq != nil {
			var err error
			if seq, err = op.seq.Text(); err != nil {
				op.fail(err)
				continue
			}
		}
		t0 := op.f.Ticket.Seq
		if op.tc.any > t0 || op.tc.floor > t0 {
			// A refusal still runs the script: it releases the lease
			// and, for a Set, drops the older entry.
			op.refuse = true
		} else if op.f.Set {
			op.set = seq
		}
		op.next = fillRun
	}
	return true
}

// fillArgs are the fill script's ARGV for op, with replication ID rid.
func (s *Store) fillArgs(op *fillOp, rid string) []any {
	f := op.f
	refused, keepOld := "0", "0"
	if op.refuse {
		refused = "1"
	}
	if op.keep {
		keepOld = "1"
	}
	value := f.Value
	if f.Negative {
		value = nil
	}
	ttl := max(f.TTL, 0)
	lead := min(max(f.Early, 0), ttl).Microseconds()
	tags, tk := encodeList(f.Tags), encodeList(op.keys[op.local:])
	b := make([]byte, 0, offQ+8+len(tags)+len(tk)+len(value))
	b = appendEntryHead(b, f.Negative, f.Ticket.Epoch, f.Ticket.Seq, lead, max(f.LoadDuration, 0).Nanoseconds())
	head := b[:offQ]
	tail := appendEntryTail(b[offQ:offQ], tags, tk, value)
	return []any{
		s.clusterArg(), s.offset(), candidate(), rid,
		strconv.FormatUint(f.Ticket.Epoch, 10), strconv.FormatUint(f.Ticket.Seq, 10), op.tok,
		head, tail, ttl.Microseconds(), max(f.Stale, 0).Microseconds(),
		max(f.StaleIfError, 0).Microseconds(), op.set,
		refused, keepOld, op.check, lead, s.cfg.handoff,
	}
}
