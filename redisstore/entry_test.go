package redisstore

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
	"time"
)

// buildEntry builds a whole entry as the client and the fill script
// together write one.
func buildEntry(negative bool, epoch, guard uint64, lead, load int64, q uint64, c, f, s, x int64, tags, tk string, value []byte) []byte {
	b := appendEntryHead(nil, negative, epoch, guard, lead, load)
	b = appendEntryTimes(b, q, c, f, s, x)
	return appendEntryTail(b, tags, tk, value)
}

func TestParseEntry(t *testing.T) {
	tags := encodeList([]string{"a", "b:c"})
	tk := encodeList([]string{"p:{a}:t", "p:{b:c}:t"})
	b := buildEntry(false, 7, 100, 3_000_000, 1234, 101, -5, 60_000_000, 120_000_000, 90_000_000, tags, tk, []byte("value"))
	v, ok := parseEntry(b)
	if !ok {
		t.Fatal("a well-formed entry does not parse")
	}
	want := entryView{flags: 0, epoch: 7, guard: 100, q: 101, lead: 3_000_000, load: 1234, created: -5,
		fresh: 60_000_000, staleEnd: 120_000_000, errorEnd: 90_000_000}
	got := v
	got.tags, got.tagKeys, got.value = nil, nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parsed %+v, want %+v", got, want)
	}
	if string(v.tags) != tags || string(v.tagKeys) != tk || string(v.value) != "value" {
		t.Fatalf("lists %q %q, value %q", v.tags, v.tagKeys, v.value)
	}
	e := v.storeEntry(decodeTags(v.tags))
	if e.Negative || e.Ticket.Epoch != 7 || e.Ticket.Seq != 101 || len(e.Tags) != 2 || e.Tags[1] != "b:c" ||
		!e.FreshUntil.Equal(time.UnixMicro(60_000_000)) || !e.RefreshAt.Equal(time.UnixMicro(57_000_000)) ||
		e.LoadDuration != 1234 || string(e.Value) != "value" || cap(e.Value) != len(e.Value) {
		t.Fatalf("store entry %+v", e)
	}

	neg, ok := parseEntry(buildEntry(true, 1, 2, 0, 0, 2, 0, 0, 0, 0, "", "", nil))
	if !ok || !neg.negative() {
		t.Fatal("a negative entry does not parse")
	}
	if e := neg.storeEntry(nil); !e.Negative || e.Value != nil || !e.RefreshAt.IsZero() {
		t.Fatalf("negative store entry %+v", e)
	}
	empty, _ := parseEntry(buildEntry(false, 1, 2, 0, 0, 2, 0, 0, 0, 0, "", "", nil))
	if e := empty.storeEntry(nil); e.Value == nil || len(e.Value) != 0 {
		t.Fatalf("an empty value must be non-nil: %+v", e)
	}
}

func TestParseEntryRejects(t *testing.T) {
	good := func() []byte {
		return buildEntry(false, 7, 100, 0, 0, 101, 1, 2, 3, 4, encodeList([]string{"a"}), encodeList([]string{"p:{a}:t"}), []byte("v"))
	}
	put := func(off int, v uint64) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint64(b[off:], v); return b }
	}
	for _, c := range []struct {
		name string
		edit func([]byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"magic", func(b []byte) []byte { b[1] = 'd'; return b }},
		{"format", func(b []byte) []byte { b[2] = 2; return b }},
		{"flags", func(b []byte) []byte { b[offFlags] = 4; return b }},
		{"epoch 2^53", put(offEpoch, 1<<53)},
		{"guard negative", put(offGuard, 1<<64-1)},
		{"lead negative", put(offLead, 1<<64-1)},
		{"load 2^53", put(offLoad, 1<<53)},
		{"q 2^53", put(offQ, 1<<53)},
		{"created -2^53", put(offCreated, -(1<<53)&(1<<64-1))},
		{"fresh 2^53", put(offFresh, 1<<53)},
		{"stale 2^53", put(offStale, 1<<53)},
		{"error 2^53", put(offError, 1<<53)},
		{"truncated head", func(b []byte) []byte { return b[:entryHead] }},
		{"tag list too long", func(b []byte) []byte { binary.BigEndian.PutUint32(b[entryHead:], 1000); return b }},
		{"tag list bad", func(b []byte) []byte { b[entryHead+4] = 'x'; return b }},
		{"tag list signed", func(b []byte) []byte {
			return appendEntryTail(b[:entryHead], "+1:a", encodeList([]string{"p:{a}:t"}), []byte("v"))
		}},
		{"tag-key list cut", func(b []byte) []byte { return b[:entryHead+4+3+2] }},
		{"negative with a value", func(b []byte) []byte { b[offFlags] = entryNegative; return b }},
	} {
		if _, ok := parseEntry(c.edit(good())); ok {
			t.Errorf("%s: parses", c.name)
		}
	}
	if _, ok := parseEntry(good()); !ok {
		t.Fatal("the good entry does not parse")
	}
}

// FuzzParseEntry: parsing never panics, and what parses is what the
// layout writes: built again from its fields, it is the same bytes.
func FuzzParseEntry(f *testing.F) {
	f.Add(buildEntry(false, 7, 100, 5, 6, 101, 1, 2, 3, 4, encodeList([]string{"a"}), encodeList([]string{"p:{a}:t"}), []byte("v")))
	f.Add(buildEntry(true, 1, 2, 0, 0, 2, -1, -2, -3, -4, "", "", nil))
	f.Add([]byte("pr\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, ok := parseEntry(b)
		if !ok {
			return
		}
		again := appendEntryHead(nil, v.negative(), v.epoch, v.guard, v.lead, int64(v.load))
		again[offFlags] = v.flags
		again = appendEntryTimes(again, v.q, v.created, v.fresh, v.staleEnd, v.errorEnd)
		again = appendEntryTail(again, string(v.tags), string(v.tagKeys), v.value)
		if !bytes.Equal(again, b) {
			t.Fatalf("parsed %+v from %x, which builds %x", v, b, again)
		}
		tags := decodeTags(v.tags)
		if l, ok := decodeList(encodeList(tags)); !ok || len(l) != len(tags) {
			t.Fatalf("tags %q decode to %q, which do not encode back", v.tags, tags)
		}
	})
}

func TestValidList(t *testing.T) {
	for s, want := range map[string]bool{
		"": true, "1:a": true, "1:a2:bc": true, "0:": true, "01:a": true, "3:a:b": true,
		"1:": false, ":a": false, "a": false, "1a": false, "2:a": false, "+1:a": false, "-1:a": false,
		"1:a1": false, "99999999999999999999:a": false, "1 :a": false,
	} {
		if got := validList([]byte(s)); got != want {
			t.Errorf("validList(%q) = %v, want %v", s, got, want)
		}
		if got, ok := decodeList(s); ok != want || ok && encodeList(got) != s && s != "01:a" {
			t.Errorf("decodeList(%q) = %q, %v", s, got, ok)
		}
	}
}

func TestParseSmall(t *testing.T) {
	for s, want := range map[string]bool{
		"0": true, "9007199254740991": true, "0000000000000001": true,
		"": false, "9007199254740992": false, "00000000000000001": false, "-1": false, "+1": false, "1.0": false, " 1": false,
	} {
		if _, ok := parseNum(s); ok != want {
			t.Errorf("parseNum(%q) ok = %v, want %v", s, ok, want)
		}
	}
	for s, want := range map[string]int64{"-5": -5, "5": 5, "-0": 0} {
		if n, ok := parseSnum(s); !ok || n != want {
			t.Errorf("parseSnum(%q) = %d, %v", s, n, ok)
		}
	}
	for _, s := range []string{"--5", "-", "-9007199254740992", "5-"} {
		if _, ok := parseSnum(s); ok {
			t.Errorf("parseSnum(%q) parses", s)
		}
	}
	type marker struct {
		epoch, floor uint64
		rid          string
		ok           bool
	}
	for s, want := range map[string]marker{
		"7:0:":          {7, 0, "", true},
		"7:3:abc09Z":    {7, 3, "abc09Z", true},
		"7:0":           {},
		"x:0:":          {},
		"7:x:":          {},
		"7:0:ab:c":      {},
		"7:0:ab-c":      {},
		":0:":           {},
		"7::":           {},
		"7:0:\u00e9rid": {},
	} {
		e, f, r, ok := parseMarker([]byte(s))
		if got := (marker{e, f, string(r), ok}); ok != want.ok || ok && got != want {
			t.Errorf("parseMarker(%q) = %+v, want %+v", s, got, want)
		}
	}
	for s, want := range map[string]bool{"1:2": true, "0:0": true, "1:": false, ":2": false, "1:2:3": false, "1": false, "a:1": false} {
		if _, _, ok := parseTagVersions([]byte(s)); ok != want {
			t.Errorf("parseTagVersions(%q) ok = %v, want %v", s, ok, want)
		}
	}
	for s, want := range map[string]bool{
		"5": true, "-5": true, "5:12": true, "5:" + strings.Repeat("9", 20): true,
		"5:": false, "5:" + strings.Repeat("9", 21): false, "5:x": false, "x": false, ":5": false, "5:1:2": false,
	} {
		if _, _, ok := parseFresh([]byte(s)); ok != want {
			t.Errorf("parseFresh(%q) ok = %v, want %v", s, ok, want)
		}
	}
}

func TestReadArray(t *testing.T) {
	type elem struct {
		v   string
		nil bool
	}
	for _, c := range []struct {
		raw  string
		want []elem
		ok   bool
	}{
		{"*0\r\n", nil, true},
		{"*3\r\n$1\r\na\r\n$-1\r\n$0\r\n\r\n", []elem{{v: "a"}, {nil: true}, {}}, true},
		{"*2\r\n_\r\n$3\r\nb\r\n\r\n", []elem{{nil: true}, {v: "b\r\n"}}, true},
		{"-MOVED 1 127.0.0.1:1\r\n", nil, false},
		{"*1\r\n:5\r\n", nil, false},
		{"*1\r\n$5\r\nab\r\n", nil, false},
		{"*1\r\n$-2\r\n", nil, false},
		{"*2\r\n$1\r\na\r\n", nil, false},
		{"*1\r\n$1\r\na\r\nextra", nil, false},
		{"*-1\r\n", nil, false},
		{"*1\r\n>2\r\n", nil, false},
	} {
		a, ok := readArray([]byte(c.raw))
		var got []elem
		for ok && a.n > 0 {
			var v []byte
			if v, ok = a.next(); ok {
				got = append(got, elem{v: string(v), nil: v == nil})
			}
		}
		ok = ok && a.done()
		if ok != c.ok || ok && len(got) != len(c.want) {
			t.Errorf("%q: %v %+v, want %v %+v", c.raw, ok, got, c.ok, c.want)
			continue
		}
		for i := range got {
			if ok && got[i] != c.want[i] {
				t.Errorf("%q: element %d %+v, want %+v", c.raw, i, got[i], c.want[i])
			}
		}
	}
}

// FuzzReadArray: reading any reply never panics.
func FuzzReadArray(f *testing.F) {
	f.Add([]byte("*3\r\n$1\r\na\r\n$-1\r\n_\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := readArray(b)
		for ok && a.n > 0 {
			_, ok = a.next()
		}
	})
}
