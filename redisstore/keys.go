package redisstore

import (
	"strconv"
	"strings"
	"sync"
)

// The key layout. Everything the store keeps for one cache key K lives
// under one hash tag, so that each of its scripts touches one Cluster slot:
//
//	<prefix>{K}:e    string: the entry (see entry.go)
//	<prefix>{K}:f    string: the fresh marker, the instant (store clock, µs)
//	                 until which the entry may be served as it is without a
//	                 script, and during an early refresh ":token", the
//	                 lease's holder; it expires then, by the server's clock
//	<prefix>{K}:v    string: the key's version, the seq of its last invalidation
//	<prefix>{K}:l    string: the lease, "token:expiry" (store clock, µs)
//	<prefix>{T}:t    string: tag T's versions, "h:s": its last hard
//	                 invalidation and its last one
//	<prefix>{_}:ep   string: the epoch marker, "epoch:floor:replid" (floor
//	                 0), standalone and Sentinel
//	<prefix>{_}:seq  string: the invalidation sequence
//	<prefix>{N}:ep   string: the epoch marker of Cluster slot N (one per
//	                 slot in use), "epoch:floor:replid"
//
// Numbers are decimal, below 2^53 (and at most 16 digits), as the scripts
// write them; replid is the replication ID of the server that wrote the
// marker (empty without the failover check).
//
// K and T are escaped so that a brace in them cannot move the hash tag:
// '%', '{' and '}' become "%25", "%7B" and "%7D". In the marker names, N is
// the shortest base-36 string whose hash slot is the slot (slotTags).
type layout struct {
	prefix string
}

// esc escapes s for use inside a hash tag. The empty string becomes "%",
// which no other string escapes to, so that the tag is never empty (an
// empty tag would hash the whole key name).
func esc(s string) string {
	if s == "" {
		return "%"
	}
	if !strings.ContainsAny(s, "%{}") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			b.WriteString("%25")
		case '{':
			b.WriteString("%7B")
		case '}':
			b.WriteString("%7D")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// keyNames are the Redis keys of one cache key.
type keyNames struct {
	tag     string // the escaped hash tag
	entry   string
	fresh   string
	version string
	lease   string
	slot    uint16
}

// key returns the names of cache key k, built in one allocation.
func (l layout) key(k string) keyNames {
	t := esc(k)
	n := len(l.prefix) + len(t) + 4 // "{", "}:", the suffix
	var b strings.Builder
	b.Grow(4 * n)
	for _, suffix := range [...]byte{'e', 'f', 'v', 'l'} {
		b.WriteString(l.prefix)
		b.WriteByte('{')
		b.WriteString(t)
		b.WriteString("}:")
		b.WriteByte(suffix)
	}
	all := b.String()
	return keyNames{tag: t, entry: all[:n], fresh: all[n : 2*n], version: all[2*n : 3*n], lease: all[3*n:], slot: slotOf(t)}
}

// tagKey is the Redis key of tag T's versions.
func (l layout) tagKey(tag string) (string, uint16) {
	t := esc(tag)
	return l.prefix + "{" + t + "}:t", slotOf(t)
}

// tagKeySlot returns the slot of a Redis key the layout named: that of its
// hash tag, the part between its first '{' and the next '}'.
func tagKeySlot(k string) uint16 {
	i := strings.IndexByte(k, '{')
	j := strings.IndexByte(k[i+1:], '}')
	if i < 0 || j < 0 {
		return slotOf(k)
	}
	return slotOf(k[i+1 : i+1+j])
}

func (l layout) seq() string          { return l.prefix + "{_}:seq" }
func (l layout) globalMarker() string { return l.prefix + "{_}:ep" }
func (l layout) slotMarker(slot uint16) string {
	return l.prefix + "{" + slotTags()[slot] + "}:ep"
}

// The parsers of the small values, by the scripts' rules (int, sint,
// parsemarker and tagv in luaPrelude): anything else does not parse.

// parseNum parses what the scripts' int accepts: 1 to 16 decimal digits,
// below 2^53.
func parseNum[S string | []byte](b S) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, n < maxExact
}

// parseSnum parses what the scripts' sint accepts: parseNum's numbers,
// or one of them after a '-'.
func parseSnum[S string | []byte](b S) (int64, bool) {
	if len(b) > 0 && b[0] == '-' {
		n, ok := parseNum(b[1:])
		return -int64(n), ok
	}
	n, ok := parseNum(b)
	return int64(n), ok
}

// parseFresh parses a fresh marker, "instant" or "instant:token" (the
// holder of the early-refresh lease, see lookupScript).
func parseFresh(b []byte) (until int64, tok []byte, ok bool) {
	if i := indexColon(b); i >= 0 {
		tok = b[i+1:]
		if len(tok) == 0 || len(tok) > 20 {
			return 0, nil, false
		}
		for _, c := range tok {
			if c < '0' || c > '9' {
				return 0, nil, false
			}
		}
		b = b[:i]
	}
	until, ok = parseSnum(b)
	return until, tok, ok
}

// parseMarker parses an epoch marker, "epoch:floor:replid", the replid
// being letters and digits (possibly none).
func parseMarker(b []byte) (epoch, floor uint64, rid []byte, ok bool) {
	i := indexColon(b)
	if i < 0 {
		return 0, 0, nil, false
	}
	j := indexColon(b[i+1:])
	if j < 0 {
		return 0, 0, nil, false
	}
	j += i + 1
	epoch, ok1 := parseNum(b[:i])
	floor, ok2 := parseNum(b[i+1 : j])
	rid = b[j+1:]
	for _, c := range rid {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return 0, 0, nil, false
		}
	}
	return epoch, floor, rid, ok1 && ok2
}

// parseTagVersions parses a tag's versions, "h:s".
func parseTagVersions(b []byte) (hard, any uint64, ok bool) {
	i := indexColon(b)
	if i < 0 {
		return 0, 0, false
	}
	hard, ok1 := parseNum(b[:i])
	any, ok2 := parseNum(b[i+1:])
	return hard, any, ok1 && ok2
}

func indexColon(b []byte) int {
	for i, c := range b {
		if c == ':' {
			return i
		}
	}
	return -1
}

// encodeList writes strings as "len:bytes" one after the other, a form the
// scripts can split without a separator that the strings might contain.
func encodeList(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	n := 0
	for _, s := range ss {
		n += len(s) + 4
	}
	b := make([]byte, 0, n)
	for _, s := range ss {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	return string(b)
}

// decodeList reverses encodeList; ok is false for what the scripts' split
// would refuse.
func decodeList(s string) (out []string, ok bool) {
	if !validList([]byte(s)) {
		return nil, false
	}
	return decodeTags([]byte(s)), true
}

// Cluster hash slots: CRC16-CCITT (XModem) of the hash tag, modulo 16384,
// as in the Redis Cluster specification.

const numSlots = 16384

var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

func crc16(s string) uint16 {
	var c uint16
	for i := 0; i < len(s); i++ {
		c = c<<8 ^ crcTable[byte(c>>8)^s[i]]
	}
	return c
}

// slotOf returns the slot of a key whose hash tag is tag.
func slotOf(tag string) uint16 { return crc16(tag) % numSlots }

// slotTags maps every slot to the first base-36 string (0, 1, …, z, 10, …)
// that hashes to it: the hash tag of the slot's epoch marker. It is part of
// the layout: every process computes the same table.
var slotTags = sync.OnceValue(func() *[numSlots]string {
	var t [numSlots]string
	left := numSlots
	for i := int64(0); left > 0; i++ {
		s := strconv.FormatInt(i, 36)
		if sl := slotOf(s); t[sl] == "" {
			t[sl] = s
			left--
		}
	}
	return &t
})
