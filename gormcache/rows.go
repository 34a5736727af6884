package gormcache

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sync"
	"time"
)

// A rowSet is what a cached query keeps: the rows the database returned,
// as the driver's values, not the destination they were scanned into.
// Every caller of a coalesced load has its own Statement.Dest, of any type
// the query allows; each scans the same rows into its own through GORM's
// own Scan (see replay), so a hit fills Dest, sets RowsAffected and runs
// AfterFind exactly as the database's rows would.
//
// A rowSet is shared by every caller it is served to (the Loader's hot tier
// keeps it decoded): nothing writes to it after capture.
type rowSet struct {
	Columns []column
	Rows    [][]any
}

// A column is a result column's name and what its driver reported of it.
type column struct {
	Name string
	// DBType is the driver's DatabaseTypeName.
	DBType string
	// ScanType indexes scanTypes: the Go type the driver suggested for
	// scanning the column, kept when it is one of the standard ones (GORM
	// reads it when it scans into maps without a model).
	ScanType uint8
}

// scanTypes are the scan types a rowSet can carry; index 0 is "no
// suggestion" (any).
var scanTypes = []reflect.Type{
	reflect.TypeFor[any](),
	reflect.TypeFor[bool](),
	reflect.TypeFor[int8](), reflect.TypeFor[int16](), reflect.TypeFor[int32](), reflect.TypeFor[int64](), reflect.TypeFor[int](),
	reflect.TypeFor[uint8](), reflect.TypeFor[uint16](), reflect.TypeFor[uint32](), reflect.TypeFor[uint64](), reflect.TypeFor[uint](),
	reflect.TypeFor[float32](), reflect.TypeFor[float64](),
	reflect.TypeFor[string](), reflect.TypeFor[[]byte](), reflect.TypeFor[time.Time](), reflect.TypeFor[sql.RawBytes](),
	reflect.TypeFor[sql.NullBool](), reflect.TypeFor[sql.NullByte](), reflect.TypeFor[sql.NullInt16](), reflect.TypeFor[sql.NullInt32](),
	reflect.TypeFor[sql.NullInt64](), reflect.TypeFor[sql.NullFloat64](), reflect.TypeFor[sql.NullString](), reflect.TypeFor[sql.NullTime](),
}

func scanTypeIndex(t reflect.Type) uint8 {
	for i, st := range scanTypes {
		if st == t {
			return uint8(i)
		}
	}
	return 0
}

// errUnsupportedValue is returned by capture for a driver value of a type
// outside driver.Value's standard set, which the codec cannot encode.
var errUnsupportedValue = errors.New("gormcache: a driver value of an unsupported type")

// capture reads every row of rows as driver values. It reports whether the
// values are all of driver.Value's standard types (nil, int64, float64, bool,
// []byte, string, time.Time): only such a rowSet can be stored.
func capture(rows *sql.Rows) (rs rowSet, storable bool, err error) {
	names, err := rows.Columns()
	if err != nil {
		return rowSet{}, false, err
	}
	rs.Columns = make([]column, len(names))
	for i, n := range names {
		rs.Columns[i].Name = n
	}
	if types, err := rows.ColumnTypes(); err == nil && len(types) == len(names) {
		for i, ct := range types {
			rs.Columns[i].DBType = ct.DatabaseTypeName()
			rs.Columns[i].ScanType = scanTypeIndex(ct.ScanType())
		}
	}
	storable = true
	ptrs := make([]any, len(names))
	for rows.Next() {
		// *any, not *driver.Value: database/sql stores a NULL and copies
		// []byte only into the former.
		row := make([]any, len(names))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return rowSet{}, false, err
		}
		for _, v := range row {
			if !standardValue(v) {
				storable = false
			}
		}
		rs.Rows = append(rs.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return rowSet{}, false, err
	}
	return rs, storable, nil
}

func standardValue(v any) bool {
	switch v.(type) {
	case nil, int64, float64, bool, []byte, string, time.Time:
		return true
	}
	return false
}

// replay returns rows that yield rs through database/sql, so that GORM's
// Scan (and database/sql's conversions into each destination type) treat
// them as the database's own. The caller closes them.
func replay(rs *rowSet) (*sql.Rows, error) {
	return replayDB().QueryContext(context.Background(), "", rs)
}

// replayDB is a database/sql handle on replayConnector. It holds no
// resource but its connection opener goroutine, and is made once.
var replayDB = sync.OnceValue(func() *sql.DB {
	db := sql.OpenDB(replayConnector{})
	db.SetMaxIdleConns(64)
	return db
})

// replayConnector, replayConn and replayRows are a database/sql driver
// whose only query returns the rowSet it is given as its argument.
type replayConnector struct{}

func (replayConnector) Connect(context.Context) (driver.Conn, error) { return replayConn{}, nil }
func (replayConnector) Driver() driver.Driver                        { return replayDriver{} }

type replayDriver struct{}

func (replayDriver) Open(string) (driver.Conn, error) { return replayConn{}, nil }

type replayConn struct{}

var errReplayOnly = errors.New("gormcache: the replay connection only replays rows")

func (replayConn) Prepare(string) (driver.Stmt, error) { return nil, errReplayOnly }
func (replayConn) Close() error                        { return nil }
func (replayConn) Begin() (driver.Tx, error)           { return nil, errReplayOnly }

// CheckNamedValue lets the *rowSet argument through untouched.
func (replayConn) CheckNamedValue(nv *driver.NamedValue) error {
	if _, ok := nv.Value.(*rowSet); ok {
		return nil
	}
	return errReplayOnly
}

func (replayConn) QueryContext(_ context.Context, _ string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) != 1 {
		return nil, errReplayOnly
	}
	rs, ok := args[0].Value.(*rowSet)
	if !ok {
		return nil, errReplayOnly
	}
	return &replayRows{rs: rs}, nil
}

type replayRows struct {
	rs   *rowSet
	next int
}

func (r *replayRows) Columns() []string {
	names := make([]string, len(r.rs.Columns))
	for i, c := range r.rs.Columns {
		names[i] = c.Name
	}
	return names
}

func (r *replayRows) Close() error { return nil }

func (r *replayRows) Next(dest []driver.Value) error {
	if r.next >= len(r.rs.Rows) {
		return io.EOF
	}
	for i, v := range r.rs.Rows[r.next] {
		dest[i] = v
	}
	r.next++
	return nil
}

func (r *replayRows) ColumnTypeScanType(i int) reflect.Type {
	if t := int(r.rs.Columns[i].ScanType); t < len(scanTypes) {
		return scanTypes[t]
	}
	return scanTypes[0]
}

func (r *replayRows) ColumnTypeDatabaseTypeName(i int) string { return r.rs.Columns[i].DBType }

// rowCodec is the paddock.Codec of rowSets: a compact binary form that keeps
// each value's driver type (JSON would turn int64 into float64 and []byte
// into a string).
//
//	version byte (1)
//	columns: uvarint n, then n × (name, dbtype: uvarint length + bytes; scantype byte)
//	rows: uvarint n, then n × columns × (kind byte, payload)
//
// Payloads: int64 as a varint, float64 as 8 bytes of its bits, strings and
// []byte as uvarint length + bytes, time.Time as its MarshalBinary form with a
// uvarint length; nil, false and true have none.
type rowCodec struct{}

const rowCodecVersion = 1

const (
	kindNil byte = iota
	kindInt
	kindFloat
	kindFalse
	kindTrue
	kindString
	kindBytes
	kindTime
)

func (rowCodec) Marshal(v any) ([]byte, error) {
	var rs *rowSet
	switch v := v.(type) {
	case rowSet:
		rs = &v
	case *rowSet:
		rs = v
	default:
		return nil, fmt.Errorf("gormcache: rowCodec cannot encode %T", v)
	}
	b := []byte{rowCodecVersion}
	b = binary.AppendUvarint(b, uint64(len(rs.Columns)))
	for _, c := range rs.Columns {
		b = appendString(b, c.Name)
		b = appendString(b, c.DBType)
		b = append(b, c.ScanType)
	}
	b = binary.AppendUvarint(b, uint64(len(rs.Rows)))
	for _, row := range rs.Rows {
		if len(row) != len(rs.Columns) {
			return nil, errors.New("gormcache: a row of the wrong width")
		}
		for _, v := range row {
			switch v := v.(type) {
			case nil:
				b = append(b, kindNil)
			case int64:
				b = binary.AppendVarint(append(b, kindInt), v)
			case float64:
				b = binary.LittleEndian.AppendUint64(append(b, kindFloat), math.Float64bits(v))
			case bool:
				if v {
					b = append(b, kindTrue)
				} else {
					b = append(b, kindFalse)
				}
			case string:
				b = appendString(append(b, kindString), v)
			case []byte:
				b = appendString(append(b, kindBytes), string(v))
			case time.Time:
				t, err := v.MarshalBinary()
				if err != nil {
					return nil, err
				}
				b = appendString(append(b, kindTime), string(t))
			default:
				return nil, fmt.Errorf("%w: %T", errUnsupportedValue, v)
			}
		}
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

var errCorruptRows = errors.New("gormcache: corrupt row data")

func (rowCodec) Unmarshal(data []byte, v any) error {
	out, ok := v.(*rowSet)
	if !ok {
		return fmt.Errorf("gormcache: rowCodec cannot decode into %T", v)
	}
	d := decoder{b: data}
	if d.byte() != rowCodecVersion {
		return errCorruptRows
	}
	var rs rowSet
	// Every column and cell takes at least one byte: a count larger than
	// the bytes left is corrupt, and bounds the allocations.
	nc := d.count()
	rs.Columns = make([]column, nc)
	for i := range rs.Columns {
		rs.Columns[i].Name = d.string()
		rs.Columns[i].DBType = d.string()
		rs.Columns[i].ScanType = d.byte()
		if int(rs.Columns[i].ScanType) >= len(scanTypes) {
			d.fail()
		}
	}
	nr := d.count()
	if nc == 0 && nr > 0 {
		d.fail()
	}
	if d.err == nil && nr > 0 {
		rs.Rows = make([][]any, 0, nr)
	}
	for range nr {
		if d.err != nil {
			break
		}
		row := make([]any, nc)
		for j := range row {
			switch d.byte() {
			case kindNil:
			case kindInt:
				row[j] = d.varint()
			case kindFloat:
				row[j] = math.Float64frombits(d.uint64())
			case kindFalse:
				row[j] = false
			case kindTrue:
				row[j] = true
			case kindString:
				row[j] = d.string()
			case kindBytes:
				row[j] = []byte(d.string())
			case kindTime:
				var t time.Time
				if err := t.UnmarshalBinary([]byte(d.string())); err != nil {
					d.fail()
				}
				row[j] = t
			default:
				d.fail()
			}
		}
		rs.Rows = append(rs.Rows, row)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	if d.err != nil {
		return d.err
	}
	*out = rs
	return nil
}

// decoder reads rowCodec's form; its first error sticks and every later
// read returns zero.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorruptRows
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// count reads a count of items that take at least one byte each.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
