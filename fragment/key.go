package fragment

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"
)

// A fragment's key is "name|digest|vary": the fragment's name as the
// template set calls it, 16 hex digits of the digest of its template and
// of every template it calls (see digests), and 32 hex digits of the hash
// of its vary values. The digest and the hash have fixed lengths, so a
// name that contains '|' cannot make two fragments share a key. Hashing
// the vary values bounds the key's length whatever they are (Django does
// the same with md5); 128 bits make a collision between two users' values
// out of reach.
func fragmentKey(name, digest string, vary []byte) string {
	h := sha256.Sum256(vary)
	return name + "|" + digest[:16] + "|" + hex.EncodeToString(h[:16])
}

// appendVary appends the encoding of one vary value to b: a kind byte, a
// length, the value's text. The kind keeps the string "1" and the integer
// 1 apart; the length keeps ("a", "bc") apart from ("ab", "c").
func appendVary(b []byte, v any) ([]byte, error) {
	kind, text, err := varyText(v)
	if err != nil {
		return b, err
	}
	b = append(b, kind)
	b = binary.AppendUvarint(b, uint64(len(text)))
	return append(b, text...), nil
}

func varyText(v any) (kind byte, text string, err error) {
	switch x := v.(type) {
	case nil:
		return 'n', "", nil
	case string:
		return 's', x, nil
	case time.Time:
		// Not its String: that includes the monotonic clock reading and
		// the location's name.
		return 't', x.UTC().Format(time.RFC3339Nano), nil
	case fmt.Stringer:
		if rv := reflect.ValueOf(x); rv.Kind() == reflect.Pointer && rv.IsNil() {
			return 'n', "", nil
		}
		return 's', x.String(), nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String:
		return 's', rv.String(), nil
	case reflect.Bool:
		return 'b', strconv.FormatBool(rv.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return 'i', strconv.FormatInt(rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return 'i', strconv.FormatUint(rv.Uint(), 10), nil
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			// 42.0 keys like 42: a template's arithmetic may give either.
			return 'i', strconv.FormatInt(int64(f), 10), nil
		}
		return 'f', strconv.FormatFloat(f, 'g', -1, 64), nil
	}
	return 0, "", invalid("Vary: a value of type %T has no stable text to key on; give a string, a number or an ID", v)
}
