package proptest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/paddockcache/paddock"
)

// loadFunc is the load of Get gid on node n.
func (m *machine) loadFunc(n *node, key string, gid int) paddock.LoadFunc[string] {
	return func(ctx context.Context) (string, error) {
		vals, err := m.runLoad(ctx, n, []string{key}, gid)
		return vals[key], err
	}
}

// batchFunc is the batch load of GetMany gid on node n.
func (m *machine) batchFunc(n *node, gid int) paddock.BatchLoadFunc[string] {
	return func(ctx context.Context, keys []string) (map[string]string, error) {
		return m.runLoad(ctx, n, keys, gid)
	}
}

// runLoad is a load of keys (one query for all of them): it registers with
// the model and does what the machine tells it, one step at a time. It
// honors its context, as a database query would. Tags it names apply to
// every key of a batch, so it names the late tags of them all.
func (m *machine) runLoad(ctx context.Context, n *node, keys []string, gid int) (map[string]string, error) {
	ss := m.beginLoad(n, keys, gid)
	if ss == nil { // a crashed node, or the check is over
		<-m.dead
		return nil, errCrashed
	}
	var late []string
	for _, k := range keys {
		late = append(late, lateTags[k]...)
	}
	for {
		var c cmd
		select {
		case c = <-ss[0].cmds:
		case <-ctx.Done():
			m.endLoad(ss, failed, "load timeout")
			return nil, ctx.Err()
		case <-m.dead:
			return nil, errCrashed
		}
		switch c {
		case cmdRead:
			m.mu.Lock()
			for _, s := range ss {
				s.read, s.ver, s.state = m.step, m.db[s.key], hasRead
				s.known = append(s.known, late...)
				m.logf("  load %d read %s v%d", s.id, s.key, s.ver)
			}
			m.mu.Unlock()
			if len(late) > 0 {
				paddock.Tag(ctx, late...)
			}
		case cmdFinish:
			m.endLoad(ss, finished, "")
			vals := make(map[string]string, len(ss))
			m.mu.Lock()
			for _, s := range ss {
				vals[s.key] = s.value()
			}
			if m.kept = append(m.kept, ctx); len(m.kept) > maxKept {
				m.kept = m.kept[1:]
			}
			m.mu.Unlock()
			return vals, nil
		case cmdFail:
			m.endLoad(ss, failed, "")
			return nil, errLoad
		}
	}
}

// beginLoad registers a load of keys, one source per key. The sources of a
// batch share their command channel and move together.
func (m *machine) beginLoad(n *node, keys []string, gid int) []*source {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing || n.crashed {
		return nil
	}
	now := time.Now()
	// A load whose Get has returned a value is a background refresh (the
	// Get took the stale value). One whose Get gave up (a nested Get whose
	// outer load timed out) is not: its flight goes on for the Get.
	refresh := true
	for _, g := range m.gets {
		if g.id == gid && (!g.done || g.err != nil) {
			refresh = false
		}
	}
	cmds := make(chan cmd)
	ss := make([]*source, len(keys))
	for i, key := range keys {
		m.nextID++
		s := &source{id: m.nextID, node: n, key: key, owner: gid, refresh: refresh, begin: m.step, beginAt: now, cmds: cmds,
			known: slices.Clone(m.getTags[gid])}
		lk, ok := n.lookups[lookupKey{gid, key}]
		fresh := ok && lk.step == m.step && lk.at.Equal(now)
		s.leased = fresh && lk.ok && lk.lease
		s.degraded = !(fresh && lk.ok)
		s.leaseAt, s.asked = lk.storeNow, s.begin
		if fresh {
			s.asked = lk.asked
		}
		m.srcs[s.id] = s
		ss[i] = s
	}
	for _, s := range ss {
		s.batch = ss
		how := "with the lease"
		switch {
		case s.degraded:
			how = "without the store"
		case !s.leased:
			how = "WITHOUT a lease"
		}
		if refresh {
			how += ", a background refresh"
		}
		m.logf("  load %d of %s begins on node %d for get %d, %s", s.id, s.key, n.id, gid, how)
		m.count("load begins " + how)
		m.checkOneLoad(s)
	}
	if len(ss) > 1 {
		m.count("batch load begins")
	}
	return ss
}

func (m *machine) endLoad(ss []*source, st srcState, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range ss {
		if s.state == crashed || m.closing {
			continue
		}
		s.state, s.end, s.endAt = st, m.step, time.Now()
		if why != "" {
			m.logf("  load %d %v: %s", s.id, st, why)
		}
	}
}

func (m *machine) getDone(g *getRec, r paddock.Result[string], err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g.done, g.end, g.val, g.err, g.status = true, m.step, r.Value, err, r.Status
	if m.closing || g.node.crashed {
		return
	}
	if err != nil {
		m.logf("  get %d of %s on node %d: error %s", g.id, g.key, g.node.id, strings.ReplaceAll(err.Error(), "\n", "; "))
		m.count("get error: " + errKind(err))
		return
	}
	m.logf("  get %d of %s on node %d: %s (%v)", g.id, g.key, g.node.id, r.Value, r.Status)
	if r.Status == paddock.StatusStale || r.Status == paddock.StatusHit {
		// Served from the store: a load it owns is a background refresh
		// (which may have begun before the Get returned).
		for _, s := range m.srcs {
			if s.owner == g.id && !s.set && !s.refresh {
				s.refresh = true
				m.logf("  load %d is a background refresh", s.id)
			}
		}
	}
	if g.many {
		m.count("get-many value")
	} else {
		m.count(fmt.Sprintf("get %v", r.Status))
	}
	m.checkGet(g)
}

// errKind names the kind of a Get's error, for the tally.
func errKind(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "load timeout"
	case errors.Is(err, errLoad):
		return "load failed"
	case errors.Is(err, paddock.ErrNotFound):
		return "not found"
	case errors.Is(err, errNothing):
		return "peek found nothing"
	}
	return err.Error()
}
