package paddock

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"sync"
	"unsafe"
)

// A Codec turns values into bytes and back. Values of type []byte and
// string are stored as they are unless a Codec is set; every other type
// uses [JSON] by default.
//
// Why JSON by default: for the small structs a cache mostly holds it
// encodes and decodes faster than encoding/gob, whose per-stream type
// descriptors dominate single-value encodes (see BenchmarkCodec), and its
// bytes stay readable with redis-cli. Use [Gob] for values JSON cannot hold
// (interfaces with registered types, non-string map keys of some kinds).
type Codec interface {
	// Marshal encodes v.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into the value v points to.
	Unmarshal(data []byte, v any) error
}

// JSON is the [Codec] of encoding/json.
var JSON Codec = jsonCodec{}

// Gob is the [Codec] of encoding/gob: one self-describing stream per value.
var Gob Codec = gobCodec{}

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

type gobCodec struct{}

func (gobCodec) Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (gobCodec) Unmarshal(data []byte, v any) error {
	return gob.NewDecoder(bytes.NewReader(data)).Decode(v)
}

// valueCodec encodes a Loader's values: a uvarint loader version, then the
// payload. A different version decodes as an error, so a deploy that
// changes T's shape (and bumps [Version]) never decodes the old bytes.
type valueCodec[T any] struct {
	version uint64
	codec   Codec // nil: T is []byte or string, stored as is
	raw     rawKind
}

// rawKind says which of the types stored without a codec T is.
type rawKind uint8

const (
	rawNone rawKind = iota
	rawBytes
	rawString
)

func newValueCodec[T any](version uint64, codec Codec) valueCodec[T] {
	vc := valueCodec[T]{version: version, codec: codec}
	if codec == nil {
		var zero T
		switch any(zero).(type) {
		case []byte:
			vc.raw = rawBytes
		case string:
			vc.raw = rawString
		default:
			vc.codec = JSON
		}
	}
	return vc
}

// encode returns the bytes of v.
func (vc valueCodec[T]) encode(v T) ([]byte, error) {
	p, err := vc.encodeBuf(nil, v)
	if err != nil {
		return nil, err
	}
	return *p, nil
}

// encodeBuf returns the bytes of v in buffer p, or if p is nil in one from
// encodeBufs: give it back with recycle once the store call it was made
// for has returned (a store keeps no Fill's Value after Fill returns), or
// let the collector have it.
func (vc valueCodec[T]) encodeBuf(p *[]byte, v T) (*[]byte, error) {
	if vc.codec == nil {
		switch x := any(v).(type) {
		case []byte:
			return appendRaw(p, vc.version, x), nil
		case string:
			return appendRaw(p, vc.version, x), nil
		}
	}
	payload, err := vc.codec.Marshal(v)
	if err != nil {
		return p, fmt.Errorf("paddock: encode %T: %w", v, err)
	}
	return appendRaw(p, vc.version, payload), nil
}

// appendRaw returns version's uvarint and then payload, in buffer p, or
// if p is nil in one from encodeBufs.
func appendRaw[B []byte | string](p *[]byte, version uint64, payload B) *[]byte {
	if p == nil {
		p, _ = encodeBufs.Get().(*[]byte)
	}
	if p == nil {
		p = new([]byte)
	}
	b := (*p)[:0]
	if need := binary.MaxVarintLen64 + len(payload); cap(b) < need {
		b = make([]byte, 0, need)
	}
	b = binary.AppendUvarint(b, version)
	*p = append(b, payload...)
	return p
}

// maxRecycled is the capacity of the largest buffer recycle keeps.
const maxRecycled = 64 << 10

// encodeBufs holds the buffers of encoded values that went to the store
// and came back, so that a fill allocates none for its value's bytes.
var encodeBufs sync.Pool

// recycle gives encodeBuf's buffer p back once nothing refers to its
// bytes. A nil p is not an error.
func recycle(p *[]byte) {
	if p == nil || cap(*p) > maxRecycled {
		return
	}
	*p = (*p)[:0]
	encodeBufs.Put(p)
}

func (vc valueCodec[T]) decode(data []byte) (T, error) {
	ver, n := binary.Uvarint(data)
	if n <= 0 {
		var zero T
		return zero, fmt.Errorf("%w: value header", ErrCorrupt)
	}
	if ver != vc.version {
		var zero T
		return zero, fmt.Errorf("%w: value of version %d, loader is version %d", ErrCorrupt, ver, vc.version)
	}
	if vc.codec == nil {
		return vc.decodeRaw(data[n:]), nil
	}
	return vc.decodeCodec(data[n:])
}

// decodeRaw returns payload as T, which is []byte or string. The store
// hands out its own copy of the bytes, so the value may alias them: nothing
// else holds or changes them.
func (vc valueCodec[T]) decodeRaw(payload []byte) (v T) {
	switch vc.raw {
	case rawBytes:
		v = *(*T)(unsafe.Pointer(&payload))
	case rawString:
		str := unsafe.String(unsafe.SliceData(payload), len(payload))
		v = *(*T)(unsafe.Pointer(&str))
	}
	return v
}

func (vc valueCodec[T]) decodeCodec(payload []byte) (T, error) {
	var v T
	if err := vc.codec.Unmarshal(payload, &v); err != nil {
		return v, fmt.Errorf("%w: decode %T: %v", ErrCorrupt, v, err)
	}
	return v, nil
}
