package paddock

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A BatchLoadFunc loads the values of keys in one go (one query with
// IN (...), one multi-get). Keys missing from the returned map are not
// found, and cached as such like [ErrNotFound]. Tags named with [Tag]
// during a batch apply to every key of the batch.
type BatchLoadFunc[T any] func(ctx context.Context, keys []string) (map[string]T, error)

// GetMany returns the values of keys that exist, loading the missing ones
// with one call of load. Each key is still coalesced: a key whose load is
// already running (here or, on a shared store, in another process) is
// waited for rather than loaded again, and a key loaded by the batch is
// shared with concurrent [Loader.Get] callers. The fence applies per key.
//
// Keys that are not found are left out of the map. If some keys fail,
// GetMany returns the values it has and the errors joined.
func (l *Loader[T]) GetMany(ctx context.Context, keys []string, load BatchLoadFunc[T], opts ...GetOption) (map[string]T, error) {
	if load == nil {
		return nil, invalid("GetMany: nil load function")
	}
	if l.c.closed.Load() {
		return nil, ErrClosed
	}
	pol, err := l.policyFor(opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	out := make(map[string]T, len(keys))
	var (
		mine   []batchKey[T] // keys whose lease this call holds
		others []string      // keys to get one by one (held elsewhere, store down)
		errs   []error
		seen   = make(map[string]bool, len(keys))
	)
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		w := &work[T]{l: l, key: l.prefix + k, load: single(k, load), pol: pol}
		lk, err := l.c.lookup(ctx, w.key, w.request(l.c.token()), l.st)
		token := lk.token // the token the lookup was sent with
		if unavailable(err) {
			others = append(others, k)
			continue
		}
		if err != nil {
			l.abandon(ctx, mine, err)
			return nil, err
		}
		if o, ok := l.serve(ctx, w.key, &lk, token, 0, w.self); ok {
			if r, err := l.result(&o, true); err == nil {
				out[k] = r.Value
			}
			continue
		}
		if !lk.Lease {
			others = append(others, k)
			continue
		}
		mine = append(mine, batchKey[T]{key: k, w: w, lk: lk, token: token, f: l.flights.start(w.key, false)})
	}

	if len(mine) > 0 && !l.c.spawn(func() { l.runBatch(ctx, mine, load, &pol) }) {
		l.abandon(ctx, mine, ErrClosed)
	}
	type one struct {
		key string
		r   Result[T]
		err error
	}
	results := make(chan one, len(others))
	for _, k := range others {
		go func() {
			r, err := l.Fetch(ctx, k, single(k, load), opts...)
			results <- one{k, r, err}
		}()
	}
	for _, b := range mine {
		select {
		case <-b.f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		r, err := l.result(&b.f.out, true)
		switch {
		case err == nil:
			out[b.key] = r.Value
		case !errors.Is(err, ErrNotFound):
			errs = append(errs, fmt.Errorf("%s: %w", b.key, err))
		}
	}
	for range others {
		var o one
		select {
		case o = <-results:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		switch {
		case o.err == nil:
			out[o.key] = o.r.Value
		case !errors.Is(o.err, ErrNotFound):
			errs = append(errs, fmt.Errorf("%s: %w", o.key, o.err))
		}
	}
	return out, errors.Join(errs...)
}

// batchKey is one key of a batch load that this call holds the lease of.
type batchKey[T any] struct {
	key   string
	w     *work[T]
	lk    reply
	token uint64
	f     *flight[T]
}

// single adapts a batch load to one key.
func single[T any](key string, load BatchLoadFunc[T]) LoadFunc[T] {
	return func(ctx context.Context) (T, error) {
		m, err := load(ctx, []string{key})
		if err != nil {
			var zero T
			return zero, err
		}
		v, ok := m[key]
		if !ok {
			return v, ErrNotFound
		}
		return v, nil
	}
}

// runBatch loads the keys of mine with one call and settles each key's
// flight on its own ticket.
func (l *Loader[T]) runBatch(ctx context.Context, mine []batchKey[T], load BatchLoadFunc[T], pol *policy) {
	ctx = context.WithoutCancel(ctx)
	finished := false
	defer func() {
		if !finished { // the load called runtime.Goexit
			for _, b := range mine {
				l.c.release(ctx, b.w.key, b.token, l.st)
				l.flights.finish(b.w.key, b.f, outcome[T]{err: errGoexit})
			}
		}
	}()
	keys := make([]string, len(mine))
	marks := make([]uint64, len(mine))
	for i, b := range mine {
		keys[i] = b.key
		marks[i] = b.f.begin()
	}
	lctx, ts, cancel := l.c.loadContext(ctx, pol.loadTimeout)
	gen := l.c.invGen.Load()
	start := time.Now()
	m, err := callLoad(lctx, func(ctx context.Context) (map[string]T, error) { return load(ctx, keys) })
	dur := time.Since(start)
	err = l.c.loadError(lctx, err, pol.loadTimeout)
	cancel()
	l.st.loads.Add(1)
	tags := ts.list()
	for i, b := range mine {
		ld := loaded[T]{err: err, dur: dur, tags: tags, mark: marks[i], gen: gen}
		if err == nil {
			v, ok := m[b.key]
			if ok {
				ld.val = v
			} else {
				ld.err = ErrNotFound
			}
		}
		out := b.w.settle(ctx, b.f, &b.lk, b.token, 0, ld)
		l.flights.finish(b.w.key, b.f, out)
	}
	finished = true
}

// abandon gives back the leases of a batch that will not run, and ends
// its flights with err.
func (l *Loader[T]) abandon(ctx context.Context, mine []batchKey[T], err error) {
	ctx = context.WithoutCancel(ctx)
	for _, b := range mine {
		l.c.release(ctx, b.w.key, b.token, l.st)
		l.flights.finish(b.w.key, b.f, outcome[T]{err: err})
	}
}
