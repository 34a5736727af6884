package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math"
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
	check   string // "1": check the replication ID on every call
	closed  atomic.Bool

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
// [Store.Close] leaves it open.
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
	s := &Store{client: client, cfg: cfg, layout: layout{prefix: cfg.prefix}, check: "1"}
	ctxTimeout := true
	switch c := client.(type) {
	case *redis.ClusterClient:
		s.cluster = true
		ctxTimeout = c.Options().ContextTimeoutEnabled
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
	if !cfg.checkFailover {
		s.check = "0"
	}
	if s.cluster {
		slotTags() // build the marker table now rather than on a first call
	}
	return s, nil
}

// Remote reports true: the Store is reached over the network, so the Cache
// coalesces the lookups of one key in a process (a stampede asks Redis
// once per process).
func (s *Store) Remote() bool { return true }

// Close makes later calls fail with [store.ErrClosed]. It does not close
// the client.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

// Lookup implements [store.Store.Lookup]. Standalone it is one script
// call. On Cluster it is one call, plus one to read the sequence when the
// caller must load (a miss, a granted lease, or req.Lease zero), plus one
// per other node holding the entry's tags, in parallel, when the entry has
// tags outside its slot (see the package doc). Data under the key's names
// that does not parse makes the lookup a miss with Corrupt set, never an
// error (see "Corrupt data" in the package doc); on Cluster, repairing a
// tag's versions costs one call to the tag's node and a second lookup.
func (s *Store) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	if s.closed.Load() {
		return store.Lookup{}, fmt.Errorf("redisstore: lookup %q: %w", key, store.ErrClosed)
	}
	kn := s.layout.key(key)
	ttl := req.LeaseTTL
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	early := req.Early
	switch {
	case req.Refresh:
		early = -1 // the script's "due now"
	case !(early > 0) || math.IsInf(early, 0):
		early = 0
	}
	args := lookupArgs{token: token(req.Lease), ttl: max(ttl.Microseconds(), 1), early: early}
	lk, granted, err := s.lookup(ctx, kn, req, &args)
	if err != nil {
		if granted { // nobody will load with it: let another caller take it
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = s.release(rctx, kn, args.token)
			cancel()
		}
		return store.Lookup{}, fmt.Errorf("redisstore: lookup %q: %w", key, err)
	}
	return lk, nil
}

// lookup is Lookup's work; granted reports whether a script granted the
// lease, even if a later step failed.
func (s *Store) lookup(ctx context.Context, kn keyNames, req store.LookupRequest, args *lookupArgs) (lk store.Lookup, granted bool, err error) {
	corrupt := false
	for try := 0; ; try++ {
		r, err := s.lookupOnce(ctx, kn, args)
		if err != nil {
			return lk, granted, err
		}
		granted = granted || r.lk.Lease
		corrupt = corrupt || r.lk.Corrupt
		if r.badTag != "" {
			// The script dropped the entry. Repair the tag in its own
			// slot (the tag check fences the slot), then ask again: the
			// key's slot may be the one fenced, and the ticket of the
			// load this lookup grants must be of its new epoch.
			if _, _, err := s.readTags(ctx, map[uint16][]string{tagKeySlot(r.badTag): {r.badTag}}); err != nil {
				return lk, granted, err
			}
			if try == maxTries {
				return lk, granted, errors.New("tag versions stay corrupt")
			}
			continue
		}
		if r.badEntry || s.cluster && r.lk.Entry != nil && len(r.lk.Entry.Tags) > 0 {
			var hard, soft uint64
			if r.badEntry {
				hard, corrupt = math.MaxUint64, true
			} else {
				local, remote := s.splitTags(kn.slot, r.lk.Entry.Tags)
				if encodeList(local) != r.tk {
					// The script checked the tag keys the entry names: they
					// must be those of its tags in its slot, or a tag went
					// unchecked.
					hard, corrupt = math.MaxUint64, true
				} else if len(remote) > 0 {
					// The read-side check: tags in other slots were not
					// seen by the script.
					tc, _, err := s.readTags(ctx, remote)
					if err != nil {
						return lk, granted, err
					}
					corrupt = corrupt || tc.corrupt
					// A slot that lost data after the entry's ticket may
					// have lost an invalidation of its tags: its floor
					// counts as a hard version.
					hard, soft = max(tc.hard, tc.floor), tc.any
				}
			}
			if hard > r.guard || soft > r.guard && r.lk.State == store.StateFresh {
				if try == maxTries {
					return lk, granted, errors.New("the entry kept changing under the tag check")
				}
				// Ask again with what the check found: the script drops
				// (or marks stale) the entry if it is still the one
				// checked, and decides the lease on that verdict.
				args.hardBelow, args.softBelow = max(args.hardBelow, hard), max(args.softBelow, soft)
				continue
			}
		}
		if s.cluster {
			if r.lk.Lease || r.lk.State == store.StateMiss || req.Lease == 0 {
				seq, err := s.readSeq(ctx)
				if err != nil {
					return lk, granted, err
				}
				r.lk.Ticket.Seq = seq
			} else {
				// Served without a load: a lower bound spares the
				// sequence's node a call per hit (see the package doc).
				r.lk.Ticket.Seq = max(r.version, r.lk.Entry.Ticket.Seq)
			}
		}
		r.lk.Corrupt = corrupt
		if corrupt {
			// The contract: a lookup that found corrupt data is a miss
			// (the script already dropped whatever entry it served).
			r.lk.Entry, r.lk.State = nil, store.StateMiss
		}
		return r.lk, granted, nil
	}
}

const maxTries = 3

type lookupArgs struct {
	token                string
	ttl                  int64 // µs
	early                float64
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

// lookupOnce runs the lookup script, fencing the key's slot first if it
// must (Cluster).
func (s *Store) lookupOnce(ctx context.Context, kn keyNames, a *lookupArgs) (lookupResult, error) {
	keys := []string{kn.entry, kn.version, kn.lease, s.marker(kn.slot)}
	corrupt := false
	for try := 0; ; try++ {
		v, err := lookupScript.Run(ctx, s.client, keys,
			s.clusterArg(), s.offset(), candidate(), s.check, a.token, a.ttl,
			strconv.FormatFloat(a.early, 'g', -1, 64), a.hardBelow, a.softBelow).Slice()
		if err != nil {
			return lookupResult{}, err
		}
		if u, c := uninit(v); u {
			corrupt = corrupt || c
			if try == maxTries {
				return lookupResult{}, errors.New("slot stays uninitialised")
			}
			if err := s.fence(ctx); err != nil {
				return lookupResult{}, err
			}
			continue
		}
		r, err := parseLookup(v)
		r.lk.Corrupt = r.lk.Corrupt || corrupt
		return r, err
	}
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
	if len(v) != 21 {
		return r, fmt.Errorf("malformed lookup reply of %d elements", len(v))
	}
	f := v[9:]
	tags, ok := decodeList(str(f[9]))
	var nums [8]int64
	for i := range nums {
		n, err := strconv.ParseInt(str(f[i]), 10, 64)
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
	if !e.Negative {
		e.Value = []byte(str(f[10])) // a copy: the caller owns it
	}
	r.guard = uint64(nums[2])
	r.tk = str(f[11])
	r.lk.Entry = e
	return r, nil
}

// Fill implements [store.Store.Fill]: one script call. On Cluster, the
// versions of tags in other slots are read first (one call per node, in
// parallel), and a Set first takes its sequence number.
func (s *Store) Fill(ctx context.Context, key string, f *store.Fill) (bool, error) {
	if s.closed.Load() {
		return false, fmt.Errorf("redisstore: fill %q: %w", key, store.ErrClosed)
	}
	ok, err := s.fill(ctx, key, f)
	if err != nil {
		return false, fmt.Errorf("redisstore: fill %q: %w", key, err)
	}
	return ok, nil
}

func (s *Store) fill(ctx context.Context, key string, f *store.Fill) (bool, error) {
	kn := s.layout.key(key)
	tok := token(f.Lease)
	if len(f.Value) > s.cfg.maxValueSize {
		_ = s.release(ctx, kn, tok)
		return false, fmt.Errorf("%w: %d bytes, the limit is %d (MaxValueSize)",
			store.ErrTooLarge, len(f.Value), s.cfg.maxValueSize)
	}
	local, remote := s.splitTags(kn.slot, f.Tags)
	// The test switches, each read once (see internal/hooks).
	check := len(local)
	if hooks.FillFirstTagOnly.Load() && len(f.Tags) > 0 {
		// Check only f.Tags[0]: the first local key if it is local,
		// else (Cluster) only its remote slot.
		first, sl := s.layout.tagKey(f.Tags[0])
		check = 0
		if !s.cluster || sl == kn.slot {
			check, remote = 1, nil
		} else {
			remote = map[uint16][]string{sl: {first}}
		}
	}
	if hooks.NoClusterPreFill.Load() {
		remote = nil
	}
	keepOld := "0"
	if hooks.SetKeepsOld.Load() {
		keepOld = "1"
	}
	set := "0"
	if f.Set {
		set = "1"
	}
	refused := "0"
	if s.cluster && (len(remote) > 0 || f.Set) {
		ok, seq, err := s.preFill(ctx, f.Ticket.Seq, remote, f.Set)
		if err != nil {
			return false, err
		}
		if ok && f.Set {
			set = seq
		}
		// A refusal still runs the script: it releases the lease and,
		// for a Set, drops the older entry.
		if !ok {
			refused = "1"
		}
	}
	keys := make([]string, 0, 4+len(local))
	keys = append(keys, kn.entry, kn.version, kn.lease, s.marker(kn.slot))
	keys = append(keys, local...)
	negative := "0"
	if f.Negative {
		negative = "1"
	}
	value := f.Value
	if f.Negative || value == nil {
		value = []byte{}
	}
	for try := 0; ; try++ {
		v, err := fillScript.Run(ctx, s.client, keys,
			s.clusterArg(), s.offset(), candidate(), s.check,
			strconv.FormatUint(f.Ticket.Epoch, 10), strconv.FormatUint(f.Ticket.Seq, 10), tok,
			value, negative, max(f.TTL, 0).Microseconds(), max(f.Stale, 0).Microseconds(),
			max(f.StaleIfError, 0).Microseconds(), max(f.LoadDuration, 0).Nanoseconds(), set,
			encodeList(f.Tags), refused, keepOld, check).Slice()
		if err != nil {
			return false, err
		}
		if u, _ := uninit(v); u {
			// The key's slot lost its data since the ticket was taken
			// (or the script found a version that does not parse and
			// deleted the slot's marker): fence it; the retry refuses
			// the fill (other epoch) and releases the lease.
			if try == maxTries {
				return false, errors.New("slot stays uninitialised")
			}
			if err := s.fence(ctx); err != nil {
				return false, err
			}
			continue
		}
		if len(v) != 3 {
			return false, errors.New("malformed fill reply")
		}
		return num(v[1]) == 1, nil
	}
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
	return releaseScript.Run(ctx, s.client, []string{kn.lease}, tok, releaseTombstone.Milliseconds()).Err()
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
		keys := make([]string, 0, 1+3*len(inv.Keys)+len(inv.Tags))
		keys = append(keys, s.layout.globalMarker())
		for _, k := range inv.Keys {
			kn := s.layout.key(k)
			keys = append(keys, kn.entry, kn.version, kn.lease)
		}
		for _, t := range inv.Tags {
			tk, _ := s.layout.tagKey(t)
			keys = append(keys, tk)
		}
		var v []any
		v, err = invalidateScript.Run(ctx, s.client, keys, "0", candidate(), s.check, "0", soft, len(inv.Keys), keepLeases).Slice()
		if u, _ := uninit(v); err == nil && u { // standalone never replies uninit
			err = errors.New("malformed invalidate reply")
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
