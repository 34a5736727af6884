package redisstore

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ForceCluster makes a Store use the Cluster layout and paths on any
// client: every slot's keys, markers and the sequence then live on one
// server, but each step runs exactly as it would across nodes. Tests use it
// to run the Cluster code against a standalone server.
func ForceCluster() Option {
	return func(c *config) error {
		c.forceCluster = true
		return nil
	}
}

// SlotOf returns the Cluster slot of a cache key or tag.
func SlotOf(s string) uint16 { return slotOf(esc(s)) }

// Esc is the escaping of keys and tags inside hash tags.
var Esc = esc

// EncodeList and DecodeList are the list encoding the scripts read.
var (
	EncodeList = encodeList
	DecodeList = decodeList
)

// SlotTag returns the hash tag of slot's epoch marker.
func SlotTag(slot uint16) string { return slotTags()[slot] }

// ScriptNames maps the SHA-1 of each script to its name.
func ScriptNames() map[string]string {
	return map[string]string{
		lookupScript.Hash():     "lookup",
		fillScript.Hash():       "fill",
		releaseScript.Hash():    "release",
		invalidateScript.Hash(): "invalidate",
		seqScript.Hash():        "seq",
		fenceScript.Hash():      "fence",
		tagCheckScript.Hash():   "tagcheck",
		checkScript.Hash():      "check",
		inspectScript.Hash():    "inspect",
	}
}

// ScriptSources are the sources of every script, for tests that load them
// on every node before counting calls.
func ScriptSources() []string {
	var out []string
	for _, src := range []string{lookupSrc, fillSrc, releaseSrc, invalidateSrc, seqSrc, tagCheckSrc, checkSrc} {
		out = append(out, luaPrelude+src)
	}
	out = append(out, "#!lua flags=allow-cross-slot-keys\n"+luaPrelude+fenceSrc)
	return out
}

// Subscribed starts s's subscription if it is not running and returns a
// channel closed once its subscription to the wake channel is confirmed.
func Subscribed(s *Store) <-chan struct{} {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	h.startLocked()
	return h.subscribed
}

// Channels returns the names of s's wake and feed channels.
func Channels(s *Store) (wake, feed string) { return s.hub.wakeCh, s.hub.feedCh }

// Offsets of the entry's fixed fields (see entry.go).
const (
	EntryFlags   = offFlags
	EntryEpoch   = offEpoch
	EntryGuard   = offGuard
	EntryLead    = offLead
	EntryLoad    = offLoad
	EntryQ       = offQ
	EntryCreated = offCreated
	EntryFresh   = offFresh
	EntryStale   = offStale
	EntryError   = offError
	EntryHead    = entryHead
)

// SplitEntry splits an entry into its fixed part, its two lists and its
// value; ok is false if it does not parse.
func SplitEntry(b []byte) (fixed []byte, tags, tagKeys string, value []byte, ok bool) {
	v, ok := parseEntry(b)
	if !ok {
		return nil, "", "", nil, false
	}
	return b[:entryHead:entryHead], string(v.tags), string(v.tagKeys), v.value, true
}

// JoinEntry reverses SplitEntry.
func JoinEntry(fixed []byte, tags, tagKeys string, value []byte) []byte {
	return appendEntryTail(append([]byte(nil), fixed...), tags, tagKeys, value)
}

// ParseEntry reports whether b parses as an entry (the client's rules,
// without the check of the tag keys against the tags).
func ParseEntry(b []byte) bool {
	_, ok := parseEntry(b)
	return ok
}

// CheckServers verifies every server the Store uses (standalone its one,
// on Cluster every master) in a generation of connections that then stays,
// so that tests can count the calls of a Store whose hits are MGETs.
func CheckServers(ctx context.Context, s *Store) error {
	for range 10 {
		gen := s.gen()
		nodes := []*node{&s.single}
		if cc, ok := s.client.(*redis.ClusterClient); ok {
			s.watchAll(ctx)
			var mu sync.Mutex
			nodes = nil
			if err := cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
				n, _ := s.nodes.LoadOrStore(c, &node{client: c})
				mu.Lock()
				nodes = append(nodes, n.(*node))
				mu.Unlock()
				return nil
			}); err != nil {
				return err
			}
		}
		for _, n := range nodes {
			if err := s.check(ctx, n); err != nil {
				return err
			}
		}
		if s.fresh(gen) {
			return nil
		}
	}
	return errors.New("the connections kept changing")
}

// Hits reports whether the Store's warm hits are MGETs.
func Hits(s *Store) bool { return s.hits }

// BuildEntry builds a whole entry, as the client and the fill script
// together write one.
func BuildEntry(negative bool, epoch, guard uint64, lead, load int64, q uint64, c, f, st, x int64, tags, tagKeys string, value []byte) []byte {
	b := appendEntryHead(nil, negative, epoch, guard, lead, load)
	b = appendEntryTimes(b, q, c, f, st, x)
	return appendEntryTail(b, tags, tagKeys, value)
}

var parseScript = redis.NewScript(luaPrelude + `if entry(ARGV[1], KEYS[1], false) then return 1 end return 0`)

// ScriptParses reports whether the lookup script's parse accepts entry b
// under key name k (standalone).
func ScriptParses(ctx context.Context, c redis.Scripter, k string, b []byte) (bool, error) {
	n, err := parseScript.Run(ctx, c, []string{k}, b).Int()
	return n == 1, err
}

// ClientParses reports whether the hit path's checks accept entry b under
// key name k (standalone): it parses, and its tag keys are those of its
// tags.
func ClientParses(k string, b []byte) bool {
	v, ok := parseEntry(b)
	if !ok {
		return false
	}
	prefix, _, _ := strings.Cut(k, "{")
	s := &Store{layout: layout{prefix: prefix}}
	local, _ := s.splitTags(0, decodeTags(v.tags))
	return encodeList(local) == string(v.tagKeys)
}
