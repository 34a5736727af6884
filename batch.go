package paddock

import (
	"context"
	"errors"
	"fmt"

	"github.com/paddockcache/paddock/store"
)

// A BatchLoadFunc loads the values of keys in one go (one query with
// IN (...), one multi-get). Keys missing from the returned map are not
// found, and cached as such like [ErrNotFound]. Tags named with [Tag]
// during a batch apply to every key of the batch.
type BatchLoadFunc[T any] func(ctx context.Context, keys []string) (map[string]T, error)

// GetMany returns the values of keys that exist, loading the missing ones
// with one call of load. On a store that implements [store.Batcher] it
// looks up every key in one store call and fills the loaded ones in one
// more (one round trip each on Redis). Each key is still coalesced: a key
// whose load is already running (here or, on a shared store, in another
// process) is waited for rather than loaded again, and a key loaded by the
// batch is shared with concurrent [Loader.Get] callers. The fence applies
// per key.
//
// Keys that are not found are left out of the map. If some keys fail,
// GetMany returns the values it has and the errors joined. Called inside a
// load, it makes the outer entry depend on every key (see the package doc
// on nested Gets).
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
	sc, at := l.nested(ctx)
	fresh := sc != nil && sc.needFresh

	seen := make(map[string]bool, len(keys))
	var uniq, full []string
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, k)
			full = append(full, l.prefix+k)
		}
	}
	reqs := make([]store.LookupRequest, len(full))
	for i := range reqs {
		reqs[i] = l.request(&pol, l.c.token())
	}
	lks, errs := l.c.lookupMany(ctx, full, reqs, l.st)

	out := make(map[string]T, len(uniq))
	var (
		mine   []batchKey[T] // keys whose lease this call holds
		others []string      // keys to get one by one (held elsewhere, store down)
		failed []error
	)
	take := func(key, fullKey string, o *outcome[T]) {
		if sc != nil {
			sc.add(o.input(fullKey))
		}
		switch r, err := l.result(o, true); {
		case err == nil:
			out[key] = r.Value
		case !errors.Is(err, ErrNotFound):
			failed = append(failed, fmt.Errorf("%s: %w", key, err))
		}
	}
	for i, k := range uniq {
		var err error
		if errs != nil {
			err = errs[i]
		}
		w := &work[T]{l: l, key: full[i], load: single(k, load), pol: pol, fresh: fresh}
		switch act, o := l.decide(full[i], &lks[i], err, 0, at, fresh); act {
		case actFail:
			l.abandon(ctx, mine, err)
			return nil, err
		case actServe:
			take(k, full[i], &o)
		case actServeRefresh:
			w.refresh(ctx, lks[i])
			take(k, full[i], &o)
		case actLoad:
			mine = append(mine, batchKey[T]{key: k, w: w, lk: lks[i], f: l.flights.start(full[i], pol.tags, false)})
		default:
			others = append(others, k)
		}
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
			r, err := l.Fetch(ctx, k, single(k, load), opts...) // records its own dependency
			results <- one{k, r, err}
		}()
	}
	for _, b := range mine {
		select {
		case <-b.f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		take(b.key, b.w.key, &b.f.out)
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
			failed = append(failed, fmt.Errorf("%s: %w", o.key, o.err))
		}
	}
	return out, errors.Join(failed...)
}

// batchKey is one key of a batch load that this call holds the lease of.
type batchKey[T any] struct {
	key string
	w   *work[T]
	lk  reply
	f   *flight[T]
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

// runBatch loads the keys of mine with one call, settles each key's flight
// on its own ticket, and fills them with one store call.
func (l *Loader[T]) runBatch(ctx context.Context, mine []batchKey[T], load BatchLoadFunc[T], pol *policy) {
	ctx = context.WithoutCancel(ctx)
	finished := false
	defer onGoexit(&finished, func() {
		for _, b := range mine {
			l.c.release(ctx, b.w.key, b.f.lease.Swap(0), l.st)
			l.flights.finish(b.w.key, b.f, outcome[T]{err: errGoexit})
		}
	})
	keys := make([]string, len(mine))
	marks := make([]uint64, len(mine))
	for i, b := range mine {
		keys[i] = b.key
		b.f.lease.Store(b.lk.token)
		marks[i] = b.f.begin()
	}
	lctx, sc, cancel := l.c.loadContext(ctx, pol.loadTimeout)
	sc.needFresh = mine[0].w.fresh
	for _, b := range mine {
		b.f.sc.Store(sc)
	}
	m, ld := timedLoad(l, lctx, pol.loadTimeout, sc, func(ctx context.Context) (map[string]T, error) { return load(ctx, keys) })
	cancel()

	outs := make([]outcome[T], len(mine))
	var (
		fkeys []string
		fills []*store.Fill
		which []int
	)
	for i, b := range mine {
		kl := ld
		kl.mark = marks[i]
		var v T
		if kl.err == nil {
			var ok bool
			if v, ok = m[b.key]; !ok {
				kl.err = ErrNotFound
			}
		}
		var fill *store.Fill
		outs[i], fill = b.w.prepare(b.f, &b.lk, 0, v, kl)
		if fill == nil {
			l.c.release(ctx, b.w.key, b.f.lease.Swap(0), l.st)
			continue
		}
		fkeys, fills, which = append(fkeys, b.w.key), append(fills, fill), append(which, i)
	}
	if len(fills) > 0 {
		fmarks := make([]uint64, len(which))
		for n, i := range which {
			fmarks[n] = mine[i].f.begin()
		}
		oks, errs := l.c.fillMany(ctx, fkeys, fills, l.st)
		for n, i := range which {
			var err error
			if errs != nil {
				err = errs[n]
			}
			outs[i] = mine[i].w.filled(ctx, mine[i].f, outs[i], oks[n], err, fmarks[n])
		}
	}
	for i, b := range mine {
		l.flights.finish(b.w.key, b.f, outs[i])
	}
	finished = true
}

// abandon gives back the leases of a batch that will not run, and ends
// its flights with err.
func (l *Loader[T]) abandon(ctx context.Context, mine []batchKey[T], err error) {
	ctx = context.WithoutCancel(ctx)
	for _, b := range mine {
		l.c.release(ctx, b.w.key, b.lk.token, l.st)
		l.flights.finish(b.w.key, b.f, outcome[T]{err: err})
	}
}
