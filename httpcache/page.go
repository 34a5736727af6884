package httpcache

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unsafe"
)

// A Page is a stored response.
type Page struct {
	// Status is the response's status code.
	Status int
	// Header holds the response's header, without hop-by-hop fields, Date,
	// Age and Content-Length (set again on each response).
	Header http.Header
	// Body is the response's body.
	Body []byte

	// url is the request's URL as keyed: path and filtered query.
	url string
	// vary lists the request headers the response varies on (canonical,
	// sorted), and varyValues the request's values of each, for a request
	// to check that the page is its own.
	vary, varyValues []string
}

// clone returns a copy of p that PostProcessAlways may change.
func (p *Page) clone() *Page {
	c := *p
	c.Header = p.Header.Clone()
	c.Body = slices.Clone(p.Body)
	return &c
}

// unstored are the response header fields a page does not keep: hop-by-hop
// fields, and those set again on each response.
var unstored = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Date", "Age", "Content-Length", "Cache-Status",
}

// storedHeader returns the fields of h a page keeps.
func storedHeader(h http.Header) http.Header {
	out := h.Clone()
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			out.Del(strings.TrimSpace(name))
		}
	}
	for _, k := range unstored {
		out.Del(k)
	}
	return out
}

// etagOf returns a strong ETag derived from body.
func etagOf(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
}

// pageCodec encodes pages compactly: a page is mostly its body, which JSON
// would turn into base64.
type pageCodec struct{}

const pageFormat = 1

var errPageFormat = errors.New("httpcache: not a page of this format")

func (pageCodec) Marshal(v any) ([]byte, error) {
	var p *Page
	switch x := v.(type) {
	case Page:
		p = &x
	case *Page:
		p = x
	default:
		return nil, fmt.Errorf("httpcache: cannot encode %T", v)
	}
	n := 16 + len(p.Body) + len(p.url)
	for k, vs := range p.Header {
		n += len(k) + 4
		for _, s := range vs {
			n += len(s) + 4
		}
	}
	b := make([]byte, 0, n)
	b = append(b, pageFormat)
	b = binary.AppendUvarint(b, uint64(p.Status))
	b = appendString(b, p.url)
	b = binary.AppendUvarint(b, uint64(len(p.Header)))
	keys := make([]string, 0, len(p.Header))
	for k := range p.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendString(b, k)
		b = appendStrings(b, p.Header[k])
	}
	b = appendStrings(b, p.vary)
	b = appendStrings(b, p.varyValues)
	b = appendString(b, string(p.Body))
	return b, nil
}

func (pageCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*Page)
	if !ok {
		return fmt.Errorf("httpcache: cannot decode into %T", v)
	}
	d := decoder{b: data}
	if d.byte() != pageFormat {
		return errPageFormat
	}
	var q Page
	q.Status = int(d.uvarint())
	q.url = d.string()
	nh := d.uvarint()
	if nh > uint64(len(d.b)) {
		return errPageFormat
	}
	if nh > 0 {
		q.Header = make(http.Header, nh)
	}
	for range nh {
		k := d.string()
		q.Header[k] = d.strings()
	}
	q.vary = d.strings()
	q.varyValues = d.strings()
	q.Body = d.bytes() // the store's copy: the page may keep it
	if d.bad || len(d.b) != 0 || len(q.vary) != len(q.varyValues) {
		return errPageFormat
	}
	if q.Header == nil {
		q.Header = http.Header{}
	}
	*p = q
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// decoder reads what pageCodec wrote; bad is set, and zero values read,
// once the bytes run out or do not parse.
type decoder struct {
	b    []byte
	bad  bool
	pool []string // backs the string slices decoded
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad = true
		d.b = nil
		return ""
	}
	// The bytes are the store's copy, which nothing else holds or
	// changes: the page's strings share them instead of copying each.
	s := unsafe.String(unsafe.SliceData(d.b), int(n))
	d.b = d.b[n:]
	return s
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad = true
		d.b = nil
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

func (d *decoder) strings() []string {
	n := d.uvarint()
	if n == 0 || n > uint64(len(d.b)) {
		if n != 0 {
			d.bad = true
		}
		return nil
	}
	if uint64(cap(d.pool)-len(d.pool)) < n {
		d.pool = make([]string, 0, max(n, 16))
	}
	start := len(d.pool)
	for range n {
		d.pool = append(d.pool, d.string())
	}
	return d.pool[start:len(d.pool):len(d.pool)]
}
