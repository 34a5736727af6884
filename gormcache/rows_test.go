package gormcache

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"time"
)

func sampleRows() rowSet {
	return rowSet{
		Columns: []column{{Name: "id", DBType: "INTEGER", ScanType: scanTypeIndex(reflect.TypeFor[int64]())}, {Name: "v"}},
		Rows: [][]any{
			{int64(1), nil},
			{int64(-7), 3.25},
			{int64(math.MaxInt64), math.Inf(-1)},
			{int64(2), true},
			{int64(3), false},
			{int64(4), "text"},
			{int64(5), []byte{0, 1, 2}},
			{int64(6), time.Date(2025, 3, 14, 9, 26, 53, 589793238, time.FixedZone("", 3600))},
		},
	}
}

func TestRowCodecRoundTrip(t *testing.T) {
	for _, rs := range []rowSet{sampleRows(), {}, {Columns: []column{{Name: "n"}}}} {
		b, err := rowCodec{}.Marshal(rs)
		if err != nil {
			t.Fatal(err)
		}
		var got rowSet
		if err := (rowCodec{}).Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Rows) != len(rs.Rows) || !reflect.DeepEqual(got.Columns, rs.Columns) && len(rs.Columns) > 0 {
			t.Fatalf("round trip: %+v, want %+v", got, rs)
		}
		for i := range rs.Rows {
			for j := range rs.Rows[i] {
				want, have := rs.Rows[i][j], got.Rows[i][j]
				if wt, ok := want.(time.Time); ok {
					if ht, ok := have.(time.Time); !ok || !ht.Equal(wt) || ht.Format(time.RFC3339Nano) != wt.Format(time.RFC3339Nano) {
						t.Errorf("row %d: %v, want %v", i, have, want)
					}
					continue
				}
				if !reflect.DeepEqual(want, have) {
					t.Errorf("row %d col %d: %#v, want %#v", i, j, have, want)
				}
			}
		}
	}
}

func TestRowCodecRejectsOtherValues(t *testing.T) {
	rs := rowSet{Columns: []column{{Name: "x"}}, Rows: [][]any{{int32(1)}}}
	if _, err := (rowCodec{}).Marshal(rs); !errors.Is(err, errUnsupportedValue) {
		t.Errorf("Marshal(int32) = %v, want errUnsupportedValue", err)
	}
}

func TestRowCodecCorruptIsAnError(t *testing.T) {
	b, err := rowCodec{}.Marshal(sampleRows())
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(b) {
		var got rowSet
		if err := (rowCodec{}).Unmarshal(b[:i], &got); err == nil {
			t.Fatalf("a prefix of %d bytes decoded", i)
		}
	}
	var got rowSet
	if err := (rowCodec{}).Unmarshal(append(b, 0), &got); err == nil {
		t.Error("trailing bytes decoded")
	}
}

func FuzzRowCodec(f *testing.F) {
	b, _ := rowCodec{}.Marshal(sampleRows())
	f.Add(b)
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var rs rowSet
		if err := (rowCodec{}).Unmarshal(data, &rs); err != nil {
			return
		}
		again, err := rowCodec{}.Marshal(rs)
		if err != nil {
			t.Fatalf("a decoded rowSet does not encode: %v", err)
		}
		var rs2 rowSet
		if err := (rowCodec{}).Unmarshal(again, &rs2); err != nil || len(rs2.Rows) != len(rs.Rows) {
			t.Fatalf("re-encoded rowSet: %v", err)
		}
	})
}
