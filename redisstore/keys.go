package redisstore

import (
	"strconv"
	"strings"
	"sync"
)

// The key layout. Everything the store keeps for one cache key K lives
// under one hash tag, so that each of its scripts touches one Cluster slot:
//
//	<prefix>{K}:e    hash: the entry (value, ticket, windows, tags)
//	<prefix>{K}:v    string: the key's version, the seq of its last invalidation
//	<prefix>{K}:l    string: the lease, "token:expiry" (store clock, µs)
//	<prefix>{T}:t    hash: tag T's versions, s (last invalidation) and h (last hard one)
//	<prefix>{_}:ep   hash: the epoch marker and the invalidation sequence
//	                 (field n), standalone and Sentinel
//	<prefix>{_}:seq  hash: the invalidation sequence (field n), Cluster
//	<prefix>{N}:ep   hash: the epoch marker of Cluster slot N (one per slot in use)
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
	version string
	lease   string
	slot    uint16
}

func (l layout) key(k string) keyNames {
	t := esc(k)
	base := l.prefix + "{" + t + "}:"
	return keyNames{tag: t, entry: base + "e", version: base + "v", lease: base + "l", slot: slotOf(t)}
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

// decodeList reverses encodeList; ok is false for malformed input.
func decodeList(s string) (out []string, ok bool) {
	for len(s) > 0 {
		i := strings.IndexByte(s, ':')
		if i <= 0 {
			return nil, false
		}
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 || n > len(s)-i-1 {
			return nil, false
		}
		out = append(out, s[i+1:i+1+n])
		s = s[i+1+n:]
	}
	return out, true
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
