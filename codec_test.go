package paddock

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// codecArticle is the small struct a cache mostly holds.
type codecArticle struct {
	ID        int64
	Title     string
	AuthorID  int64
	Tags      []string
	Published time.Time
}

func sampleArticle() codecArticle {
	return codecArticle{
		ID:        42,
		Title:     "Paddock 1.0 released",
		AuthorID:  7,
		Tags:      []string{"go", "cache", "release"},
		Published: time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC),
	}
}

func equalArticle(a, b codecArticle) bool {
	return a.ID == b.ID && a.Title == b.Title && a.AuthorID == b.AuthorID &&
		slices.Equal(a.Tags, b.Tags) && a.Published.Equal(b.Published)
}

// codecHeader is the uvarint version header of a valueCodec.
func codecHeader(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func TestCodecDefaults(t *testing.T) {
	if c := newValueCodec[[]byte](0, nil).codec; c != nil {
		t.Errorf("[]byte: default codec %T, want none", c)
	}
	if c := newValueCodec[string](0, nil).codec; c != nil {
		t.Errorf("string: default codec %T, want none", c)
	}
	for name, c := range map[string]Codec{
		"struct":  newValueCodec[codecArticle](0, nil).codec,
		"*struct": newValueCodec[*codecArticle](0, nil).codec,
		"map":     newValueCodec[map[string]int](0, nil).codec,
		"int":     newValueCodec[int](0, nil).codec,
		"[]int":   newValueCodec[[]int](0, nil).codec,
	} {
		if c != JSON {
			t.Errorf("%s: default codec %T, want JSON", name, c)
		}
	}
	// An explicit codec wins even for []byte and string.
	if c := newValueCodec[[]byte](0, Gob).codec; c != Gob {
		t.Errorf("[]byte with Gob: codec %T, want Gob", c)
	}
}

// TestCodecPassThrough: []byte and string are stored as they are, after
// the version header.
func TestCodecPassThrough(t *testing.T) {
	for _, version := range []uint64{0, 1, 300, 1 << 63} {
		t.Run(fmt.Sprint("version=", version), func(t *testing.T) {
			payload := []byte("\x00raw {not json} \xff")

			bc := newValueCodec[[]byte](version, nil)
			b, err := bc.encode(payload)
			if err != nil {
				t.Fatal(err)
			}
			if want := append(codecHeader(version), payload...); !bytes.Equal(b, want) {
				t.Fatalf("[]byte encode = %x, want header + payload %x", b, want)
			}
			got, err := bc.decode(b)
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("[]byte decode = %q, %v; want %q", got, err, payload)
			}

			sc := newValueCodec[string](version, nil)
			b, err = sc.encode(string(payload))
			if err != nil {
				t.Fatal(err)
			}
			if want := append(codecHeader(version), payload...); !bytes.Equal(b, want) {
				t.Fatalf("string encode = %x, want header + payload %x", b, want)
			}
			s, err := sc.decode(b)
			if err != nil || s != string(payload) {
				t.Fatalf("string decode = %q, %v; want %q", s, err, payload)
			}
		})
	}
}

func TestCodecPassThroughEmpty(t *testing.T) {
	bc := newValueCodec[[]byte](0, nil)
	for _, v := range [][]byte{nil, {}} {
		b, err := bc.encode(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, codecHeader(0)) {
			t.Fatalf("encode(%#v) = %x, want just the header", v, b)
		}
		got, err := bc.decode(b)
		if err != nil || len(got) != 0 {
			t.Fatalf("decode = %q, %v; want empty", got, err)
		}
	}
	sc := newValueCodec[string](0, nil)
	b, _ := sc.encode("")
	if s, err := sc.decode(b); err != nil || s != "" {
		t.Fatalf("decode = %q, %v; want empty", s, err)
	}
}

func TestCodecStructs(t *testing.T) {
	for name, codec := range map[string]Codec{"default": nil, "json": JSON, "gob": Gob} {
		t.Run("codec="+name, func(t *testing.T) {
			vc := newValueCodec[codecArticle](3, codec)
			in := sampleArticle()
			b, err := vc.encode(in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, codecHeader(3)) {
				t.Fatalf("encoded value %x does not start with the version header", b)
			}
			out, err := vc.decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !equalArticle(in, out) {
				t.Fatalf("round trip: got %+v, want %+v", out, in)
			}
			// A pointer type round-trips too.
			pc := newValueCodec[*codecArticle](0, codec)
			if b, err = pc.encode(&in); err != nil {
				t.Fatal(err)
			}
			p, err := pc.decode(b)
			if err != nil || p == nil || !equalArticle(in, *p) {
				t.Fatalf("*T round trip: got %+v, %v", p, err)
			}
		})
	}
}

// TestCodecDefaultIsJSON: the default bytes of a struct are readable JSON
// after the header (readable with redis-cli).
func TestCodecDefaultIsJSON(t *testing.T) {
	b, err := newValueCodec[codecArticle](0, nil).encode(sampleArticle())
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"ID":42,"Title":"Paddock 1.0 released","AuthorID":7,"Tags":["go","cache","release"],"Published":"2025-03-14T15:09:26Z"}`
	if got := string(b[len(codecHeader(0)):]); got != want {
		t.Fatalf("payload = %s\nwant %s", got, want)
	}
}

// TestCodecVersion: bytes written by a loader of one version are never
// decoded by a loader of another, whatever the codec.
func TestCodecVersion(t *testing.T) {
	for name, codec := range map[string]Codec{"none": nil, "json": JSON, "gob": Gob} {
		t.Run("codec="+name, func(t *testing.T) {
			check := func(err error, what string) {
				t.Helper()
				if !errors.Is(err, ErrCorrupt) {
					t.Errorf("%s: err = %v, want ErrCorrupt", what, err)
				}
			}
			if codec == nil {
				b, _ := newValueCodec[string](1, nil).encode("v1 bytes")
				_, err := newValueCodec[string](2, nil).decode(b)
				check(err, "string v1 under v2")
				_, err = newValueCodec[string](0, nil).decode(b)
				check(err, "string v1 under v0")
				if s, err := newValueCodec[string](1, nil).decode(b); err != nil || s != "v1 bytes" {
					t.Errorf("string v1 under v1 = %q, %v", s, err)
				}
				return
			}
			b, err := newValueCodec[codecArticle](1, codec).encode(sampleArticle())
			if err != nil {
				t.Fatal(err)
			}
			_, err = newValueCodec[codecArticle](2, codec).decode(b)
			check(err, "struct v1 under v2")
			_, err = newValueCodec[codecArticle](0, codec).decode(b)
			check(err, "struct v1 under v0")
			if _, err := newValueCodec[codecArticle](1, codec).decode(b); err != nil {
				t.Errorf("struct v1 under v1: %v", err)
			}
		})
	}
}

func TestCodecGarbage(t *testing.T) {
	garbage := map[string][]byte{
		"empty":              nil,
		"bad header":         {0x80},
		"overflowing header": bytes.Repeat([]byte{0xff}, 11),
		"header only":        codecHeader(0),
		"not json":           append(codecHeader(0), "<html>"...),
		"truncated json":     append(codecHeader(0), `{"ID":42,"Title":"Pad`...),
		"wrong json type":    append(codecHeader(0), `{"ID":"forty-two"}`...),
		"json array":         append(codecHeader(0), `[1,2,3]`...),
		"json trailing":      append(codecHeader(0), `{"ID":1} {}`...),
		"binary":             append(codecHeader(0), 0xde, 0xad, 0xbe, 0xef),
	}
	for _, codec := range []Codec{JSON, Gob} {
		vc := newValueCodec[codecArticle](0, codec)
		for name, b := range garbage {
			v, err := vc.decode(b)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("%T %s: decode = %+v, %v; want ErrCorrupt", codec, name, v, err)
			}
		}
		// Every truncation of a valid value is an error, never a panic,
		// and no truncation decodes into the whole value.
		in := sampleArticle()
		b, _ := vc.encode(in)
		for n := range len(b) {
			v, err := vc.decode(b[:n:n])
			if err == nil && equalArticle(v, in) {
				t.Errorf("%T: truncation to %d of %d bytes decoded as the whole value", codec, n, len(b))
			}
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Errorf("%T: truncation to %d: err %v does not match ErrCorrupt", codec, n, err)
			}
		}
	}
	// Pass-through values have no payload to check: only the header can
	// be corrupt.
	for _, b := range [][]byte{nil, {0x80}, bytes.Repeat([]byte{0xff}, 11)} {
		if _, err := newValueCodec[[]byte](0, nil).decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("[]byte decode(%x): err = %v, want ErrCorrupt", b, err)
		}
	}
}

// TestCodecCrossCodec: bytes of one codec under another are an error, not
// a wrong value.
func TestCodecCrossCodec(t *testing.T) {
	in := sampleArticle()
	jb, _ := newValueCodec[codecArticle](0, JSON).encode(in)
	gb, _ := newValueCodec[codecArticle](0, Gob).encode(in)
	if _, err := newValueCodec[codecArticle](0, Gob).decode(jb); !errors.Is(err, ErrCorrupt) {
		t.Errorf("JSON bytes under Gob: err = %v, want ErrCorrupt", err)
	}
	if _, err := newValueCodec[codecArticle](0, JSON).decode(gb); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Gob bytes under JSON: err = %v, want ErrCorrupt", err)
	}
}

// TestCodecEncodeError: a value the codec cannot encode is an error that
// names the type, not a panic.
func TestCodecEncodeError(t *testing.T) {
	type bad struct{ C chan int }
	for _, codec := range []Codec{JSON, Gob} {
		if _, err := newValueCodec[bad](0, codec).encode(bad{C: make(chan int)}); err == nil {
			t.Errorf("%T: encoding a channel: no error", codec)
		}
	}
}

// codecShape is an interface value, which JSON cannot decode and Gob can
// (with a registered type): the documented reason to pick Gob.
type codecShape interface{ Area() float64 }

type codecSquare struct{ Side float64 }

func (s codecSquare) Area() float64 { return s.Side * s.Side }

func TestCodecGobInterfaces(t *testing.T) {
	gob.Register(codecSquare{})
	type holder struct{ S codecShape }
	in := holder{S: codecSquare{Side: 3}}
	gc := newValueCodec[holder](0, Gob)
	b, err := gc.encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := gc.decode(b)
	if err != nil || out.S == nil || out.S.Area() != 9 {
		t.Fatalf("gob interface round trip: %+v, %v", out, err)
	}
	jc := newValueCodec[holder](0, JSON)
	jb, err := jc.encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jc.decode(jb); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("json interface decode: err = %v, want ErrCorrupt", err)
	}
}

// BenchmarkCodec measures the claim in codec.go's doc that JSON encodes and
// decodes single small values faster than gob. Each op is one value, with
// the version header, as a Loader stores it.
func BenchmarkCodec(b *testing.B) {
	for _, c := range []struct {
		name  string
		codec Codec
	}{{"json", JSON}, {"gob", Gob}} {
		vc := newValueCodec[codecArticle](1, c.codec)
		in := sampleArticle()
		enc, err := vc.encode(in)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("codec="+c.name+"/op=encode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := vc.encode(in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(enc)), "bytes/value")
		})
		b.Run("codec="+c.name+"/op=decode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := vc.decode(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
