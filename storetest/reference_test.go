package storetest_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/store"
	"github.com/paddockcache/paddock/storetest"
)

// refStore is the simplest store that keeps the contract: one mutex around
// plain maps, and a bound on values only (refMaxValue). It checks the suite
// against something other than memstore, and shows the other way to do
// soft key invalidation: an entry is stale when its key's version is newer
// than its ticket. It implements store.Batcher by looping.
type refStore struct {
	mu      sync.Mutex
	now     time.Time
	epoch   uint64
	seq     uint64
	entries map[string]store.Entry
	leases  map[string]refLease
	keyVer  map[string]uint64
	tagVer  map[string]uint64 // last invalidation, soft or hard
	tagHard map[string]uint64
	closed  bool
}

var _ store.Batcher = (*refStore)(nil)

// refMaxValue is the largest value refStore stores.
const refMaxValue = 1 << 10

type refLease struct {
	token uint64
	until time.Time
}

func newRefStore(epoch uint64) *refStore {
	s := &refStore{now: time.Date(1999, 12, 31, 23, 0, 0, 0, time.UTC)}
	s.reset(epoch)
	return s
}

func (s *refStore) reset(epoch uint64) {
	s.epoch = epoch
	s.entries = map[string]store.Entry{}
	s.leases = map[string]refLease{}
	s.keyVer = map[string]uint64{}
	s.tagVer = map[string]uint64{}
	s.tagHard = map[string]uint64{}
}

func (s *refStore) Lookup(_ context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.Lookup{}, paddock.ErrClosed
	}
	now := s.now
	res := store.Lookup{Now: now, Ticket: store.Ticket{Epoch: s.epoch, Seq: s.seq}}
	wantLease := true
	if e, ok := s.entries[key]; ok {
		hard, soft := false, s.keyVer[key] > e.Ticket.Seq
		for _, t := range e.Tags {
			hard = hard || s.tagHard[t] > e.Ticket.Seq
			soft = soft || s.tagVer[t] > e.Ticket.Seq
		}
		e.Value = slices.Clone(e.Value)
		switch {
		case hard || !now.Before(e.Expires()):
			delete(s.entries, key)
		case now.Before(e.FreshUntil) && !soft:
			res.Entry, res.State = &e, store.StateFresh
			wantLease = req.Refresh || req.Early && e.DueEarly(now)
		case now.Before(e.StaleUntil):
			res.Entry, res.State = &e, store.StateStale
		default:
			res.Entry = &e
		}
	}
	l, ok := s.leases[key]
	switch {
	case ok && now.Before(l.until) && l.token != req.Lease:
		res.Held = true
	case wantLease && req.Lease != 0:
		s.leases[key] = refLease{req.Lease, now.Add(req.LeaseTTL)}
		res.Lease = true
	}
	return res, nil
}

func (s *refStore) Fill(_ context.Context, key string, f *store.Fill) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, paddock.ErrClosed
	}
	if l, ok := s.leases[key]; ok && l.token == f.Lease {
		delete(s.leases, key)
	}
	if len(f.Value) > refMaxValue {
		if f.Set {
			// A Set that cannot be stored still replaces the key's
			// entry, as an invalidation of the key would.
			delete(s.entries, key)
			s.seq++
			s.keyVer[key] = s.seq
		}
		return false, fmt.Errorf("%w: %d bytes", paddock.ErrTooLarge, len(f.Value))
	}
	if !s.admits(key, f) {
		// A refused Set leaves no entry that predates it.
		if e, ok := s.entries[key]; ok && f.Set && e.Ticket.Epoch == f.Ticket.Epoch {
			delete(s.entries, key)
		}
		return false, nil
	}
	t := f.Ticket
	if f.Set {
		s.seq++
		t.Seq = s.seq
		s.keyVer[key] = s.seq
	}
	e := store.NewEntry(f, t, s.now)
	e.Value = slices.Clone(e.Value)
	e.Tags = slices.Clone(e.Tags)
	s.entries[key] = *e
	return true, nil
}

func (s *refStore) LookupMany(ctx context.Context, keys []string, reqs []store.LookupRequest) ([]store.Lookup, []error) {
	lks, errs := make([]store.Lookup, len(keys)), make([]error, len(keys))
	for i, k := range keys {
		lks[i], errs[i] = s.Lookup(ctx, k, reqs[i])
	}
	return lks, errs
}

func (s *refStore) FillMany(ctx context.Context, keys []string, fills []*store.Fill) ([]bool, []error) {
	ok, errs := make([]bool, len(keys)), make([]error, len(keys))
	for i, k := range keys {
		ok[i], errs[i] = s.Fill(ctx, k, fills[i])
	}
	return ok, errs
}

func (s *refStore) admits(key string, f *store.Fill) bool {
	if f.Ticket.Epoch != s.epoch || s.keyVer[key] > f.Ticket.Seq {
		return false
	}
	for _, t := range f.Tags {
		if s.tagVer[t] > f.Ticket.Seq {
			return false
		}
	}
	return true
}

func (s *refStore) Release(_ context.Context, key string, token uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return paddock.ErrClosed
	}
	if l, ok := s.leases[key]; ok && l.token == token {
		delete(s.leases, key)
	}
	return nil
}

func (s *refStore) Invalidate(_ context.Context, inv store.Invalidation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return paddock.ErrClosed
	}
	s.seq++
	for _, k := range inv.Keys {
		s.keyVer[k] = s.seq
		delete(s.leases, k) // its holder can no longer fill
		if !inv.Soft {
			delete(s.entries, k)
		}
	}
	for _, t := range inv.Tags {
		s.tagVer[t] = s.seq
		if !inv.Soft {
			s.tagHard[t] = s.seq
		}
	}
	return nil
}

func (s *refStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return paddock.ErrClosed
	}
	s.closed = true
	return nil
}

func refHarness(t *testing.T) storetest.Harness {
	s := newRefStore(1)
	return storetest.Harness{
		Store: s,
		Advance: func(d time.Duration) {
			s.mu.Lock()
			s.now = s.now.Add(d)
			s.mu.Unlock()
		},
		Flush: func() {
			s.mu.Lock()
			s.reset(s.epoch + 1)
			s.mu.Unlock()
		},
		TooLarge: refMaxValue + 1,
	}
}

func TestReference(t *testing.T) {
	storetest.Run(t, refHarness)
}

// TestReferenceBatched runs the suite through the reference store's
// Batcher.
func TestReferenceBatched(t *testing.T) {
	storetest.RunBatched(t, refHarness)
}

// plainStore hides every optional interface of the store it holds.
type plainStore struct{ store.Store }

// TestOptionalControls runs the suite without Advance, Flush, TooLarge
// and a Batcher: the subtests that need them are skipped, the others
// pass.
func TestOptionalControls(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		return storetest.Harness{Store: plainStore{newRefStore(7)}}
	})
}
