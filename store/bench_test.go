package store

import (
	"testing"
	"time"
)

// BenchmarkEntryAppendBinary is the envelope encoding of a store's fill: a
// 1 KiB value, no tags, every window set, into a reused buffer.
func BenchmarkEntryAppendBinary(b *testing.B) {
	now := time.Now()
	f := &Fill{Value: make([]byte, 1024), TTL: time.Hour, Stale: time.Minute, StaleIfError: time.Hour, Early: time.Millisecond, LoadDuration: 40 * time.Microsecond}
	t := Ticket{Epoch: 0x9e3779b97f4a7c15, Seq: 12345}
	buf := make([]byte, 0, 2048)
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
	now := time.Now()
	f := &Fill{Value: make([]byte, 1024), TTL: time.Hour, Stale: time.Minute, StaleIfError: time.Hour, Early: time.Millisecond, LoadDuration: 40 * time.Microsecond}
	t := Ticket{Epoch: 0x9e3779b97f4a7c15, Seq: 12345}
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, _, err = AppendFillEnvelope(buf[:0], f, t, now); err != nil {
			b.Fatal(err)
		}
	}
}
