package store

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"
)

// An Entry is what a store keeps under a key: the encoded value with the
// ticket of the load that produced it, its tags and its time windows. The
// instants are readings of the store's clock.
type Entry struct {
	// Value is the encoded value; nil for a negative entry.
	Value []byte
	// Negative marks a cached "not found".
	Negative bool
	// Ticket is the ticket of the load (or Set) that wrote the entry.
	Ticket Ticket
	// Tags are the entry's tags, as given to Fill.
	Tags []string
	// Created is when the entry was written.
	Created time.Time
	// FreshUntil is when the entry stops being fresh.
	FreshUntil time.Time
	// StaleUntil is when the entry stops being servable while refreshed.
	StaleUntil time.Time
	// ErrorUntil is when the entry stops being servable after a failed
	// refresh.
	ErrorUntil time.Time
	// LoadDuration is how long the load that produced it took.
	LoadDuration time.Duration
	// RefreshAt is when the entry falls due for early refresh (see
	// [Entry.DueEarly]): FreshUntil minus the fill's Early lead, and not
	// before Created. The zero Time: never.
	RefreshAt time.Time
}

// NewEntry builds the entry that Fill f stores at now with ticket t. Stores
// use it so that every store derives the windows the same way. It is small
// enough to inline, so that a store that only encodes the entry keeps it on
// its stack.
func NewEntry(f *Fill, t Ticket, now time.Time) *Entry {
	e := new(Entry)
	e.fill(f, t, now)
	return e
}

func (e *Entry) fill(f *Fill, t Ticket, now time.Time) {
	fresh := now.Add(f.TTL)
	*e = Entry{
		Value:        f.Value,
		Negative:     f.Negative,
		Ticket:       t,
		Tags:         f.Tags,
		Created:      now,
		FreshUntil:   fresh,
		StaleUntil:   fresh.Add(f.Stale),
		ErrorUntil:   fresh.Add(f.StaleIfError),
		LoadDuration: f.LoadDuration,
	}
	if lead := min(f.Early, f.TTL); lead > 0 {
		e.RefreshAt = fresh.Add(-lead)
	}
}

// DueEarly reports whether the entry, if fresh at now (a reading of the
// store's clock), is due for early refresh: it has a RefreshAt and now has
// reached it. Stores judge a lookup's [LookupRequest].Early with it.
func (e *Entry) DueEarly(now time.Time) bool {
	return !e.RefreshAt.IsZero() && !now.Before(e.RefreshAt)
}

// Expires is the last instant at which the entry is of any use.
func (e *Entry) Expires() time.Time {
	if e.ErrorUntil.After(e.StaleUntil) {
		return e.ErrorUntil
	}
	return e.StaleUntil
}

// The envelope: how an Entry is laid out in bytes by stores that keep one
// blob per key (memstore). Changing the layout means a new envelopeFormat;
// bytes of any other format decode as ErrCorrupt, which callers count as a
// miss.
//
//	magic "pd" | format (2) | flags | uvarint epoch | uvarint seq |
//	created, fresh, stale, error, refresh: each varint seconds since the
//	Unix epoch, uvarint nanoseconds (< 1e9) |
//	uvarint load duration (ns) | uvarint ntags, then per tag uvarint len, bytes |
//	uvarint value length, value bytes
//
// Format 1 had no refresh instant (its early refresh was drawn per read):
// its bytes are a miss, and the entry is loaded again.
const (
	envelopeFormat = 2
	flagNegative   = 1 << 0
	maxTags        = 1 << 16
)

// MarshalBinary encodes e as an envelope. It implements
// [encoding.BinaryMarshaler].
func (e *Entry) MarshalBinary() ([]byte, error) {
	return e.AppendBinary(make([]byte, 0, maxEnvelope(e.Tags, e.Value)))
}

// AppendBinary appends the envelope of e to b. It implements
// [encoding.BinaryAppender].
func (e *Entry) AppendBinary(b []byte) ([]byte, error) {
	times := [...]instant{instantOf(e.Created), instantOf(e.FreshUntil), instantOf(e.StaleUntil), instantOf(e.ErrorUntil), instantOf(e.RefreshAt)}
	return appendEnvelope(b, e.Negative, e.Ticket, &times, e.LoadDuration, e.Tags, e.Value)
}

// AppendFillEnvelope appends to b the envelope of the entry that Fill f
// stores at now with ticket t, the bytes of NewEntry(f, t, now).AppendBinary(b),
// without building the entry. until is the entry's Expires, the last
// instant at which it is of any use (a store keeps no entry past it),
// also when the entry does not encode (err, from too many tags).
//
// It is for stores that encode every fill: it sums the windows as
// seconds and nanoseconds, which saves the entry and its five time.Time
// sums, a quarter of the encoding's cost.
func AppendFillEnvelope(b []byte, f *Fill, t Ticket, now time.Time) (env []byte, until time.Time, err error) {
	created := instantOf(now)
	if created.sec < -maxInstantSec || created.sec > maxInstantSec {
		// Near the ends of time.Time's range, its sums saturate: take
		// its own path.
		e := NewEntry(f, t, now)
		env, err = e.AppendBinary(b)
		return env, e.Expires(), err
	}
	fresh := created.add(f.TTL)
	times := [...]instant{created, fresh, fresh.add(f.Stale), fresh.add(f.StaleIfError), instantOf(time.Time{})}
	if lead := min(f.Early, f.TTL); lead > 0 {
		times[4] = fresh.add(-lead)
	}
	end := times[2]
	if times[3].after(end) {
		end = times[3]
	}
	env, err = appendEnvelope(b, f.Negative, t, &times, f.LoadDuration, f.Tags, f.Value)
	return env, time.Unix(end.sec, int64(end.nsec)), err
}

// appendEnvelope appends an envelope to b: of a negative entry or not,
// with ticket t, the instants created, fresh, stale, error and refresh in
// that order, the load duration, the tags and the value; more than
// maxTags tags are an error. It grows b once, to the envelope's largest
// length, and writes in place.
func appendEnvelope(b []byte, negative bool, t Ticket, times *[5]instant, ld time.Duration, tags []string, value []byte) ([]byte, error) {
	if len(tags) > maxTags {
		return nil, fmt.Errorf("paddock: entry has %d tags, more than %d", len(tags), maxTags)
	}
	var flags byte
	if negative {
		flags |= flagNegative
	}
	b = slices.Grow(b, maxEnvelope(tags, value))
	i := len(b)
	b = b[:cap(b)]
	b[i], b[i+1], b[i+2], b[i+3] = 'p', 'd', envelopeFormat, flags
	i += 4
	i = putUvarint(b, i, t.Epoch)
	i = putUvarint(b, i, t.Seq)
	for _, in := range times {
		// Seconds and nanoseconds, not UnixNano: that overflows outside
		// 1678–2262, and a TTL of centuries (or the zero time) must
		// survive the round trip.
		i = putVarint(b, i, in.sec)
		i = putUvarint(b, i, uint64(in.nsec))
	}
	i = putUvarint(b, i, uint64(max(ld, 0)))
	i = putUvarint(b, i, uint64(len(tags)))
	for _, tag := range tags {
		i = putUvarint(b, i, uint64(len(tag)))
		i += copy(b[i:], tag)
	}
	i = putUvarint(b, i, uint64(len(value)))
	i += copy(b[i:], value)
	return b[:i], nil
}

// maxEnvelope bounds the length of an envelope of tags and value: the
// magic, format and flags, fifteen varints (epoch and seq, five instants
// of two, the load duration, the tag count and the value's length), and
// the tags and value.
func maxEnvelope(tags []string, value []byte) int {
	n := 4 + 15*binary.MaxVarintLen64 + len(value)
	for _, t := range tags {
		n += binary.MaxVarintLen64 + len(t)
	}
	return n
}

// An instant is a time as Unix seconds and nanoseconds (0 ≤ nsec < 1e9),
// as the envelope holds it.
type instant struct {
	sec  int64
	nsec int32
}

// maxInstantSec bounds the Unix seconds of a now whose windows
// AppendFillEnvelope sums itself: far from where time.Time saturates,
// with room for any Duration (less than 2^34 seconds) twice over.
const maxInstantSec = 1 << 60

func instantOf(t time.Time) instant { return instant{t.Unix(), int32(t.Nanosecond())} }

// add returns in + d, summed as time.Time.Add sums: whole seconds, then
// nanoseconds with a carry.
func (in instant) add(d time.Duration) instant {
	sec := in.sec + int64(d/1e9)
	nsec := in.nsec + int32(d%1e9)
	if nsec >= 1e9 {
		sec++
		nsec -= 1e9
	} else if nsec < 0 {
		sec--
		nsec += 1e9
	}
	return instant{sec, nsec}
}

// after reports whether in is after u.
func (in instant) after(u instant) bool {
	return in.sec > u.sec || in.sec == u.sec && in.nsec > u.nsec
}

// putUvarint writes x at b[i:] as binary.PutUvarint does and returns the
// index after it. b must have room for it.
func putUvarint(b []byte, i int, x uint64) int {
	if x>>28 != 0 && x>>35 == 0 {
		// Five bytes, the length of most of the envelope's varints (the
		// seconds of an instant, most nanoseconds), written straight.
		_ = b[i+4]
		b[i] = byte(x) | 0x80
		b[i+1] = byte(x>>7) | 0x80
		b[i+2] = byte(x>>14) | 0x80
		b[i+3] = byte(x>>21) | 0x80
		b[i+4] = byte(x >> 28)
		return i + 5
	}
	for x >= 0x80 {
		b[i] = byte(x) | 0x80
		x >>= 7
		i++
	}
	b[i] = byte(x)
	return i + 1
}

// putVarint writes x at b[i:] as binary.PutVarint does (zig-zag) and
// returns the index after it.
func putVarint(b []byte, i int, x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return putUvarint(b, i, ux)
}

// UnmarshalBinary decodes an envelope into e. e.Value aliases data. Bytes
// that are not a well-formed envelope of this format give an error wrapping
// [ErrCorrupt]; it never panics. It implements [encoding.BinaryUnmarshaler].
func (e *Entry) UnmarshalBinary(data []byte) error {
	d := decoder{b: data}
	if len(data) < 4 || data[0] != 'p' || data[1] != 'd' {
		return fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if data[2] != envelopeFormat {
		return fmt.Errorf("%w: format %d, want %d", ErrCorrupt, data[2], envelopeFormat)
	}
	flags := data[3]
	if flags&^flagNegative != 0 {
		return fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, flags)
	}
	d.b = data[4:]
	var out Entry
	out.Negative = flags&flagNegative != 0
	out.Ticket.Epoch = d.uvarint()
	out.Ticket.Seq = d.uvarint()
	for _, t := range [...]*time.Time{&out.Created, &out.FreshUntil, &out.StaleUntil, &out.ErrorUntil, &out.RefreshAt} {
		sec, nsec := d.varint(), d.uvarint()
		if nsec >= 1e9 {
			d.fail("nanoseconds")
		}
		*t = time.Unix(sec, int64(nsec))
	}
	ld := d.uvarint()
	if ld > math.MaxInt64 {
		d.fail("load duration")
	}
	out.LoadDuration = time.Duration(ld)
	ntags := d.uvarint()
	if ntags > maxTags || ntags > uint64(len(d.b)) {
		d.fail("tag count")
	}
	if d.err == nil && ntags > 0 {
		out.Tags = make([]string, 0, ntags)
		for range ntags {
			out.Tags = append(out.Tags, string(d.bytes()))
			if d.err != nil {
				break
			}
		}
	}
	out.Value = d.bytes()
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return d.err
	}
	if out.Negative && len(out.Value) > 0 {
		return fmt.Errorf("%w: negative entry with a value", ErrCorrupt)
	}
	switch {
	case out.Negative:
		out.Value = nil
	case len(out.Value) == 0:
		out.Value = []byte{}
	}
	*e = out
	return nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", ErrCorrupt, what)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}
