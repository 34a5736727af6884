package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/paddockcache/paddock/store"
	"github.com/redis/go-redis/v9"
)

// The Cluster paths. The sequence lives in one slot, entries in their
// key's slot and tag versions in their tag's slot, so the steps that are
// one script standalone are here a few calls, ordered so that the version
// protocol still holds (see the package doc for the argument).

// call is one call of a pipeline: a script, or (script nil) a raw command
// (the MGET of a hit, read raw into its hitBuf).
type call struct {
	script *redis.Script
	keys   []string
	args   []any
	raw    []any
	buf    *hitBuf
	n      *node // the server, for the calls whose replies verify it
}

// runAll runs calls in one round trip (see pipe) and returns their
// commands, done.
func (s *Store) runAll(ctx context.Context, calls []call) []redis.Cmder {
	cmds, _ := s.pipe(ctx, nil, calls, false)
	return cmds
}

// pipe runs calls, and if seq a GET of the sequence, in one round trip:
// the command on its own when there is one, else one pipeline (on Cluster
// go-redis sends each node its part, in parallel, and follows MOVED and
// ASK redirects), and returns their commands, done: a *redis.Cmd for a
// script, a *redis.RawWriteToCmd for a raw command. Each command carries its own
// reply or error: a call that fails is that call's error, and a pipeline
// that fails (a connection lost, a deadline) is the error of every command
// it carried. A script the server does not know (NOSCRIPT: its script
// cache was flushed, or it restarted) is sent again with EVAL, which loads
// it, as [redis.Script.Run] does for one call: all such calls in one more
// pipeline. The commands are appended to dst.
func (s *Store) pipe(ctx context.Context, dst []redis.Cmder, calls []call, seq bool) ([]redis.Cmder, *redis.StringCmd) {
	cmds := slices.Grow(dst[:0], len(calls))[:len(calls)]
	switch {
	case len(calls) == 0 && !seq:
		return cmds, nil
	case len(calls) == 0:
		return cmds, s.client.Get(ctx, s.layout.seq())
	case len(calls) == 1 && !seq:
		c := calls[0]
		if c.script == nil {
			cmd := redis.NewRawWriteToCmd(ctx, c.buf, c.raw...)
			_ = s.client.Process(ctx, cmd)
			cmds[0] = cmd
		} else {
			cmds[0] = c.script.Run(ctx, s.client, c.keys, c.args...)
		}
		return cmds, nil
	}
	var seqCmd *redis.StringCmd
	p := s.client.Pipeline()
	for i, c := range calls {
		if c.script == nil {
			cmd := redis.NewRawWriteToCmd(ctx, c.buf, c.raw...)
			_ = p.Process(ctx, cmd)
			cmds[i] = cmd
		} else {
			cmds[i] = c.script.EvalSha(ctx, p, c.keys, c.args...)
		}
	}
	if seq {
		seqCmd = p.Get(ctx, s.layout.seq())
	}
	_, _ = p.Exec(ctx) // errors are read per command
	var again []int
	for i, cmd := range cmds {
		if calls[i].script != nil && redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	switch len(again) {
	case 0:
	case 1:
		c := calls[again[0]]
		cmds[again[0]] = c.script.Eval(ctx, s.client, c.keys, c.args...)
	default:
		p := s.client.Pipeline()
		for _, i := range again {
			c := calls[i]
			cmds[i] = c.script.Eval(ctx, p, c.keys, c.args...)
		}
		_, _ = p.Exec(ctx)
	}
	return cmds, seqCmd
}

// slice returns the array reply of a script's command.
func slice(c redis.Cmder) ([]any, error) { return c.(*redis.Cmd).Slice() }

// arrays returns the array replies of cmds, scripts' commands.
func arrays(cmds []redis.Cmder) ([][]any, error) {
	out := make([][]any, len(cmds))
	for i, cmd := range cmds {
		v, err := slice(cmd)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// seqOf reads the current sequence, the ticket of a load, from cmd, a
// GET of it. If its node lost it, it starts it again (above every value
// it had), so that tickets stay above the versions the other nodes kept.
func (s *Store) seqOf(ctx context.Context, cmd *redis.StringCmd) (uint64, error) {
	v, err := cmd.Result()
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

// appendTagCalls appends the tag checks of tag keys grouped by slot: one
// call per slot, each with the replication ID of its slot's server as
// verified in generation gen. trusted reports whether any was.
func (s *Store) appendTagCalls(ctx context.Context, calls []call, bySlot map[uint16][]string, gen uint64) (_ []call, trusted bool) {
	for sl, tks := range bySlot {
		keys := make([]string, 0, 1+len(tks))
		keys = append(keys, s.layout.slotMarker(sl))
		keys = append(keys, tks...)
		n := s.nodeFor(ctx, keys[0])
		rid, ok := s.rid(n, gen)
		trusted = trusted || ok
		calls = append(calls, call{script: tagCheckScript, keys: keys, args: []any{rid}, n: n})
	}
	return calls, trusted
}

// tagResult reads the replies of one check's tag-check calls, made in
// generation gen, and keeps the replication IDs they report. A slot
// found uninitialised counts as a version above every ticket taken so
// far, and sets unfenced: the caller must fence it (even if err is set,
// for a later reply).
func (s *Store) tagResult(calls []call, cmds []redis.Cmder, gen uint64) (tc tagCheck, unfenced bool, err error) {
	replies, err := arrays(cmds)
	if err != nil {
		s.failed(err)
		return tagCheck{}, false, err
	}
	for i, v := range replies {
		if u, c := uninit(v); u {
			tc.corrupt = tc.corrupt || c
			unfenced = true
			tc.hard, tc.any, tc.floor = math.MaxUint64, math.MaxUint64, math.MaxUint64
			continue
		}
		if len(v) != 5 {
			return tagCheck{}, unfenced, errors.New("malformed tag check reply")
		}
		tc.hard = max(tc.hard, unum(v[1]))
		tc.any = max(tc.any, unum(v[2]))
		tc.floor = max(tc.floor, unum(v[3]))
		if v[4] != nil {
			s.verified(calls[i].n, gen, str(v[4]))
		}
	}
	return tc, unfenced, nil
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
	gen := s.gen()
	for sl, g := range groups {
		keys := make([]string, 0, 1+4*len(g.keys)+len(g.tags))
		keys = append(keys, s.layout.slotMarker(sl))
		for _, kn := range g.keys {
			keys = append(keys, kn.entry, kn.version, kn.lease, kn.fresh)
		}
		keys = append(keys, g.tags...)
		slots = append(slots, sl)
		n := s.nodeFor(ctx, keys[0])
		rid, _ := s.rid(n, gen)
		calls = append(calls, call{script: invalidateScript, keys: keys, args: []any{"1", candidate(), rid, seq, soft, len(g.keys), keepLeases}, n: n})
	}
	for try := 0; len(calls) > 0; try++ {
		replies, err := arrays(s.runAll(ctx, calls))
		if err != nil {
			s.failed(err)
			return err
		}
		var again []call
		var againSlots []uint16
		for i, v := range replies {
			if u, _ := uninit(v); !u {
				if len(v) == 3 && v[2] != nil {
					s.verified(calls[i].n, gen, str(v[2]))
				}
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
