package gormcache

import (
	"crypto/sha256"
	"database/sql/driver"
	"encoding/base64"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"
)

// queryKey is the cache key of a query: a hash of the dialect, the SQL and
// its values, each value written with its type so that 1 and "1" differ.
func queryKey(dialect, sqlText string, vars []any) string {
	h := sha256.New()
	b := make([]byte, 0, 64)
	b = strconv.AppendQuote(b, dialect)
	b = strconv.AppendQuote(b, sqlText)
	h.Write(b)
	for _, v := range vars {
		b = appendVar(b[:0], v, 0)
		h.Write(b)
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// appendVar appends one value with its type. Valuers are resolved, pointers
// followed; a value of another kind is written with %#v, which is exact for
// the values a query takes (a type that prints differently each time only
// costs hits).
func appendVar(b []byte, v any, depth int) []byte {
	if vr, ok := v.(driver.Valuer); ok && depth < 4 {
		if rv := reflect.ValueOf(v); rv.Kind() != reflect.Pointer || !rv.IsNil() {
			if dv, err := vr.Value(); err == nil {
				return appendVar(append(b, 'V'), dv, depth+1)
			}
		}
	}
	switch v := v.(type) {
	case nil:
		return append(b, 'n', ';')
	case string:
		return append(strconv.AppendQuote(append(b, 's'), v), ';')
	case []byte:
		return append(strconv.AppendQuote(append(b, 'b'), string(v)), ';')
	case bool:
		return append(strconv.AppendBool(append(b, 't'), v), ';')
	case time.Time:
		return append(v.AppendFormat(append(b, 'T'), time.RFC3339Nano), ';')
	case float64:
		return append(strconv.AppendUint(append(b, 'f'), math.Float64bits(v), 16), ';')
	case float32:
		return append(strconv.AppendUint(append(b, 'g'), uint64(math.Float32bits(v)), 16), ';')
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return append(strconv.AppendInt(append(b, 'i'), rv.Int(), 10), ';')
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return append(strconv.AppendUint(append(b, 'u'), rv.Uint(), 10), ';')
	case reflect.String:
		return append(strconv.AppendQuote(append(b, 's'), rv.String()), ';')
	case reflect.Pointer:
		if rv.IsNil() {
			return append(b, 'n', ';')
		}
		if depth < 4 {
			return appendVar(b, rv.Elem().Interface(), depth+1)
		}
	}
	return append(fmt.Appendf(append(b, 'x'), "%T%#v", v, v), ';')
}
