package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/paddockcache/paddock/store"
	"github.com/redis/go-redis/v9"
)

// The Cluster paths. The sequence lives in one slot, entries in their
// key's slot and tag versions in their tag's slot, so the steps that are
// one script standalone are here a few calls, ordered so that the version
// protocol still holds (see the package doc for the argument).

// call is one script call of a pipeline.
type call struct {
	script *redis.Script
	keys   []string
	args   []any
}

// runAll runs calls in one pipeline (go-redis sends each node its part in
// parallel) and returns their commands, done. A script the server does not
// know yet (NOSCRIPT) is run again on its own, which loads it.
func (s *Store) runAll(ctx context.Context, calls []call) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(calls))
	if len(calls) == 1 {
		c := calls[0]
		cmds[0] = c.script.Run(ctx, s.client, c.keys, c.args...)
	} else {
		pipe := s.client.Pipeline()
		for i, c := range calls {
			cmds[i] = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx) // errors are read per command below
		for i, c := range calls {
			if redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
				cmds[i] = c.script.Run(ctx, s.client, c.keys, c.args...)
			}
		}
	}
	return cmds
}

// arrays returns the array replies of cmds.
func arrays(cmds []*redis.Cmd) ([][]any, error) {
	out := make([][]any, len(cmds))
	for i, cmd := range cmds {
		v, err := cmd.Slice()
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// readSeq reads the current sequence: the ticket of a load. If its node
// lost it, it starts it again (above every value it had), so that tickets
// stay above the versions the other nodes kept.
func (s *Store) readSeq(ctx context.Context) (uint64, error) {
	v, err := s.client.HGet(ctx, s.layout.seq(), "n").Result()
	if err == nil {
		if n, ok := parseSeq(v); ok {
			return n, nil
		}
	}
	// Missing, or not a sequence (another type, not a number): the
	// sequence script starts it again ahead of every value it had.
	if err == nil || errors.Is(err, redis.Nil) || redis.HasErrorPrefix(err, "WRONGTYPE") {
		v, err = s.nextSeq(ctx)
	}
	if err != nil {
		return 0, err
	}
	n, ok := parseSeq(v)
	if !ok {
		return 0, fmt.Errorf("malformed sequence %q", v)
	}
	return n, nil
}

// nextSeq advances the sequence and returns the new value, as a decimal.
func (s *Store) nextSeq(ctx context.Context) (string, error) {
	return seqScript.Run(ctx, s.client, []string{s.layout.seq()}).Text()
}

// fence starts a new epoch in every Cluster slot whose epoch marker is
// missing or from another replication history (its node lost data,
// restarted or failed over, or the slot moved; or it was never used). It
// takes a new sequence number r and gives each such slot a new epoch with
// floor r:
//
//   - tickets of the old epoch no longer fill entries of the slot, and its
//     entries of the old epoch are misses;
//   - tags of the slot fence every load and every entry whose ticket is
//     below r, because their versions may have been lost: a load that took
//     its ticket t0 < r may have read the database before an invalidation
//     whose write the node lost, while every ticket taken after this point
//     is at least r.
//
// A slot cannot tell "lost" from "never used", so fence does every slot at
// once (one script per node over all its slots): a slot fenced before a
// load takes its ticket costs that load nothing, and only a fill that saw
// the loss is refused.
//
// The fence runs on its own goroutine with its own timeout, shared by
// every caller that finds a slot uninitialised meanwhile; a caller whose
// context ends stops waiting, not the fence.
func (s *Store) fence(ctx context.Context) error {
	s.fmu.Lock()
	c := s.fcur
	if c == nil {
		c = &fenceCall{done: make(chan struct{})}
		s.fcur = c
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fenceTimeout)
			c.err = s.fenceAll(fctx)
			cancel()
			s.fmu.Lock()
			s.fcur = nil
			s.fmu.Unlock()
			close(c.done)
		}()
	}
	s.fmu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

const fenceTimeout = 30 * time.Second

type fenceCall struct {
	done chan struct{}
	err  error
}

func (s *Store) fenceAll(ctx context.Context) error {
	r, err := s.nextSeq(ctx)
	if err != nil {
		return err
	}
	cand := candidate()
	cc, ok := s.client.(*redis.ClusterClient)
	if !ok { // the Cluster layout on one server (tests)
		keys := make([]string, numSlots)
		for sl := range keys {
			keys[sl] = s.layout.slotMarker(uint16(sl))
		}
		return runFence(ctx, s.client, keys, cand, r)
	}
	ranges, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		return err
	}
	// Group the slots by master, one script per master.
	type node struct {
		client *redis.Client
		keys   []string
	}
	nodes := make(map[string]*node)
	for _, rg := range ranges {
		first := s.layout.slotMarker(uint16(rg.Start))
		mc, err := cc.MasterForKey(ctx, first)
		if err != nil {
			return err
		}
		addr := mc.Options().Addr
		n := nodes[addr]
		if n == nil {
			n = &node{client: mc}
			nodes[addr] = n
		}
		for sl := rg.Start; sl <= rg.End; sl++ {
			n.keys = append(n.keys, s.layout.slotMarker(uint16(sl)))
		}
	}
	errs := make(chan error, len(nodes))
	for _, n := range nodes {
		go func() { errs <- runFence(ctx, n.client, n.keys, cand, r) }()
	}
	for range nodes {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	return err
}

func runFence(ctx context.Context, c redis.Scripter, markers []string, cand, floor string) error {
	args := make([]any, 0, 1+len(markers))
	args = append(args, cand, floor)
	for _, m := range markers[1:] {
		args = append(args, m)
	}
	return fenceScript.Run(ctx, c, markers[:1], args...).Err()
}

// tagCheck is what the tag-check scripts found, over all slots checked.
type tagCheck struct {
	hard    uint64 // entries whose guard is below it must be dropped
	any     uint64 // the highest version: soft or hard
	floor   uint64 // the highest floor of the slots
	corrupt bool   // a script deleted a marker or tag key that did not parse
}

// readTags reads the versions of tag keys grouped by slot, one call per
// slot in one pipeline. A slot found uninitialised is fenced, and counts as
// a version above every ticket taken so far.
func (s *Store) readTags(ctx context.Context, bySlot map[uint16][]string, extra ...call) (tagCheck, []*redis.Cmd, error) {
	calls := make([]call, 0, len(bySlot)+len(extra))
	for sl, tks := range bySlot {
		keys := make([]string, 0, 1+len(tks))
		keys = append(keys, s.layout.slotMarker(sl))
		keys = append(keys, tks...)
		calls = append(calls, call{tagCheckScript, keys, []any{s.check}})
	}
	n := len(calls)
	calls = append(calls, extra...)
	cmds := s.runAll(ctx, calls)
	replies, err := arrays(cmds[:n])
	if err != nil {
		return tagCheck{}, nil, err
	}
	var tc tagCheck
	for _, v := range replies {
		if u, c := uninit(v); u {
			tc.corrupt = tc.corrupt || c
			if err := s.fence(ctx); err != nil {
				return tagCheck{}, nil, err
			}
			tc.hard, tc.any, tc.floor = math.MaxUint64, math.MaxUint64, math.MaxUint64
			continue
		}
		if len(v) != 4 {
			return tagCheck{}, nil, errors.New("malformed tag check reply")
		}
		tc.hard = max(tc.hard, unum(v[1]))
		tc.any = max(tc.any, unum(v[2]))
		tc.floor = max(tc.floor, unum(v[3]))
	}
	return tc, cmds[n:], nil
}

// preFill checks a fill's tags outside its key's slot against its ticket
// t0 and, for a Set, takes the Set's sequence number, in one pipeline. A
// tag invalidated after the check and before the fill lands is caught by
// the read-side check: the entry keeps t0 as its guard.
func (s *Store) preFill(ctx context.Context, t0 uint64, remote map[uint16][]string, set bool) (ok bool, seq string, err error) {
	var extra []call
	if set {
		extra = append(extra, call{seqScript, []string{s.layout.seq()}, nil})
	}
	tc, rest, err := s.readTags(ctx, remote, extra...)
	if err != nil {
		return false, "", err
	}
	if set {
		if seq, err = rest[0].Text(); err != nil {
			return false, "", err
		}
	}
	if tc.any > t0 || tc.floor > t0 {
		return false, "", nil
	}
	return true, seq, nil
}

// invalidateCluster takes the invalidation's sequence number, then writes
// it to every slot named, one script per slot, in one pipeline. Each slot's
// script also breaks the leases of the slot's keys, unless keepLeases is
// "1": the keys of one invalidation may be on several nodes, and each
// key's lease is broken with its version, by one script on its own node.
//
// The order matters. A load whose ticket was read before the sequence was
// advanced has t0 < s and is refused once the slot write lands; a fill
// that lands between the two steps is dropped by the slot write, which
// removes (or marks stale) any entry whose guard is below s. A load whose
// ticket was read after the advance began after the writer's change to
// the database, and may fill.
func (s *Store) invalidateCluster(ctx context.Context, inv store.Invalidation, soft, keepLeases string) error {
	seq, err := s.nextSeq(ctx)
	if err != nil {
		return err
	}
	type group struct {
		keys []keyNames
		tags []string
	}
	groups := make(map[uint16]*group)
	get := func(sl uint16) *group {
		g := groups[sl]
		if g == nil {
			g = new(group)
			groups[sl] = g
		}
		return g
	}
	for _, k := range inv.Keys {
		kn := s.layout.key(k)
		g := get(kn.slot)
		g.keys = append(g.keys, kn)
	}
	for _, t := range inv.Tags {
		tk, sl := s.layout.tagKey(t)
		g := get(sl)
		g.tags = append(g.tags, tk)
	}
	slots := make([]uint16, 0, len(groups))
	calls := make([]call, 0, len(groups))
	for sl, g := range groups {
		keys := make([]string, 0, 1+3*len(g.keys)+len(g.tags))
		keys = append(keys, s.layout.slotMarker(sl))
		for _, kn := range g.keys {
			keys = append(keys, kn.entry, kn.version, kn.lease)
		}
		keys = append(keys, g.tags...)
		slots = append(slots, sl)
		calls = append(calls, call{invalidateScript, keys, []any{"1", candidate(), s.check, seq, soft, len(g.keys), keepLeases}})
	}
	for try := 0; len(calls) > 0; try++ {
		replies, err := arrays(s.runAll(ctx, calls))
		if err != nil {
			return err
		}
		var again []call
		var againSlots []uint16
		for i, v := range replies {
			if u, _ := uninit(v); !u {
				continue
			}
			if try == maxTries {
				return fmt.Errorf("slot %d stays uninitialised", slots[i])
			}
			// The slot lost its data: fence it, then write the versions
			// into the new epoch (they are below its floor, which
			// fences the same loads and more).
			if err := s.fence(ctx); err != nil {
				return err
			}
			again = append(again, calls[i])
			againSlots = append(againSlots, slots[i])
		}
		calls, slots = again, againSlots
	}
	return nil
}
