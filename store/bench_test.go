package store

import (
	"testing"
	"time"
)

// benchFill is the fill of the envelope benchmarks: a 1 KiB value, no
// tags, every window set, with a ticket of a random-looking epoch, and the
// buffer it is encoded into, reused.
func benchFill() (*Fill, Ticket, []byte) {
	f := &Fill{Value: make([]byte, 1024), TTL: time.Hour, Stale: time.Minute, StaleIfError: time.Hour, Early: time.Millisecond, LoadDuration: 40 * time.Microsecond}
	return f, Ticket{Epoch: 0x9e3779b97f4a7c15, Seq: 12345}, make([]byte, 0, 2048)
}

// BenchmarkEntryAppendBinary is the envelope encoding of a store's fill
// through its Entry: NewEntry, then AppendBinary.
func BenchmarkEntryAppendBinary(b *testing.B) {
	f, t, buf := benchFill()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		e := NewEntry(f, t, now)
		var err error
		if buf, err = e.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendFillEnvelope is the same fill's envelope, encoded from
// the fill without the entry.
func BenchmarkAppendFillEnvelope(b *testing.B) {
	f, t, buf := benchFill()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, _, err = AppendFillEnvelope(buf[:0], f, t, now); err != nil {
			b.Fatal(err)
		}
	}
}
