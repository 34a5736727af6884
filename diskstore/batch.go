package diskstore

import (
	"context"

	"github.com/paddockcache/paddock/store"
)

// LookupMany implements [store.Batcher]: each lookup that changes nothing
// is one read, and the others (leases to grant,
// entries to drop) are decided again in one write transaction. Each key's
// lookup is atomic and answers as [Store.Lookup] would; the batch as a
// whole is not one step. With len(reqs) != len(keys), every key's error
// wraps [store.ErrInvalidOption]; a database failure is every key's
// error. errs is nil when every lookup succeeded.
func (s *Store) LookupMany(ctx context.Context, keys []string, reqs []store.LookupRequest) (lks []store.Lookup, errs []error) {
	lks = make([]store.Lookup, len(keys))
	if len(reqs) != len(keys) {
		return lks, each(len(keys), invalid("LookupMany: %d keys, %d requests", len(keys), len(reqs)))
	}
	if s.closed.Load() {
		return lks, each(len(keys), errClosed)
	}
	var again []int
	for i, req := range reqs {
		if req.Lease != 0 && req.LeaseTTL <= 0 {
			if errs == nil {
				errs = make([]error, len(keys))
			}
			errs[i] = invalid("LookupMany: lease TTL %v is not positive", req.LeaseTTL)
		}
	}
	var err error
	for i, key := range keys {
		if errs != nil && errs[i] != nil {
			continue
		}
		lk, needWrite, lerr := s.lookup(reader{ctx, s}, nil, key, reqs[i])
		if lerr != nil {
			err = lerr
			break
		}
		lks[i] = lk
		if needWrite {
			again = append(again, i)
		}
	}
	if err == nil && len(again) > 0 {
		err = s.write(ctx, false, "lookup", func(w *wtx) error {
			for _, i := range again {
				lk, _, err := s.lookup(w, w, keys[i], reqs[i])
				if err != nil {
					return err
				}
				lks[i] = lk
			}
			return nil
		})
	}
	if err != nil {
		return make([]store.Lookup, len(keys)), each(len(keys), s.fail("LookupMany", err))
	}
	return lks, errs
}

// FillMany implements [store.Batcher]: it does [Store.Fill] of each key in
// one write transaction (one commit for the batch; durable if any fill is
// a Set), with the same answer per key. An entry too large is
// [store.ErrTooLarge] for its key only; a database failure is every key's
// error, and nothing of the batch is written.
func (s *Store) FillMany(ctx context.Context, keys []string, fills []*store.Fill) (accepted []bool, errs []error) {
	accepted = make([]bool, len(keys))
	if len(fills) != len(keys) {
		return accepted, each(len(keys), invalid("FillMany: %d keys, %d fills", len(keys), len(fills)))
	}
	if s.closed.Load() {
		return accepted, each(len(keys), errClosed)
	}
	durable := false
	setErr := func(i int, err error) {
		if errs == nil {
			errs = make([]error, len(keys))
		}
		errs[i] = err
	}
	for i, f := range fills {
		switch {
		case f == nil:
			setErr(i, invalid("FillMany: nil *Fill"))
		case f.Negative && len(f.Value) > 0:
			setErr(i, invalid("FillMany(%q): a negative fill has a value", keys[i]))
		case f.Set:
			durable = true
		}
	}
	err := s.write(ctx, durable, "fill", func(w *wtx) error {
		for i, key := range keys {
			if errs != nil && errs[i] != nil {
				continue
			}
			ok, fillErr, err := s.fill(w, key, fills[i])
			if err != nil {
				return err
			}
			accepted[i] = ok
			if fillErr != nil {
				setErr(i, fillErr)
			}
		}
		return nil
	})
	if err != nil {
		return make([]bool, len(keys)), each(len(keys), s.fail("FillMany", err))
	}
	return accepted, errs
}

// each returns n copies of err, or nil for none.
func each(n int, err error) []error {
	if n == 0 {
		return nil
	}
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}
