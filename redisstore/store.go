package redisstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/store"
)

// A Store is a [store.Store] on Redis, shared by every process that uses
// the same Redis and prefix. It is safe for concurrent use. Create one with
// [New].
type Store struct {
	client  redis.UniversalClient
	cfg     config
	layout  layout
	cluster bool
	hits    bool // warm hits are MGETs (see hit.go)
	closed  atomic.Bool
	hub     *hub // the subscription of Watch and Listen (feed.go)

	// The servers (see node.go): the one standalone, the Cluster masters
	// by their node clients.
	conns   *conns
	single  node
	nodes   sync.Map // *redis.Client -> *node
	hooked  sync.Map // *redis.Client -> true: counted by conns
	watched atomic.Bool
	wmu     sync.Mutex
	bgMu    sync.Mutex     // orders starting a background check and Close
	bg      sync.WaitGroup // background checks

	plans plans // the MGETs of warm hits, by key

	// The epoch marker's name (standalone), as an MGET argument.
	markerArg any

	fmu  sync.Mutex
	fcur *fenceCall // the fence in progress (Cluster)
}

var (
	_ store.Store  = (*Store)(nil)
	_ store.Remote = (*Store)(nil)
)

// New returns a Store on client: a *redis.Client (standalone, or a
// Sentinel failover client from redis.NewFailoverClient) or a
// *redis.ClusterClient, as redis.NewUniversalClient makes them. A
// *redis.Ring is refused: its shards share no atomic step.
//
// The client must have ContextTimeoutEnabled set (see
// [AllowNoContextTimeout]). New does no I/O: a Store made while Redis is
// down works once Redis is back. The Store does not own the client:
// [Store.Close] leaves it open. New adds a hook to the client (on Cluster,
// to every node's client) that counts the connections it dials (see
// "Failover" in the package doc). The hook only counts; it stays on the
// client after Close, since go-redis cannot remove a hook, at the cost of
// an atomic add per connection dialled.
func New(client redis.UniversalClient, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, invalid("nil client")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, invalid("nil option")
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	s := &Store{client: client, cfg: cfg, layout: layout{prefix: cfg.prefix}, conns: new(conns), hits: true}
	s.plans.seed = maphash.MakeSeed()
	s.markerArg = s.layout.globalMarker()
	s.hub = newHub(client, cfg.prefix, cfg.feedTimeout)
	ctxTimeout := true
	switch c := client.(type) {
	case *redis.ClusterClient:
		s.cluster = true
		o := c.Options()
		ctxTimeout = o.ContextTimeoutEnabled
		// A client that reads from replicas would send the MGETs of hits
		// there, and a replica may lag: every lookup is then a script,
		// which runs on the master.
		s.hits = !(o.ReadOnly || o.RouteByLatency || o.RouteRandomly)
	case *redis.Client:
		ctxTimeout = c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return nil, invalid("a *redis.Ring has no atomic step across its shards; use a *redis.ClusterClient")
	}
	if !ctxTimeout && !cfg.allowNoCtx {
		return nil, invalid("the client's ContextTimeoutEnabled is false, so store timeouts would not bound its calls; " +
			"set it in the client's options, or pass AllowNoContextTimeout()")
	}
	if cfg.forceCluster {
		s.cluster = true
	}
	if s.cluster {
		slotTags() // build the marker table now rather than on a first call
	}
	s.watch()
	return s, nil
}

// Remote reports true: the Store is reached over the network, so the Cache
// coalesces the lookups of one key in a process (a stampede asks Redis
// once per process).
func (s *Store) Remote() bool { return true }

// Close makes later calls fail with [store.ErrClosed], ends the Store's
// subscription (see [Store.Watch], [Store.Listen]), waiting for its
// goroutine, and waits for the Store's background check of its servers,
// if one is under way. It does not close the client.
func (s *Store) Close() error {
	s.bgMu.Lock()
	s.closed.Store(true)
	s.bgMu.Unlock()
	s.hub.close()
	s.bg.Wait()
	return nil
}

// background runs f on a goroutine of its own, unless the Store is
// closed; Close waits for it.
func (s *Store) background(f func()) {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.closed.Load() {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f()
	}()
}

// Lookup implements [store.Store.Lookup]. A warm hit is one MGET, checked
// by the Store (see the package doc); anything else then runs the lookup
// script: standalone one call, on Cluster one, plus one to read the
// sequence when the caller must load (a miss, a granted lease, or
// req.Lease zero), plus one per other node holding the entry's tags, in
// parallel, when the entry has tags outside its slot. Data under the
// key's names that does not parse makes the lookup a miss with Corrupt
// set, never an error (see "Corrupt data" in the package doc); on
// Cluster, repairing a tag's versions costs one call to the tag's node and
// a second lookup.
func (s *Store) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	if s.closed.Load() {
		return store.Lookup{}, lookupError(key, store.ErrClosed)
	}
	var op lookupOp
	if s.hits && !req.Refresh {
		out, lk, r, p, err := s.hit(ctx, key, req)
		if err != nil {
			return store.Lookup{}, lookupError(key, err)
		}
		if out == hitServed {
			return lk, nil
		}
		op = s.newLookupNames(key, p.kn, req)
		switch out {
		case hitTags:
			op.r, op.remote, op.next = r, p.remote, stepTags
		case hitSeq:
			op.r, op.next = r, stepSeq
		default:
			op.next = stepScript
		}
	} else {
		op = s.newLookup(key, req)
	}
	ops := []*lookupOp{&op}
	s.lookups(ctx, ops)
	if op.err != nil {
		s.releaseFailed(ctx, ops)
		return store.Lookup{}, lookupError(key, op.err)
	}
	return op.lk, nil
}

func lookupError(key string, err error) error {
	return fmt.Errorf("redisstore: lookup %q: %w", key, err)
}

// Fill implements [store.Store.Fill]: one script call. On Cluster, the
// versions of tags in other slots are read first (one call per node, in
// parallel), and a Set first takes its sequence number.
func (s *Store) Fill(ctx context.Context, key string, f *store.Fill) (bool, error) {
	if s.closed.Load() {
		return false, fillError(key, store.ErrClosed)
	}
	op := s.newFill(key, f)
	s.fills(ctx, []*fillOp{&op})
	s.dropTooLarge(ctx, []*fillOp{&op})
	if op.err != nil {
		return false, fillError(key, op.err)
	}
	return op.ok, nil
}

func fillError(key string, err error) error {
	return fmt.Errorf("redisstore: fill %q: %w", key, err)
}

// splitTags returns the Redis keys of the tags in slot (all of them,
// standalone), without duplicates, and the tags in other slots by slot.
func (s *Store) splitTags(slot uint16, tags []string) (local []string, remote map[uint16][]string) {
	if len(tags) == 0 {
		return nil, nil
	}
	seen := make(map[string]bool, len(tags))
	for _, t := range tags {
		if seen[t] {
			continue
		}
		seen[t] = true
		k, sl := s.layout.tagKey(t)
		if !s.cluster || sl == slot {
			local = append(local, k)
			continue
		}
		if remote == nil {
			remote = make(map[uint16][]string)
		}
		remote[sl] = append(remote[sl], k)
	}
	return local, remote
}

// Release implements [store.Store.Release]: one script call.
func (s *Store) Release(ctx context.Context, key string, lease uint64) error {
	if s.closed.Load() {
		return fmt.Errorf("redisstore: release %q: %w", key, store.ErrClosed)
	}
	if lease == 0 {
		return nil
	}
	if err := s.release(ctx, s.layout.key(key), token(lease)); err != nil {
		return fmt.Errorf("redisstore: release %q: %w", key, err)
	}
	return nil
}

func (s *Store) release(ctx context.Context, kn keyNames, tok string) error {
	if tok == "0" {
		return nil
	}
	c := releaseCall(kn, tok)
	return c.script.Run(ctx, s.client, c.keys, c.args...).Err()
}

// releaseCall is the script call that gives up lease token tok on kn.
func releaseCall(kn keyNames, tok string) call {
	return call{script: releaseScript, keys: []string{kn.lease, kn.fresh}, args: []any{tok, releaseTombstone.Milliseconds()}}
}

// releaseTombstone is how long a released lease's token stays refused (see
// releaseScript): longer than a request can wait in a client or a network.
const releaseTombstone = time.Minute

// Invalidate implements [store.Store.Invalidate]. Standalone it is one
// script call for all keys and tags. On Cluster it takes the sequence
// number (one call), then applies it to every slot named (one call per
// node, in parallel). Each key's lease lives in the key's slot and is
// broken by the same script that writes the key's version (see
// invalidateScript), so breaking leases costs no call.
func (s *Store) Invalidate(ctx context.Context, inv store.Invalidation) error {
	if s.closed.Load() {
		return fmt.Errorf("redisstore: invalidate: %w", store.ErrClosed)
	}
	if len(inv.Keys) == 0 && len(inv.Tags) == 0 {
		return nil
	}
	soft := "0"
	if inv.Soft {
		soft = "1"
	}
	// The test switch, read once (see internal/hooks).
	keepLeases := "0"
	if hooks.LeaseOutlivesInvalidation.Load() {
		keepLeases = "1"
	}
	var err error
	if s.cluster {
		err = s.invalidateCluster(ctx, inv, soft, keepLeases)
	} else {
		keys := make([]string, 0, 2+4*len(inv.Keys)+len(inv.Tags))
		keys = append(keys, s.layout.globalMarker(), s.layout.seq())
		for _, k := range inv.Keys {
			kn := s.layout.key(k)
			keys = append(keys, kn.entry, kn.version, kn.lease, kn.fresh)
		}
		for _, t := range inv.Tags {
			tk, _ := s.layout.tagKey(t)
			keys = append(keys, tk)
		}
		gen := s.gen()
		rid, _ := s.rid(&s.single, gen)
		var v []any
		v, err = invalidateScript.Run(ctx, s.client, keys, "0", candidate(), rid, "0", soft, len(inv.Keys), keepLeases).Slice()
		s.failed(err)
		if u, _ := uninit(v); err == nil && u { // standalone never replies uninit
			err = errors.New("malformed invalidate reply")
		}
		if err == nil && len(v) == 3 && v[2] != nil {
			s.verified(&s.single, gen, str(v[2]))
		}
	}
	if err != nil {
		return fmt.Errorf("redisstore: invalidate: %w", err)
	}
	return nil
}

// marker returns the epoch marker that governs slot.
func (s *Store) marker(slot uint16) string {
	if s.cluster {
		return s.layout.slotMarker(slot)
	}
	return s.layout.globalMarker()
}

func (s *Store) clusterArg() string {
	if s.cluster {
		return "1"
	}
	return "0"
}

// offset is the test offset of the store clock, in µs.
func (s *Store) offset() int64 {
	if s.cfg.offset == nil {
		return 0
	}
	return s.cfg.offset().Microseconds()
}

// candidate returns a fresh random epoch, below 2^53 so that it is exact
// wherever it goes, and never zero. It is used only if the marker is gone.
func candidate() string { return strconv.FormatUint(rand.Uint64()>>11|1, 10) }

func token(lease uint64) string {
	if lease == 0 {
		return "0"
	}
	return strconv.FormatUint(lease, 10)
}

// uninit reports whether v is a script's "uninit" reply, and whether that
// script deleted a key that did not parse (Cluster: it deleted the slot's
// marker with it, so that the slot is fenced).
func uninit(v []any) (u, corrupt bool) {
	if len(v) == 0 || len(v) > 2 || str(v[0]) != "uninit" {
		return false, false
	}
	return true, len(v) == 2
}

// parseSeq parses a sequence number as the scripts write it: decimal, below
// 2^53.
func parseSeq(v string) (uint64, bool) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n >= 1<<53 {
		return 0, false
	}
	return n, true
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}

func num(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

func unum(v any) uint64 {
	switch x := v.(type) {
	case int64:
		return uint64(max(x, 0))
	case string:
		n, _ := strconv.ParseUint(x, 10, 64)
		return n
	}
	return 0
}
