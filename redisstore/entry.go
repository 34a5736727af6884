package redisstore

import (
	"encoding/binary"
	"time"

	"github.com/paddockcache/paddock/store"
)

// The entry: one Redis string per key, <prefix>{K}:e, that the fill script
// writes and every reader parses, the lookup script in Lua and the hit
// path in Go, by the same rules.
//
//	offset  size  field
//	0       3     magic "pr" and the format, 1
//	3       1     flags: 1 negative, 2 soft-invalidated (no other bit)
//	4       8     epoch                      \
//	12      8     guard seq g                 | written by the client
//	20      8     early-refresh lead a (µs)   |
//	28      8     load duration d (ns)       /
//	36      8     ticket seq q               \
//	44      8     created c                   |
//	52      8     fresh until f               | written by the fill script
//	60      8     stale until s               | (store clock, µs)
//	68      8     error until x              /
//	76      4     length of the tag list, then the list (encodeList of the tags)
//	        4     length of the tag-key list, then the list (encodeList of the
//	              Redis keys of the tags in the key's slot: all of them standalone)
//	        rest  the value (empty for a negative entry)
//
// Numbers are big-endian int64, as Lua's struct library reads and writes
// them ('>i8'), and below 2^53 in magnitude, so that they are exact in Lua;
// epoch, g, a, d and q are not negative. The guard is the ticket that
// invalidations are compared with (the load's ticket; for a Set, the
// writer's ticket while q is the Set's own sequence number). A lead of 0
// means never due early; otherwise the entry falls due at f - a.
//
// Why not the store's envelope (store.Entry.MarshalBinary): the scripts
// stamp the instants with the server's clock and compare them on every
// lookup, and varints would have to be decoded and encoded byte by byte in
// Lua. Fixed-width fields at fixed offsets are one struct.unpack, and a
// soft invalidation is one SETRANGE of the flags byte.
const (
	entryFormat = 1

	entryNegative = 1
	entrySoft     = 2

	offFlags   = 3
	offEpoch   = 4
	offGuard   = 12
	offLead    = 20
	offLoad    = 28
	offQ       = 36
	offCreated = 44
	offFresh   = 52
	offStale   = 60
	offError   = 68
	entryHead  = 76 // the fixed part, before the lists

	maxExact = 1 << 53 // numbers the scripts keep are below it in magnitude
)

// entryView is a parsed entry. Its byte slices alias the parsed bytes.
type entryView struct {
	flags                byte
	epoch, guard, q      uint64
	lead                 int64 // µs
	load                 uint64
	created, fresh       int64  // µs
	staleEnd, errorEnd   int64  // µs
	tags, tagKeys, value []byte // the two lists as stored (encodeList), and the value
}

func (v *entryView) negative() bool { return v.flags&entryNegative != 0 }
func (v *entryView) soft() bool     { return v.flags&entrySoft != 0 }

// refreshAt is the instant (µs) at which the entry falls due for early
// refresh, and whether it ever does.
func (v *entryView) refreshAt() (int64, bool) { return v.fresh - v.lead, v.lead > 0 }

// parseEntry parses an entry under the rules the lookup script applies
// (see entry in luaPrelude), except the check of the tag keys against the
// tags, which needs the key's names (see checkTagKeys). ok is false for
// anything else.
func parseEntry(b []byte) (v entryView, ok bool) {
	if len(b) < entryHead+8 || b[0] != 'p' || b[1] != 'r' || b[2] != entryFormat || b[offFlags] > entryNegative|entrySoft {
		return v, false
	}
	v.flags = b[offFlags]
	u := func(off int) (uint64, bool) {
		n := int64(binary.BigEndian.Uint64(b[off:]))
		return uint64(n), n >= 0 && n < maxExact
	}
	s := func(off int) (int64, bool) {
		n := int64(binary.BigEndian.Uint64(b[off:]))
		return n, n > -maxExact && n < maxExact
	}
	var oks [9]bool
	var lead uint64
	v.epoch, oks[0] = u(offEpoch)
	v.guard, oks[1] = u(offGuard)
	lead, oks[2] = u(offLead)
	v.load, oks[3] = u(offLoad)
	v.q, oks[4] = u(offQ)
	v.created, oks[5] = s(offCreated)
	v.fresh, oks[6] = s(offFresh)
	v.staleEnd, oks[7] = s(offStale)
	v.errorEnd, oks[8] = s(offError)
	for _, o := range oks {
		if !o {
			return v, false
		}
	}
	v.lead = int64(lead)
	rest := b[entryHead:]
	var list [2][]byte
	for i := range list {
		if len(rest) < 4 {
			return v, false
		}
		n := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(n) > uint64(len(rest)) {
			return v, false
		}
		list[i], rest = rest[:n:n], rest[n:]
		if !validList(list[i]) {
			return v, false
		}
	}
	v.tags, v.tagKeys, v.value = list[0], list[1], rest
	if v.negative() && len(v.value) > 0 {
		return v, false
	}
	return v, true
}

// validList reports whether b is an encodeList, by the rules of the
// scripts' split: a decimal length (digits only), ':', that many bytes, and
// so on to the end.
func validList(b []byte) bool {
	for len(b) > 0 {
		n, i := 0, 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if n > len(b) {
				return false // longer than what is left, whatever follows
			}
			n = n*10 + int(b[i]-'0')
			i++
		}
		if i == 0 || i == len(b) || b[i] != ':' || n > len(b)-i-1 {
			return false
		}
		b = b[i+1+n:]
	}
	return true
}

// appendEntryHead appends the client's part of an entry's fixed fields:
// the magic, the flags and the four numbers before the ticket seq.
func appendEntryHead(b []byte, negative bool, epoch, guard uint64, lead, load int64) []byte {
	var flags byte
	if negative {
		flags = entryNegative
	}
	b = append(b, 'p', 'r', entryFormat, flags)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = binary.BigEndian.AppendUint64(b, guard)
	b = binary.BigEndian.AppendUint64(b, uint64(lead))
	return binary.BigEndian.AppendUint64(b, uint64(load))
}

// appendEntryTail appends what follows the fixed fields: the tag list, the
// tag-key list and the value, each list after its length.
func appendEntryTail(b []byte, tags, tagKeys string, value []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(tags)))
	b = append(b, tags...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(tagKeys)))
	b = append(b, tagKeys...)
	return append(b, value...)
}

// appendEntryTimes appends the fields the fill script writes, as it
// writes them (tests build whole entries with it).
func appendEntryTimes(b []byte, q uint64, created, fresh, staleEnd, errorEnd int64) []byte {
	b = binary.BigEndian.AppendUint64(b, q)
	for _, t := range [...]int64{created, fresh, staleEnd, errorEnd} {
		b = binary.BigEndian.AppendUint64(b, uint64(t))
	}
	return b
}

// storeEntry builds the store.Entry of v. tags is the decoded tag list;
// the value aliases v's bytes.
func (v *entryView) storeEntry(tags []string) *store.Entry {
	e := new(store.Entry)
	v.fillEntry(e, tags)
	return e
}

// fillEntry sets *e to the store.Entry of v, as storeEntry builds it.
func (v *entryView) fillEntry(e *store.Entry, tags []string) {
	*e = store.Entry{
		Negative:     v.negative(),
		Ticket:       store.Ticket{Epoch: v.epoch, Seq: v.q},
		Tags:         tags,
		Created:      time.UnixMicro(v.created),
		FreshUntil:   time.UnixMicro(v.fresh),
		StaleUntil:   time.UnixMicro(v.staleEnd),
		ErrorUntil:   time.UnixMicro(v.errorEnd),
		LoadDuration: time.Duration(v.load),
	}
	if at, ok := v.refreshAt(); ok {
		e.RefreshAt = time.UnixMicro(at)
	}
	switch {
	case e.Negative:
	case len(v.value) == 0:
		e.Value = []byte{}
	default:
		e.Value = v.value[:len(v.value):len(v.value)]
	}
}

// decodeTags decodes a tag list that validList accepted: one string for
// all the tags, which the tags share.
func decodeTags(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	n := 0
	for r := b; len(r) > 0; n++ {
		i, l := listItem(r)
		r = r[i+l:]
	}
	all := string(b)
	out := make([]string, 0, n)
	for off := 0; off < len(all); {
		i, l := listItem(all[off:])
		out = append(out, all[off+i:off+i+l])
		off += i + l
	}
	return out
}

// listItem returns the offset and length of the first item of a valid
// encodeList.
func listItem[S string | []byte](b S) (off, n int) {
	i := 0
	for b[i] != ':' {
		n = n*10 + int(b[i]-'0')
		i++
	}
	return i + 1, n
}
