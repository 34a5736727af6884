package proptest

import (
	"context"
	"fmt"
	"time"

	"github.com/paddockcache/paddock/store"
)

// nodeStore is a node's view of the shared store: it reports calls to the
// model, fails them while the store is down, and blocks them forever once
// the node crashed (a dead process makes no calls).
type nodeStore struct {
	m *machine
	n *node
}

var _ store.Remote = (*nodeStore)(nil)

// notifyingNodeStore is a nodeStore over a store that tells of every
// invalidation (memstore): the node's Cache then keeps hot tiers. The
// calls reach every node, crashed or cut off, as they would every Cache
// of one process.
type notifyingNodeStore struct{ nodeStore }

func (s *notifyingNodeStore) Subscribe(f func(keys, tags []string)) func() {
	return s.m.env.store.(store.Notifier).Subscribe(f)
}

func (s *nodeStore) Remote() bool { return s.m.cfg.remote }

func (s *nodeStore) gate() error {
	s.m.mu.Lock()
	// A store that can be made unavailable for real (env.setDown) is
	// reached as it is; for the others the nodes' calls fail here.
	crashed, down := s.n.crashed, s.m.down && s.m.env.setDown == nil
	s.m.mu.Unlock()
	if crashed {
		<-s.m.dead
		return errCrashed
	}
	if down {
		return errDown
	}
	return nil
}

func (s *nodeStore) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	var lk store.Lookup
	err := s.gate()
	if err == nil {
		lk, err = s.m.env.store.Lookup(ctx, key, req)
	}
	if gid, ok := ctx.Value(getIDKey{}).(int); ok {
		s.m.mu.Lock()
		asked := s.m.step
		s.m.mu.Unlock()
		if err == nil {
			err = s.m.holdReply(ctx, s.n, key, gid, lk)
		}
		s.m.mu.Lock()
		s.n.lookups[lookupKey{gid, shortKey(key)}] = lookupObs{step: s.m.step, asked: asked, at: time.Now(), storeNow: lk.Now, ok: err == nil, lease: lk.Lease}
		s.m.mu.Unlock()
	}
	return lk, err
}

// holdReply holds back the reply of the first lookup made for Get gid (by
// its own call, its flight or its retry), if the Get asked for a slow
// reply, for as many actions as it asked, or until the call times out. A
// reply that times out is lost: the store did the lookup (and may have
// granted the lease, which then stays held until it expires), the node
// gets an error.
func (m *machine) holdReply(ctx context.Context, n *node, key string, gid int, lk store.Lookup) error {
	m.mu.Lock()
	after, ok := m.holdFor[gid]
	if !ok || m.closing {
		m.mu.Unlock()
		return nil
	}
	delete(m.holdFor, gid)
	rel := make(chan struct{})
	m.replies = append(m.replies, heldReply{gid: gid, due: m.step + after, deliver: rel})
	heldAt := time.Now()
	k := shortKey(key)
	m.held[k]++
	m.logf("  lookup of %s for get %d on node %d answered (%v, lease %v); the reply is held", k, gid, n.id, lk.State, lk.Lease)
	m.count("lookup reply held")
	m.mu.Unlock()
	var err error
	select {
	case <-rel:
	case <-ctx.Done():
		err = ctx.Err()
	case <-m.dead:
		err = errCrashed
	}
	m.mu.Lock()
	m.held[k]--
	m.heldUntil[k] = later(m.heldUntil[k], time.Now())
	if lk.Lease && (err != nil || n.crashed) {
		// Nobody owns the lease now, or a dead node does: it binds
		// until it expires.
		m.heldUntil[k] = later(m.heldUntil[k], heldAt.Add(leaseTTL))
	}
	if err == nil {
		m.logf("  held lookup reply of %s for get %d on node %d delivered", k, gid, n.id)
	} else {
		m.logf("  held lookup reply of %s for get %d on node %d lost: %v", k, gid, n.id, err)
		m.count("held lookup reply lost")
		m.trouble = time.Now()
	}
	m.mu.Unlock()
	return err
}

func (s *nodeStore) Fill(ctx context.Context, key string, f *store.Fill) (bool, error) {
	if err := s.gate(); err != nil {
		return false, err
	}
	if f.Set {
		s.m.mu.Lock()
		s.n.setFills++
		before := s.n.beforeSetFill
		s.m.mu.Unlock()
		if before != nil {
			before()
		}
	}
	ok, err := s.m.env.store.Fill(ctx, key, f)
	s.m.filled(s.n, key, f, ok, err)
	return ok, err
}

func (s *nodeStore) Release(ctx context.Context, key string, lease uint64) error {
	if err := s.gate(); err != nil {
		return err
	}
	// A barrier: wait for the machine's action in progress.
	s.m.mu.Lock()
	//lint:ignore SA2001 the critical section is empty on purpose
	s.m.mu.Unlock()
	return s.m.env.store.Release(ctx, key, lease)
}

func (s *nodeStore) Invalidate(ctx context.Context, inv store.Invalidation) error {
	if err := s.gate(); err != nil {
		return err
	}
	// A barrier: wait for the machine's action in progress.
	s.m.mu.Lock()
	//lint:ignore SA2001 the critical section is empty on purpose
	s.m.mu.Unlock()
	return s.m.env.store.Invalidate(ctx, inv)
}

func (s *nodeStore) Close() error { return nil }

// filled records a fill. A fill that failed with an error may still have
// been written (the reply was lost), so it counts as a possible write.
func (m *machine) filled(n *node, key string, f *store.Fill, ok bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, parsed := parseValue(f.Value)
	s := m.srcs[id]
	if !parsed || s == nil {
		m.violate("I0 model: a fill of a value of no known source", "node %d filled %s with %q", n.id, key, f.Value)
		return
	}
	switch {
	case ok || err != nil:
		s.filled, s.fillAt, s.fillStep = true, time.Now(), m.step
		m.logf("  fill of %s by %d on node %d: accepted %v, err %v", key, id, n.id, ok, err)
		m.count(fmt.Sprintf("fill accepted %v err %v", ok, err != nil))
	default:
		m.logf("  fill of %s by %d on node %d refused", key, id, n.id)
		m.count("fill refused")
	}
}
