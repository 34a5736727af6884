package redisstore

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// What the Store knows of each server it talks to (one standalone, one
// per Cluster master): its replication ID, and its clock.
//
// # The failover check
//
// An epoch marker names the replication ID of the server that wrote it. A
// server with another ID (a replica promoted by a failover, which may lack
// the last writes of the old master) must not trust it: a new epoch starts
// (see epoch in luaPrelude). The scripts used to read the ID (INFO) on
// every call; now the Store verifies it once and passes it to them, and
// the hit path, which runs no script, compares it with the marker it reads.
// A verification is good for one generation of connections:
//
//   - The Store counts every new connection its client makes (a dial hook
//     on the client, and on every Cluster node's client): a verification
//     made before the count moved is no longer good. A connection to
//     another server (Sentinel's switch to a new master, a restart, a
//     Cluster client following a slot) is always a new connection, made
//     before any command on it: the count has moved by the time its reply
//     arrives.
//   - Until a call finds a good verification, it passes '?': the script
//     reads the ID itself, refuses a server that is not a master, and
//     reports the ID, which verifies the server for the generation in
//     which the call was sent. No call waits for a separate check.
//   - A read whose reply comes after the count moved is not trusted: a hit
//     goes the script's way, a lookup script that was given a verified ID
//     runs again with '?'. (A write sent with a stale ID lands on a server
//     whose next verification finds its markers foreign: its epoch is
//     then replaced, and nothing it wrote is trusted.)
//   - While the Store is in use it checks each server again every
//     FailoverCheckInterval, in the background (checkScript: TIME, role
//     and ID): a server whose ID or role changed on live connections (a
//     master demoted to a replica, which keeps its clients) moves the count
//     like a new connection. A call that fails with READONLY does too.
//
// The window this leaves is in the package doc.
//
// # The clock
//
// Freshness is judged by the server's clock. The scripts read it (TIME);
// a hit from an MGET reads no clock on the server: its fresh marker
// expires by the server's clock, and its Now is the Store's reading of
// the server's clock, kept from the last script or check reply of that
// server: the server's time in the reply, plus the local monotonic time
// elapsed since that request was sent. That is never behind the server's
// clock (the server read its time after the request was sent), and ahead
// of it by at most the round trip of that request plus the drift of the
// two clocks since (reset at least every FailoverCheckInterval while the
// Store is in use). The hit path also checks the marker's instant against
// this reading (an entry of a test clock moved by TimeOffset is not
// served past its freshness), which errs, if at all, toward the script.

// DefaultFailoverCheckInterval is the default of [FailoverCheckInterval].
const DefaultFailoverCheckInterval = time.Second

// A node is one server.
type node struct {
	client *redis.Client // to reach this server alone (Cluster); nil: the Store's client
	v      atomic.Pointer[verification]
	// skew is the server's clock (without the test offset) minus the
	// local monotonic clock (see mono), in µs, as of the last reply that
	// carried it; valid once clocked.
	skew     atomic.Int64
	clocked  atomic.Bool
	clockAt  atomic.Int64 // local monotonic µs of the last clock reading
	checking atomic.Bool  // a background check is under way
}

// verification is what a check learned of a server.
type verification struct {
	gen uint64 // the connection generation in which it was made
	rid string // the server's replication ID
	at  int64  // local monotonic µs
}

// conns counts the connections a client dialed: the generation.
type conns struct{ gen atomic.Uint64 }

// DialHook counts every connection made.
func (c *conns) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err == nil {
			c.gen.Add(1)
		}
		return conn, err
	}
}

// ProcessHook leaves commands alone.
func (*conns) ProcessHook(redis.ProcessHook) redis.ProcessHook { return nil }

// ProcessPipelineHook leaves pipelines alone.
func (*conns) ProcessPipelineHook(redis.ProcessPipelineHook) redis.ProcessPipelineHook { return nil }

// monoBase is the origin of the local monotonic clock: a package variable,
// set outside any test's synctest bubble.
var monoBase = time.Now()

// mono reads the local monotonic clock, in µs.
func mono() int64 { return time.Since(monoBase).Microseconds() }

// watch makes the Store count the connections of its client, and on
// Cluster those of every node's client, including those the client makes
// later. A node client that existed before is found at the first call
// (watched then reports true): until then no server is verified.
func (s *Store) watch() {
	cc, ok := s.client.(*redis.ClusterClient)
	if !ok {
		s.client.AddHook(s.conns)
		s.watched.Store(true)
		return
	}
	cc.OnNewNode(s.watchNode)
}

func (s *Store) watchNode(c *redis.Client) {
	if _, seen := s.hooked.LoadOrStore(c, true); !seen {
		c.AddHook(s.conns)
	}
}

// watchAll finds the node clients the Cluster client made before the
// Store (see watch). It needs the cluster's state: I/O, which one call
// makes while the others go on unverified (their scripts verify the
// servers themselves) rather than wait for it.
func (s *Store) watchAll(ctx context.Context) {
	if s.watched.Load() || !s.cfg.checkFailover {
		return
	}
	cc := s.client.(*redis.ClusterClient)
	if !s.wmu.TryLock() {
		return
	}
	defer s.wmu.Unlock()
	if s.watched.Load() {
		return
	}
	err := cc.ForEachShard(ctx, func(_ context.Context, c *redis.Client) error {
		s.watchNode(c)
		return nil
	})
	if err == nil {
		// The generation moves: verifications made before the hooks
		// were on do not count.
		s.conns.gen.Add(1)
		s.watched.Store(true)
	}
}

// nodeFor returns the server that holds Redis key k: the Store's one
// server standalone, and on Cluster the master of k's slot, as the client
// sees the cluster now. It is nil when the client cannot tell (its cluster
// state is not loaded and cannot be).
func (s *Store) nodeFor(ctx context.Context, k string) *node {
	cc, ok := s.client.(*redis.ClusterClient)
	if !ok {
		return &s.single
	}
	if !s.watched.Load() {
		s.watchAll(ctx)
	}
	c, err := cc.MasterForKey(ctx, k)
	if err != nil {
		return nil
	}
	if n, ok := s.nodes.Load(c); ok {
		return n.(*node)
	}
	n, _ := s.nodes.LoadOrStore(c, &node{client: c})
	return n.(*node)
}

// rid returns the replication ID to pass to a script on n (see the
// failover check), and whether it came from a verification (the reply of
// a read must then be checked against the generation, see fresh). It is
// "" when the check is off, and "?" when n is not verified now.
func (s *Store) rid(n *node, gen uint64) (string, bool) {
	if !s.cfg.checkFailover {
		s.maybeRecheck(n)
		return "", false
	}
	if n == nil || !s.watched.Load() {
		return "?", false
	}
	v := n.v.Load()
	if v == nil || v.gen != gen {
		return "?", false
	}
	s.maybeRecheck(n)
	return v.rid, true
}

// gen returns the connection generation.
func (s *Store) gen() uint64 { return s.conns.gen.Load() }

// fresh reports whether nothing was dialed since gen was read: the reply
// of a call sent after that read came over a connection of a verified
// generation.
func (s *Store) fresh(gen uint64) bool { return s.conns.gen.Load() == gen }

// verified records rid, reported by a script that read it on n for a call
// sent in generation gen.
func (s *Store) verified(n *node, gen uint64, rid string) {
	if n != nil {
		n.v.Store(&verification{gen: gen, rid: rid, at: mono()})
	}
}

// failed notes a call's error: READONLY means the server is no longer the
// master it was, so every verification is dropped.
func (s *Store) failed(err error) {
	if err != nil && redis.HasErrorPrefix(err, "READONLY") {
		s.conns.gen.Add(1)
	}
}

// clock notes the server's time serverUS (µs, with the test offset off,
// as sent) in the reply of a request sent at local monotonic sentUS.
func (n *node) clock(serverUS, sentUS int64) {
	if n == nil {
		return
	}
	n.skew.Store(serverUS - sentUS)
	n.clockAt.Store(sentUS)
	n.clocked.Store(true)
}

// now returns the Store's reading of n's clock, in µs without the test
// offset, and whether there is one.
func (n *node) now() (int64, bool) {
	if n == nil || !n.clocked.Load() {
		return 0, false
	}
	return mono() + n.skew.Load(), true
}

// maybeRecheck starts a background check of n if its verification (or,
// with the failover check off, its clock) is older than the check
// interval.
func (s *Store) maybeRecheck(n *node) {
	if n == nil {
		return
	}
	var last int64
	if !s.cfg.checkFailover {
		if !n.clocked.Load() {
			return // the first script reads it
		}
		last = n.clockAt.Load()
	} else if v := n.v.Load(); v != nil {
		last = v.at
	} else {
		return
	}
	if mono()-last < s.cfg.checkEvery.Microseconds() || !n.checking.CompareAndSwap(false, true) {
		return
	}
	s.background(func() {
		defer n.checking.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
		defer cancel()
		_ = s.check(ctx, n)
	})
}

const checkTimeout = 5 * time.Second

// errNotMaster is the error of a check that found a replica.
var errNotMaster = errors.New("READONLY redisstore: the server is not a master")

// check runs checkScript on n: it sets n's clock and, with the failover
// check on, verifies n for the generation in which it was sent. A server
// whose ID changed since the last verification, or that is no longer a
// master, moves the generation: every reply that comes after is checked
// again.
func (s *Store) check(ctx context.Context, n *node) error {
	var c redis.Scripter = s.client
	if n.client != nil {
		c = n.client
	}
	info := "0"
	if s.cfg.checkFailover {
		info = "1"
	}
	gen, sent := s.gen(), mono()
	v, err := checkScript.Run(ctx, c, nil, info).Slice()
	if err != nil {
		return err
	}
	if len(v) < 1 {
		return errors.New("malformed check reply")
	}
	t, ok := parseSnum(str(v[0]))
	if !ok {
		return errors.New("malformed check reply")
	}
	n.clock(t, sent)
	if !s.cfg.checkFailover {
		return nil
	}
	if len(v) != 3 {
		return errors.New("malformed check reply")
	}
	role, rid := str(v[1]), str(v[2])
	if role != "master" {
		n.v.Store(nil)
		s.conns.gen.Add(1)
		return errNotMaster
	}
	if old := n.v.Load(); old != nil && old.rid != rid {
		// The server's history changed under live connections: nothing
		// read from it under the old ID is trusted once it is back. The
		// new ID is good from the next generation on, unless something
		// was dialed meanwhile (then the next call verifies again).
		if !s.conns.gen.CompareAndSwap(gen, gen+1) {
			s.conns.gen.Add(1)
			return nil
		}
		gen++
	}
	s.verified(n, gen, rid)
	return nil
}
