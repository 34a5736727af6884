package httpcache

import (
	"net/http"
	"reflect"
	"testing"
)

func TestPageCodecRoundTrip(t *testing.T) {
	for _, p := range []Page{
		{Status: 200, Header: http.Header{}},
		{Status: 404, Header: http.Header{"Content-Type": {"text/html"}, "X-Many": {"a", "b", ""}}, Body: []byte("<h1>gone</h1>"),
			url: "/a?b=c", vary: []string{"Accept-Language", "X-Theme"}, varyValues: []string{"en", ""}},
	} {
		b, err := pageCodec{}.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var q Page
		if err := (pageCodec{}).Unmarshal(b, &q); err != nil {
			t.Fatal(err)
		}
		if p.Body == nil {
			p.Body = []byte{}
		}
		if !reflect.DeepEqual(p, q) {
			t.Errorf("round trip: %#v, want %#v", q, p)
		}
	}
}

// Bytes that are not a page decode as an error, never a panic; a page
// that decodes encodes to the same bytes.
func FuzzPageCodec(f *testing.F) {
	b, _ := pageCodec{}.Marshal(Page{Status: 200, Header: http.Header{"A": {"b"}}, Body: []byte("x"), url: "/", vary: []string{"V"}, varyValues: []string{"1"}})
	f.Add(b)
	f.Add([]byte{pageFormat})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Page
		if err := (pageCodec{}).Unmarshal(data, &p); err != nil {
			return
		}
		again, err := pageCodec{}.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var q Page
		if err := (pageCodec{}).Unmarshal(again, &q); err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("re-encoded page differs: %v", err)
		}
	})
}
