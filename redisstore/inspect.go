package redisstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock/store"
)

// The inspection API: read-only views of what the Store keeps, for
// operators' tools (paddockctl). None of it is on the read path, none of
// it repairs or deletes anything it finds, and data that does not parse is
// reported as such rather than as an error.

// Client returns the client the Store was made with.
func (s *Store) Client() redis.UniversalClient { return s.client }

// Prefix returns the prefix of every Redis key the Store writes (see
// [Prefix]).
func (s *Store) Prefix() string { return s.cfg.prefix }

// IsCluster reports whether the Store uses the Cluster layout: one epoch
// marker per slot, and a sequence read in its own call.
func (s *Store) IsCluster() bool { return s.cluster }

// The states of an [Inspection], as a lookup at the same instant would
// judge the entry.
const (
	StateMissing     = "missing"          // no entry
	StateCorrupt     = "corrupt"          // bytes that do not parse: a lookup deletes them
	StateOtherEpoch  = "other-epoch"      // written in another epoch, or no epoch yet: never served
	StateInvalidated = "invalidated"      // a tag was invalidated after its ticket: a lookup drops it
	StateFresh       = "fresh"            // served as it is
	StateDue         = "due"              // fresh, and due for early refresh
	StateSoft        = "soft-invalidated" // marked stale: served while one refresh runs, until its stale window ends
	StateStale       = "stale"            // past its freshness, in its stale window
	StateErrorOnly   = "error-only"       // past its stale window: served only in place of a failed refresh
	StateExpired     = "expired"          // of no use; Redis drops it
)

// An Inspection is what the Store keeps for one cache key, read in one
// script call (one instant of the server's clock), plus the versions of
// the entry's tags (on Cluster, read from the tags' own slots just after).
type Inspection struct {
	// Key is the cache key ("namespace:key").
	Key string
	// State is how a lookup would judge the entry now: one of the State
	// constants.
	State string
	// Reason says why, in words, when the entry is not served as it is.
	Reason string
	// Entry is the decoded entry; nil when there is none or it does not
	// parse.
	Entry *store.Entry
	// Soft reports that the entry itself was marked stale (a soft
	// invalidation of its key).
	Soft bool
	// Size is the entry's length in Redis, in bytes (the fixed fields,
	// the tag lists and the value).
	Size int
	// Now is the server's clock (plus [TimeOffset]) when the entry was
	// read.
	Now time.Time
	// Epoch is the epoch of the key's slot (standalone: of the server),
	// and Floor its floor; EpochFound is false when there is no epoch
	// marker yet, or it does not parse.
	Epoch, Floor uint64
	EpochFound   bool
	// Version is the key's version: the sequence number of its last
	// invalidation (0: never invalidated).
	Version uint64
	// FreshMarker is the instant until which a hit may serve the entry
	// without a script (see "The hit path" in the package doc); zero when
	// there is none.
	FreshMarker time.Time
	// Lease is the holder's token and expiry of the key's lease, if one is
	// held (LeaseToken 0: none).
	LeaseToken   uint64
	LeaseExpires time.Time
	// TagVersions are the versions of the entry's tags.
	TagVersions map[string]TagVersion
}

// A TagVersion is what the Store keeps for one tag: the sequence numbers
// of its last hard invalidation and of its last invalidation of any kind.
// A tag never filled nor invalidated has none (Found false).
type TagVersion struct {
	Hard, Any uint64
	Found     bool
	// Corrupt: the versions do not parse (a lookup of an entry with the
	// tag repairs them as very high, dropping the entry).
	Corrupt bool
}

// inspectScript reads keys' values and types and the server's clock,
// writing nothing.
//
//	KEYS: the names to read
//	Reply: {values (false when missing or not a string), types, {TIME}}
var inspectScript = redis.NewScript(`
local vals, types = {}, {}
for i = 1, #KEYS do
  local t = redis.call('TYPE', KEYS[i]).ok
  types[i] = t
  if t == 'string' then vals[i] = redis.call('GET', KEYS[i]) else vals[i] = false end
end
return {vals, types, redis.call('TIME')}
`)

// Inspect reads what the Store keeps for key, writing nothing: one script
// call, then (for an entry with tags) one read of the tags' versions, per
// node on Cluster. An entry that does not parse has State [StateCorrupt];
// an error is only Redis's.
func (s *Store) Inspect(ctx context.Context, key string) (*Inspection, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("redisstore: inspect %q: %w", key, store.ErrClosed)
	}
	kn := s.layout.key(key)
	keys := []string{kn.entry, kn.fresh, kn.version, kn.lease, s.marker(kn.slot)}
	v, err := inspectScript.Run(ctx, s.client, keys).Slice()
	if err != nil {
		return nil, fmt.Errorf("redisstore: inspect %q: %w", key, err)
	}
	if len(v) != 3 {
		return nil, fmt.Errorf("redisstore: inspect %q: malformed reply", key)
	}
	vals, _ := v[0].([]any)
	types, _ := v[1].([]any)
	tm, _ := v[2].([]any)
	if len(vals) != len(keys) || len(types) != len(keys) || len(tm) != 2 {
		return nil, fmt.Errorf("redisstore: inspect %q: malformed reply", key)
	}
	get := func(i int) (val []byte, present, ok bool) {
		switch str(types[i]) {
		case "none":
			return nil, false, true
		case "string":
			return []byte(str(vals[i])), true, true
		}
		return nil, true, false
	}
	now := time.UnixMicro(num(tm[0])*1e6 + num(tm[1]) + s.offset())
	in := &Inspection{Key: key, Now: now, State: StateMissing}

	if m, present, ok := get(4); present && ok {
		if e, f, _, ok := parseMarker(m); ok {
			in.Epoch, in.Floor, in.EpochFound = e, f, true
		}
	}
	if b, present, ok := get(2); present && ok {
		in.Version, _ = parseNum(b)
	}
	if b, present, ok := get(3); present && ok {
		if i := indexColon(b); i > 0 {
			tok, ok1 := strconv.ParseUint(string(b[:i]), 10, 64)
			exp, ok2 := parseSnum(b[i+1:])
			if ok1 == nil && ok2 {
				in.LeaseToken, in.LeaseExpires = tok, time.UnixMicro(exp)
			}
		}
	}
	fm, fmPresent, fmOK := get(1)
	var fmUntil int64
	if fmPresent && fmOK {
		if u, _, ok := parseFresh(fm); ok {
			fmUntil = u
			in.FreshMarker = time.UnixMicro(u)
		} else {
			fmOK = false
		}
	}

	raw, present, ok := get(0)
	if !present {
		return in, nil
	}
	in.Size = len(raw)
	var ev entryView
	if ok {
		ev, ok = parseEntry(raw)
	}
	if !ok {
		in.State, in.Reason = StateCorrupt, "the entry does not parse"
		return in, nil
	}
	tags, _ := decodeList(string(ev.tags))
	in.Entry = ev.storeEntry(tags)
	in.Entry.Value = append([]byte(nil), in.Entry.Value...)
	in.Soft = ev.soft()
	if fmPresent && (!fmOK || fmUntil > ev.fresh) {
		in.State, in.Reason = StateCorrupt, "the fresh marker does not parse, or is later than the entry's freshness"
		return in, nil
	}
	if len(tags) > 0 {
		in.TagVersions, err = s.TagVersions(ctx, tags...)
		if err != nil {
			return nil, fmt.Errorf("redisstore: inspect %q: %w", key, err)
		}
	}
	in.State, in.Reason = judge(in, &ev, now.UnixMicro())
	return in, nil
}

// judge decides an inspected entry's state by the lookup script's rules.
func judge(in *Inspection, ev *entryView, t int64) (state, reason string) {
	switch {
	case !in.EpochFound:
		return StateOtherEpoch, "no epoch marker: the next call starts a new epoch, and no entry of before is trusted"
	case ev.epoch != in.Epoch:
		return StateOtherEpoch, fmt.Sprintf("written in epoch %d, the slot's epoch is %d", ev.epoch, in.Epoch)
	}
	soft := ev.soft()
	softBy := "its key was marked stale"
	for _, tag := range sortedTags(in.TagVersions) {
		tv := in.TagVersions[tag]
		switch {
		case tv.Corrupt:
			return StateInvalidated, fmt.Sprintf("tag %q has versions that do not parse", tag)
		case tv.Hard > ev.guard:
			return StateInvalidated, fmt.Sprintf("tag %q was invalidated at %d, after the entry's ticket %d", tag, tv.Hard, ev.guard)
		case tv.Any > ev.guard && !soft:
			soft, softBy = true, fmt.Sprintf("tag %q was marked stale at %d, after the entry's ticket %d", tag, tv.Any, ev.guard)
		}
	}
	switch {
	case t >= max(ev.staleEnd, ev.errorEnd):
		return StateExpired, "past its stale and error windows"
	case t < ev.fresh && !soft:
		if at, ok := ev.refreshAt(); ok && t >= at {
			return StateDue, "fresh, past its early-refresh instant: the next Get refreshes it in the background"
		}
		return StateFresh, ""
	case t < ev.staleEnd && soft:
		return StateSoft, softBy
	case t < ev.staleEnd:
		return StateStale, "past its freshness, in its stale window"
	}
	if soft {
		return StateErrorOnly, softBy + ", and its stale window has ended"
	}
	return StateErrorOnly, "past its stale window: served only in place of a failed refresh"
}

func sortedTags(m map[string]TagVersion) []string { return slices.Sorted(maps.Keys(m)) }

// TagVersions reads the versions of tags: one pipeline of GETs (on
// Cluster, go-redis sends each node its part).
func (s *Store) TagVersions(ctx context.Context, tags ...string) (map[string]TagVersion, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("redisstore: tag versions: %w", store.ErrClosed)
	}
	out := make(map[string]TagVersion, len(tags))
	if len(tags) == 0 {
		return out, nil
	}
	names := make([]string, len(tags))
	for i, t := range tags {
		names[i], _ = s.layout.tagKey(t)
	}
	cmds := getAll(ctx, s.client, names)
	for i, t := range tags {
		b, err := cmds[i].Bytes()
		switch {
		case errors.Is(err, redis.Nil):
			out[t] = TagVersion{}
		case redis.HasErrorPrefix(err, "WRONGTYPE"):
			out[t] = TagVersion{Found: true, Corrupt: true}
		case err != nil:
			return nil, fmt.Errorf("redisstore: tag versions: %w", err)
		default:
			h, a, ok := parseTagVersions(b)
			out[t] = TagVersion{Hard: h, Any: a, Found: true, Corrupt: !ok}
		}
	}
	return out, nil
}

// A ScannedEntry is one entry found by [Store.Scan].
type ScannedEntry struct {
	// Key is the cache key ("namespace:key").
	Key string
	// Tags are the entry's tags (nil when it does not parse).
	Tags []string
	// Size is the entry's length in Redis, in bytes.
	Size int
	// Corrupt: the entry does not parse.
	Corrupt bool
}

// Scan calls fn with the entries whose cache keys match the glob pattern
// match (Redis's MATCH syntax: '*', '?', '[...]', '\' escapes; "" is every
// key), walking the key space with SCAN (never KEYS) on the server, on
// Cluster on every master. It examines at most limit Redis keys (SCAN's
// own count of the keys it walked, whether or not they matched), and
// reports whether it walked the whole key space within that bound. fn is
// called from one goroutine at a time; an error from it ends the scan.
// An entry may be reported twice (SCAN's guarantee) or, if written during
// the scan, not at all.
func (s *Store) Scan(ctx context.Context, match string, limit int, fn func(ScannedEntry) error) (complete bool, err error) {
	if s.closed.Load() {
		return false, fmt.Errorf("redisstore: scan: %w", store.ErrClosed)
	}
	if limit < 1 {
		return false, fmt.Errorf("redisstore: scan: %w: limit must be positive, got %d", store.ErrInvalidOption, limit)
	}
	pattern := globEscape(s.cfg.prefix) + "{" + globPattern(match) + "}:e"
	var (
		mu     sync.Mutex
		walked atomic.Int64
		cut    atomic.Bool
	)
	one := func(ctx context.Context, c *redis.Client) error {
		var cursor uint64
		for {
			if walked.Load() >= int64(limit) {
				cut.Store(true)
				return nil
			}
			count := min(int64(limit)-walked.Load(), 1000)
			names, next, err := c.Scan(ctx, cursor, pattern, count).Result()
			if err != nil {
				return err
			}
			// COUNT is a hint: the server may walk more than asked.
			walked.Add(count)
			if len(names) > 0 {
				if err := s.scanned(ctx, c, names, &mu, fn); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	switch c := s.client.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, one)
	case *redis.Client:
		err = one(ctx, c)
	default:
		err = fmt.Errorf("a client of type %T", s.client)
	}
	if err != nil {
		return false, fmt.Errorf("redisstore: scan: %w", err)
	}
	return !cut.Load(), nil
}

// scanned reads the entries names on c, one pipeline, and hands them to fn
// under mu.
func (s *Store) scanned(ctx context.Context, c *redis.Client, names []string, mu *sync.Mutex, fn func(ScannedEntry) error) error {
	cmds := getAll(ctx, c, names)
	mu.Lock()
	defer mu.Unlock()
	for i, n := range names {
		key, ok := s.cacheKey(n)
		if !ok {
			continue
		}
		b, err := cmds[i].Bytes()
		if errors.Is(err, redis.Nil) {
			continue // gone since SCAN saw it
		}
		e := ScannedEntry{Key: key, Size: len(b)}
		if err != nil && !redis.HasErrorPrefix(err, "WRONGTYPE") {
			return err
		}
		if ev, ok := parseEntry(b); err == nil && ok {
			e.Tags, _ = decodeList(string(ev.tags))
		} else {
			e.Corrupt = true
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// cacheKey returns the cache key of the entry name n, "<prefix>{K}:e".
func (s *Store) cacheKey(n string) (string, bool) {
	rest, ok := strings.CutPrefix(n, s.cfg.prefix+"{")
	if !ok {
		return "", false
	}
	tag, ok := strings.CutSuffix(rest, "}:e")
	if !ok || strings.ContainsAny(tag, "{}") {
		return "", false
	}
	return unesc(tag), true
}

// globEscape escapes every character of s that a MATCH pattern treats
// specially.
func globEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// globPattern turns a pattern over cache keys into one over their escaped
// hash tags: the literal characters that esc escapes are escaped the same
// way, the pattern's own syntax is kept.
func globPattern(match string) string {
	if match == "" {
		return "*"
	}
	var b strings.Builder
	for i := 0; i < len(match); i++ {
		switch c := match[i]; c {
		case '\\':
			if i+1 < len(match) {
				i++
				if n := match[i]; n == '%' || n == '{' || n == '}' {
					b.WriteString(esc(match[i : i+1])) // no special character in it
				} else {
					b.WriteByte('\\')
					b.WriteByte(n)
				}
				continue
			}
			b.WriteString(`\\`)
		case '%', '{', '}':
			b.WriteString(esc(string(c)))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// An EpochMarker is one epoch marker, as [Store.EpochMarkers] found it.
type EpochMarker struct {
	// Name is the marker's Redis key, and Addr the server holding it.
	Name, Addr string
	// Slot is the Cluster slot the marker governs; -1 standalone.
	Slot int
	// Epoch, Floor and ReplID are its fields; Corrupt is set when it does
	// not parse.
	Epoch, Floor uint64
	ReplID       string
	Corrupt      bool
	// ServerReplID is the replication ID of the server holding it, read
	// in the same pass. A marker is trusted when it parses and names it
	// (or names none: the failover check is off).
	ServerReplID string
}

// Trusted reports whether the Store trusts the marker: it parses, and it
// names the replication ID of the server holding it, or none.
func (m EpochMarker) Trusted() bool {
	return !m.Corrupt && (m.ReplID == "" || m.ReplID == m.ServerReplID)
}

// EpochMarkers reads the epoch markers: standalone the one marker (none
// when it is missing), on Cluster every slot's marker on every master,
// found with SCAN (at most limit keys walked per master; complete reports
// whether every master was walked whole).
func (s *Store) EpochMarkers(ctx context.Context, limit int) (markers []EpochMarker, complete bool, err error) {
	if s.closed.Load() {
		return nil, false, fmt.Errorf("redisstore: epoch markers: %w", store.ErrClosed)
	}
	complete = true
	var mu sync.Mutex
	// read reads the markers names on c, whose replication ID is rid.
	read := func(ctx context.Context, c *redis.Client, rid string, names []string) error {
		cmds := getAll(ctx, c, names)
		mu.Lock()
		defer mu.Unlock()
		for i, n := range names {
			b, err := cmds[i].Bytes()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil && !redis.HasErrorPrefix(err, "WRONGTYPE") {
				return err
			}
			m := EpochMarker{Name: n, Addr: c.Options().Addr, Slot: -1, ServerReplID: rid}
			if s.cluster {
				tag := strings.TrimSuffix(strings.TrimPrefix(n, s.cfg.prefix+"{"), "}:ep")
				sl := slotOf(tag)
				if slotTags()[sl] != tag {
					continue // not a marker name: a key of another layout
				}
				m.Slot = int(sl)
			}
			e, f, r, ok := parseMarker(b)
			m.Epoch, m.Floor, m.ReplID, m.Corrupt = e, f, string(r), err != nil || !ok
			markers = append(markers, m)
		}
		return nil
	}
	switch c := s.client.(type) {
	case *redis.ClusterClient:
		pattern := globEscape(s.cfg.prefix) + "{*}:ep"
		err = c.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			rid, err := replID(ctx, c)
			if err != nil {
				return err
			}
			var cursor uint64
			walked := 0
			for {
				if walked >= limit {
					mu.Lock()
					complete = false
					mu.Unlock()
					return nil
				}
				names, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
				if err != nil {
					return err
				}
				walked += 1000
				if err := read(ctx, c, rid, names); err != nil {
					return err
				}
				if cursor = next; cursor == 0 {
					return nil
				}
			}
		})
	case *redis.Client:
		var rid string
		if rid, err = replID(ctx, c); err == nil {
			err = read(ctx, c, rid, []string{s.layout.globalMarker()})
		}
	default:
		err = fmt.Errorf("a client of type %T", s.client)
	}
	if err != nil {
		return nil, false, fmt.Errorf("redisstore: epoch markers: %w", err)
	}
	return markers, complete, nil
}

// getAll sends a GET of each of names in one pipeline on c; the errors
// are read per command.
func getAll(ctx context.Context, c redis.Cmdable, names []string) []*redis.StringCmd {
	p := c.Pipeline()
	cmds := make([]*redis.StringCmd, len(names))
	for i, n := range names {
		cmds[i] = p.Get(ctx, n)
	}
	_, _ = p.Exec(ctx)
	return cmds
}

// replID reads the replication ID of the server c talks to.
func replID(ctx context.Context, c *redis.Client) (string, error) {
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "master_replid:"); ok {
			return v, nil
		}
	}
	return "", nil
}
