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
	kn   keyNames
	f    *store.Fill
	tok  string
	next fillStep

	remote map[uint16][]string // tag keys in other slots, to check before (fillCheck)
	keys   []string            // the script's KEYS
	check  int                 // how many tag keys the script checks
	set    string              // "0", "1", or on Cluster the Set's seq
	refuse bool                // the pre-fill refused the fill
	keep   bool                // hooks.SetKeepsOld, as read when the fill began

	uninits int // uninit replies in a row, each followed by a fence

	// The current round (see fillRound).
	step     fillStep   // the step it makes
	lo, hi   int        // its calls in the round's pipeline
	tc       tagCheck   // what its pre-fill's tag check found
	seq      *redis.Cmd // its pre-fill's call for a Set's seq
	unfenced bool       // it found a slot uninitialised

	ok  bool
	err error
}

func (op *fillOp) fail(err error) { op.err, op.next = err, fillDone }

// newFill prepares the fill of f under key. It makes no call. The test
// switches are read here, once per fill (see internal/hooks).
func (s *Store) newFill(key string, f *store.Fill) fillOp {
	op := fillOp{kn: s.layout.key(key), f: f}
	if f == nil {
		op.fail(fmt.Errorf("%w: nil *store.Fill", store.ErrInvalidOption))
		return op
	}
	op.tok = token(f.Lease)
	if len(f.Value) > s.cfg.maxValueSize {
		op.err = fmt.Errorf("%w: %d bytes, the limit is %d (MaxValueSize)",
			store.ErrTooLarge, len(f.Value), s.cfg.maxValueSize)
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
	op.keys = make([]string, 0, 4+len(local))
	op.keys = append(op.keys, op.kn.entry, op.kn.version, op.kn.lease, s.marker(op.kn.slot))
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
	for _, op := range ops {
		op.step = op.next
		op.lo = len(calls)
		switch op.next {
		case fillCheck:
			calls = s.appendTagCalls(calls, op.remote)
			if op.f.Set {
				calls = append(calls, call{seqScript, []string{s.layout.seq()}, nil})
			}
		case fillRun:
			calls = append(calls, call{fillScript, op.keys, s.fillArgs(op)})
		case fillRelease:
			calls = append(calls, releaseCall(op.kn, op.tok))
		}
		op.hi, busy = len(calls), busy || op.next != fillDone
	}
	if !busy {
		return false
	}
	var cmd [1]*redis.Cmd
	cmds, _ := s.pipe(ctx, cmd[:0], calls, false)

	fence := false
	for _, op := range ops {
		op.unfenced, op.seq = false, nil
		c := cmds[op.lo:op.hi]
		switch op.step {
		case fillCheck:
			if op.f.Set {
				c, op.seq = c[:len(c)-1], c[len(c)-1]
			}
			tc, u, err := tagResult(c)
			op.unfenced, fence = u, fence || u
			if err != nil {
				op.fail(err)
				continue
			}
			op.tc = tc
		case fillRun:
			v, err := c[0].Slice()
			if err != nil {
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
			if len(v) != 3 {
				op.fail(errors.New("malformed fill reply"))
				continue
			}
			op.ok, op.next = num(v[1]) == 1, fillDone
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

// fillArgs are the fill script's ARGV for op.
func (s *Store) fillArgs(op *fillOp) []any {
	f := op.f
	negative, refused, keepOld := "0", "0", "0"
	if f.Negative {
		negative = "1"
	}
	if op.refuse {
		refused = "1"
	}
	if op.keep {
		keepOld = "1"
	}
	value := f.Value
	if f.Negative || value == nil {
		value = []byte{}
	}
	return []any{
		s.clusterArg(), s.offset(), candidate(), s.check,
		strconv.FormatUint(f.Ticket.Epoch, 10), strconv.FormatUint(f.Ticket.Seq, 10), op.tok,
		value, negative, max(f.TTL, 0).Microseconds(), max(f.Stale, 0).Microseconds(),
		max(f.StaleIfError, 0).Microseconds(), max(f.LoadDuration, 0).Nanoseconds(), op.set,
		encodeList(f.Tags), refused, keepOld, op.check, min(max(f.Early, 0), max(f.TTL, 0)).Microseconds(),
	}
}
