package redisstore

import (
	"context"
	"fmt"

	"github.com/paddockcache/paddock/store"
)

var _ store.Batcher = (*Store)(nil)

// LookupMany implements [store.Batcher]: it looks up every key as
// [Store.Lookup] does, through the same steps, with the same answer, error
// and error text per key, and makes the steps of all keys together: each
// round is one round trip for the whole batch, a pipeline of the keys'
// calls.
//
// Standalone and Sentinel that is one round trip for the batch when every
// key is a warm hit (a pipeline of MGETs), and one more, a pipeline of
// lookup scripts, for the keys the MGETs did not answer. On Cluster each
// pipeline goes to every node holding some of the keys, in parallel: one
// round trip per node, at the same time. Keys that must load then read
// the sequence, one read for the batch. Keys whose
// entries have tags in other slots take the steps a single lookup takes
// for them, together: the read-side check of those tags (one pipeline to
// the tags' nodes), and, for an entry the check finds invalidated, the
// script again and the sequence (see the package doc). A batch takes as
// many rounds as its slowest key would alone; a slot found uninitialised
// is fenced once for the round.
//
// A call that fails is the error of its key; a round trip that fails (a
// lost connection, the deadline of ctx) is the error of every key in it.
// A lease granted to a key whose lookup then failed is given back. With
// len(reqs) != len(keys), every key's error wraps [store.ErrInvalidOption];
// after [Store.Close], [store.ErrClosed].
func (s *Store) LookupMany(ctx context.Context, keys []string, reqs []store.LookupRequest) ([]store.Lookup, []error) {
	lks := make([]store.Lookup, len(keys))
	if len(reqs) != len(keys) {
		return lks, each(keys, lookupError, fmt.Errorf("%w: LookupMany of %d keys with %d requests", store.ErrInvalidOption, len(keys), len(reqs)))
	}
	if s.closed.Load() {
		return lks, each(keys, lookupError, store.ErrClosed)
	}
	ops := make([]lookupOp, len(keys))
	ptrs := make([]*lookupOp, len(keys))
	for i, k := range keys {
		ops[i] = s.newLookup(k, reqs[i])
		ptrs[i] = &ops[i]
	}
	s.lookups(ctx, ptrs)
	s.releaseFailed(ctx, ptrs)
	var errs []error
	for i := range ops {
		if ops[i].err != nil {
			if errs == nil {
				errs = make([]error, len(keys))
			}
			errs[i] = lookupError(keys[i], ops[i].err)
			continue
		}
		lks[i] = ops[i].lk
	}
	return lks, errs
}

// FillMany implements [store.Batcher]: it fills every key as [Store.Fill]
// does, through the same steps, with the same answer, error and error text
// per key (a value larger than [MaxValueSize] is [store.ErrTooLarge] for
// its key only, a nil *store.Fill [store.ErrInvalidOption]), and makes the
// steps of all keys together, as LookupMany does.
//
// Standalone and Sentinel that is one round trip for the batch. On
// Cluster it is one round trip per node holding the keys, in parallel.
// Keys that need a pre-fill (tags in other slots, or a Set's sequence
// number) take theirs in that round, to the nodes it concerns, and their
// scripts in one more. Failures are reported as by LookupMany.
func (s *Store) FillMany(ctx context.Context, keys []string, fills []*store.Fill) ([]bool, []error) {
	accepted := make([]bool, len(keys))
	if len(fills) != len(keys) {
		return accepted, each(keys, fillError, fmt.Errorf("%w: FillMany of %d keys with %d fills", store.ErrInvalidOption, len(keys), len(fills)))
	}
	if s.closed.Load() {
		return accepted, each(keys, fillError, store.ErrClosed)
	}
	ops := make([]fillOp, len(keys))
	ptrs := make([]*fillOp, len(keys))
	for i, k := range keys {
		ops[i] = s.newFill(k, fills[i])
		ptrs[i] = &ops[i]
	}
	s.fills(ctx, ptrs)
	s.dropTooLarge(ctx, ptrs)
	var errs []error
	for i := range ops {
		if ops[i].err != nil {
			if errs == nil {
				errs = make([]error, len(keys))
			}
			errs[i] = fillError(keys[i], ops[i].err)
			continue
		}
		accepted[i] = ops[i].ok
	}
	return accepted, errs
}

// each returns err, wrapped for each key by wrap.
func each(keys []string, wrap func(string, error) error, err error) []error {
	if len(keys) == 0 {
		return nil
	}
	errs := make([]error, len(keys))
	for i, k := range keys {
		errs[i] = wrap(k, err)
	}
	return errs
}
