package memcachestore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddockcache/paddock/store"
)

// A Store is a [store.Store] on one or more memcached servers. Create one
// with [New]; it is safe for concurrent use, and Close releases it.
type Store struct {
	nodes  []*node
	prefix string
	// membership is the part of every epoch that names the server list:
	// stores over other lists never trust each other's entries.
	membership uint64
	maxItem    int
	timeout    time.Duration
	offset     func() time.Duration

	closed atomic.Bool

	// mu guards leases and released: the leases this Store granted, with
	// the CAS of the lease item that stands for each, and the tokens
	// recently released (see Release).
	mu       sync.Mutex
	leases   map[string]heldLease
	released map[string]heldLease
	sweepAt  int
}

type heldLease struct {
	token uint64
	cas   uint64
	until time.Time // by the local clock: only for sweeping
}

var (
	_ store.Store  = (*Store)(nil)
	_ store.Remote = (*Store)(nil)
)

// Remote implements [store.Remote]: every call is a round trip or more.
func (*Store) Remote() bool { return true }

// epochBits is where the epoch sits in the sequence item's value: the top
// 24 bits are a random number drawn when the item is created, the low 40
// bits count invalidations. A sequence that overflows its 40 bits moves
// into a new epoch, which is safe: every entry becomes a miss once.
const (
	epochShift = 40
	seqMask    = 1<<epochShift - 1
)

// New returns a store over the memcached servers at addrs, each
// "host:port" or the path of a unix socket (one with a '/'). Keys are
// spread over the servers by rendezvous hashing; the list is part of
// every epoch, so that a store over another list, or the same store after
// a change of membership, trusts none of the entries and tickets of the
// old one. A bad option or an empty list gives an error wrapping
// [store.ErrInvalidOption]. New does not connect.
func New(addrs []string, opts ...Option) (*Store, error) {
	c := config{prefix: "pd:", maxItem: 1 << 20, timeout: 2 * time.Second, dialTimeout: time.Second}
	for _, o := range opts {
		if o == nil {
			return nil, invalid("nil Option")
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if len(addrs) == 0 {
		return nil, invalid("no server addresses")
	}
	sorted := slices.Clone(addrs)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != len(addrs) {
		return nil, invalid("duplicate server address")
	}
	h := fnv.New64a()
	s := &Store{
		prefix: c.prefix, maxItem: c.maxItem, timeout: c.timeout, offset: c.offset,
		leases: make(map[string]heldLease), released: make(map[string]heldLease), sweepAt: 64,
	}
	for _, a := range sorted {
		if a == "" {
			return nil, invalid("empty server address")
		}
		h.Write([]byte(a))
		h.Write([]byte{0})
		network := "tcp"
		if strings.Contains(a, "/") {
			network = "unix"
		}
		s.nodes = append(s.nodes, &node{network: network, addr: a, dialTimeout: c.dialTimeout})
	}
	s.membership = h.Sum64() &^ (1<<(64-epochShift) - 1)
	return s, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("memcachestore: %w: %s", store.ErrInvalidOption, fmt.Sprintf(format, args...))
}

var errClosed = fmt.Errorf("memcachestore: %w", store.ErrClosed)

// Close closes the idle connections. Every call after the first, and
// every other method after Close, returns an error wrapping
// [store.ErrClosed].
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return errClosed
	}
	for _, n := range s.nodes {
		n.close()
	}
	return nil
}

// now is the local clock, plus the test offset.
func (s *Store) now() time.Time { return time.Now().Add(s.off()) }

func (s *Store) off() time.Duration {
	if s.offset == nil {
		return 0
	}
	return s.offset()
}

// ttlSeconds turns a duration from the store's now into an item TTL in
// whole seconds: rounded up, with the test offset added (see TimeOffset),
// and one second more. memcached's clock ticks once a second, and an item
// of TTL n expires when it has ticked n times, so it lives between n-1
// and n seconds: one of TTL 1 written just before a tick is gone at once.
// The extra second makes an item outlive d.
func (s *Store) ttlSeconds(d time.Duration) int64 {
	d += s.off()
	sec := int64((d + time.Second - 1) / time.Second)
	return max(sec, 0) + 1
}

// remaining is what is left of an item's TTL by the store's clock: the
// server's countdown t, in seconds, less the test offset. The countdown is
// in whole ticks of the server's clock, so the time left is between t-1
// and t seconds: for an entry, whose item outlives its windows (see
// ttlSeconds), t is the bound that never ends it early.
func (s *Store) remaining(t int64) time.Duration {
	return time.Duration(t)*time.Second - s.off()
}

// leaseLeft is what is left of a lease whose item's countdown is t: the
// item was written a second longer than the lease (see ttlSeconds).
func (s *Store) leaseLeft(t int64) time.Duration { return s.remaining(t) - time.Second }

// Item names. Every name carries the prefix and a kind; a key or tag that
// memcached could not take as it is (longer than 250 bytes with the rest
// of the name, or with whitespace, control or non-ASCII bytes) is replaced
// by its SHA-256, under a kind of its own so that no plain name collides
// with a hashed one.
const (
	kindEntry    = "e"
	kindVersions = "v"
	kindLease    = "l"
	kindTag      = "t"
)

func (s *Store) name(kind, k string) string {
	n := s.prefix + kind + ":" + k
	if len(n) <= 250 && plain(n) {
		return n
	}
	sum := sha256.Sum256([]byte(k))
	return s.prefix + strings.ToUpper(kind) + "#" + base64.RawURLEncoding.EncodeToString(sum[:])
}

func plain(n string) bool {
	for i := 0; i < len(n); i++ {
		if b := n[i]; b <= ' ' || b >= 0x7f {
			return false
		}
	}
	return true
}

func (s *Store) seqName() string { return s.prefix + "seq" }

// nodeOf picks the server of route by rendezvous hashing: the server with
// the highest hash of (address, route). A key's entry, versions and lease
// live on the server of the key; a tag's versions on the server of the tag.
func (s *Store) nodeOf(route string) *node {
	if len(s.nodes) == 1 {
		return s.nodes[0]
	}
	var best *node
	var top uint64
	for _, n := range s.nodes {
		h := fnv.New64a()
		h.Write([]byte(n.addr))
		h.Write([]byte{0})
		h.Write([]byte(route))
		if v := h.Sum64(); best == nil || v > top {
			best, top = n, v
		}
	}
	return best
}

func (s *Store) keyNode(key string) *node { return s.nodeOf("k\x00" + key) }
func (s *Store) tagNode(tag string) *node { return s.nodeOf("t\x00" + tag) }
func (s *Store) seqNode() *node           { return s.nodeOf("seq") }

// seqInit is the value a missing sequence item is created with: a new
// random epoch and a count of zero.
func seqInit() uint64 { return uint64(rand.IntN(1<<24-1)+1) << epochShift }

// readSeq reads the sequence, creating it (a new epoch) if it is missing.
func (s *Store) readSeq() *op {
	return &op{line: fmt.Sprintf("ma %s N0 J%d D0 v", s.seqName(), seqInit())}
}

// incrSeq takes s = ++seq, creating the sequence (a new epoch) if it is
// missing; a created sequence answers its initial value.
func (s *Store) incrSeq() *op {
	return &op{line: fmt.Sprintf("ma %s N0 J%d v", s.seqName(), seqInit())}
}

func seqValue(o *op) (uint64, error) {
	if o.err != nil {
		return 0, o.err
	}
	if o.status != "VA" {
		return 0, fmt.Errorf("memcachestore: sequence: reply %s", o.status)
	}
	v, err := strconv.ParseUint(string(o.value), 10, 64)
	if err != nil || v>>epochShift == 0 {
		return 0, fmt.Errorf("memcachestore: sequence: bad value %q", o.value)
	}
	return v, nil
}

func (s *Store) epochOf(seq uint64) uint64 { return s.membership | seq>>epochShift }

// versions are a key's or a tag's: soft is the last invalidation of any
// kind (and, for a key, the last Set), hard the last hard one. Both are
// full sequence values, so they carry their epoch.
type versions struct{ soft, hard uint64 }

func (v versions) encode() []byte {
	return []byte(strconv.FormatUint(v.soft, 10) + " " + strconv.FormatUint(v.hard, 10))
}

// parseVersions decodes a versions item of the epoch of cur. ok is false
// for a missing item, one of another epoch, or one that does not parse:
// the versions are unknown.
func parseVersions(o *op, cur uint64) (v versions, ok bool) {
	if o.status != "VA" {
		return versions{}, false
	}
	a, b, found := strings.Cut(string(o.value), " ")
	if !found {
		return versions{}, false
	}
	var err1, err2 error
	v.soft, err1 = strconv.ParseUint(a, 10, 64)
	v.hard, err2 = strconv.ParseUint(b, 10, 64)
	e := cur >> epochShift
	if err1 != nil || err2 != nil || v.soft>>epochShift != e || v.hard>>epochShift != e {
		return versions{}, false
	}
	return v, true
}

// batch is one round trip: a pipeline per server, run in parallel.
type batch map[*node][]*op

func (b batch) add(n *node, ops ...*op) { b[n] = append(b[n], ops...) }

func (s *Store) run(ctx context.Context, b batch) error {
	if len(b) == 1 {
		for n, ops := range b {
			return n.do(ctx, ops)
		}
	}
	errs := make(chan error, len(b))
	for n, ops := range b {
		go func() { errs <- n.do(ctx, ops) }()
	}
	var first error
	for range b {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// stages runs the stages in order, as one round trip if they all go to one
// server (its pipeline keeps their order), else one round trip per stage.
// A stage that fails is not followed by the others.
func (s *Store) stages(ctx context.Context, st ...batch) error {
	nodes := map[*node]bool{}
	for _, b := range st {
		for n := range b {
			nodes[n] = true
		}
	}
	if len(nodes) == 1 {
		one := batch{}
		for _, b := range st {
			for n, ops := range b {
				one.add(n, ops...)
			}
		}
		return s.run(ctx, one)
	}
	for i, b := range st {
		if err := s.run(ctx, b); err != nil {
			// The later stages are not sent: their commands fail too.
			for _, later := range st[i+1:] {
				for _, ops := range later {
					failed(ops, err)
				}
			}
			return err
		}
	}
	return nil
}

func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || s.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

func firstErr(ops ...*op) error {
	for _, o := range ops {
		if o != nil && o.err != nil {
			return o.err
		}
	}
	return nil
}

// tooLarge reports a SERVER_ERROR that says the item is over the limit.
func tooLarge(o *op) bool {
	return o.err != nil && errors.Is(o.err, errServer) && strings.Contains(o.err.Error(), "too large")
}
