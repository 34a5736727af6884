package memcachestore

import (
	"context"
	"fmt"

	"github.com/paddockcache/paddock/store"
)

var _ store.Batcher = (*Store)(nil)

// LookupMany implements [store.Batcher]: it looks up every key as
// [Store.Lookup] does, through the same steps, with the same answer and
// error per key, and makes the steps of all keys together: the sequence is
// read once, and each round is one pipeline per server holding some of the
// keys (or their tags), the servers in parallel. A batch of warm hits
// without tags is one round trip, one more for the tags' versions; a batch
// of misses is two (the lookups, then the leases). A round trip that fails
// is the error of every key with a command in it. With len(reqs) !=
// len(keys), every key's error wraps [store.ErrInvalidOption]; after
// [Store.Close], [store.ErrClosed].
func (s *Store) LookupMany(ctx context.Context, keys []string, reqs []store.LookupRequest) ([]store.Lookup, []error) {
	lks := make([]store.Lookup, len(keys))
	if len(reqs) != len(keys) {
		return lks, each(keys, invalid("LookupMany of %d keys with %d requests", len(keys), len(reqs)))
	}
	if s.closed.Load() {
		return lks, each(keys, errClosed)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	ls := make([]*lookupOp, len(keys))
	for i, k := range keys {
		ls[i] = s.newLookup(k, reqs[i])
	}
	s.lookups(ctx, ls)
	var errs []error
	for i, l := range ls {
		lks[i] = l.res
		if l.err != nil {
			if errs == nil {
				errs = make([]error, len(keys))
			}
			lks[i] = store.Lookup{}
			errs[i] = l.err
		}
	}
	return lks, errs
}

// FillMany implements [store.Batcher]: it fills every key as [Store.Fill]
// does, through the same steps, with the same answer and error per key (a
// value too large is [store.ErrTooLarge] for its key only, a nil
// *store.Fill [store.ErrInvalidOption]), and makes the steps of all keys
// together, as LookupMany does: the check, the write and the post-write
// check, and the leases' release, each one round trip for the batch (the
// write and its check one, when the batch is on one server). A Set takes
// its own round trips for its sequence number. Failures are reported as
// by LookupMany.
func (s *Store) FillMany(ctx context.Context, keys []string, fills []*store.Fill) ([]bool, []error) {
	accepted := make([]bool, len(keys))
	if len(fills) != len(keys) {
		return accepted, each(keys, invalid("FillMany of %d keys with %d fills", len(keys), len(fills)))
	}
	if s.closed.Load() {
		return accepted, each(keys, errClosed)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	fs := make([]*fillOp, len(keys))
	for i, k := range keys {
		fs[i] = s.newFill(k, fills[i])
	}
	s.fills(ctx, fs)
	var errs []error
	for i, fo := range fs {
		accepted[i] = fo.ok
		if fo.err != nil {
			if errs == nil {
				errs = make([]error, len(keys))
			}
			errs[i] = fmt.Errorf("memcachestore: key %q: %w", keys[i], fo.err)
		}
	}
	return accepted, errs
}

// each returns err for each key.
func each(keys []string, err error) []error {
	if len(keys) == 0 {
		return nil
	}
	errs := make([]error, len(keys))
	for i := range keys {
		errs[i] = err
	}
	return errs
}
