package paddock

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	bg := batchGet[T]{l: l, ctx: ctx, load: load, pol: pol, opts: opts, out: make(map[string]T, len(keys))}
	bg.sc, bg.at, bg.fresh = l.nested(ctx)
	mine, others, err := bg.lookup(keys)
	if err != nil {
		return nil, err
	}
	if len(mine) > 0 && !l.c.spawn(func() { l.runBatch(ctx, mine, load, &bg.pol) }) {
		l.abandon(ctx, mine, ErrClosed)
	}
	if err := bg.wait(mine, others); err != nil {
		return nil, err
	}
	return bg.out, errors.Join(bg.failed...)
}

// batchGet is one GetMany: what it asked for, and what it has so far.
type batchGet[T any] struct {
	l     *Loader[T]
	ctx   context.Context
	load  BatchLoadFunc[T]
	pol   policy
	opts  []GetOption
	sc    scopeRef  // the load this GetMany is nested in, if any
	at    time.Time // local instant before its lookups, if nested
	fresh bool      // serve no stale value (see scope.needFresh)

	out    map[string]T
	failed []error
}

// lookup looks up the distinct keys in one store call and serves what it
// can. It returns the keys whose lease this call was granted (their
// flights started) and those to get one by one (held elsewhere, store
// down), or the error of a caller that gave up.
func (bg *batchGet[T]) lookup(keys []string) (mine []batchKey[T], others []string, _ error) {
	l := bg.l
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
		reqs[i] = l.request(&bg.pol, l.c.token())
	}
	lks, errs := l.c.lookupMany(bg.ctx, full, reqs, l.st)
	for i, k := range uniq {
		var err error
		if errs != nil {
			err = errs[i]
		}
		w := &work[T]{l: l, key: full[i], load: single(k, bg.load), pol: bg.pol, fresh: bg.fresh}
		var o outcome[T]
		switch l.decide(full[i], &lks[i], err, 0, bg.at, bg.fresh, &o) {
		case actFail:
			l.abandon(bg.ctx, mine, err)
			return nil, nil, err
		case actServe:
			bg.take(k, full[i], &o)
		case actServeRefresh:
			w.refresh(bg.ctx, lks[i])
			bg.take(k, full[i], &o)
		case actLoad:
			mine = append(mine, batchKey[T]{key: k, w: w, lk: lks[i], f: l.flights.start(full[i], bg.pol.tags, false)})
		default:
			others = append(others, k)
		}
	}
	return mine, others, nil
}

// take adds the outcome o of key (full key fullKey) to the answer.
func (bg *batchGet[T]) take(key, fullKey string, o *outcome[T]) {
	if bg.sc.s != nil {
		bg.sc.add(o.input(fullKey))
	}
	r, err := bg.l.result(o, true)
	bg.add(key, r.Value, err)
}

func (bg *batchGet[T]) add(key string, v T, err error) {
	switch {
	case err == nil:
		bg.out[key] = v
	case !errors.Is(err, ErrNotFound):
		bg.failed = append(bg.failed, fmt.Errorf("%s: %w", key, err))
	}
}

// wait collects the keys of the batch load (mine) and gets the others one
// by one, concurrently.
func (bg *batchGet[T]) wait(mine []batchKey[T], others []string) error {
	type one struct {
		key string
		v   T
		err error
	}
	results := make(chan one, len(others))
	for _, k := range others {
		go func() {
			v, err := bg.l.Get(bg.ctx, k, single(k, bg.load), bg.opts...) // records its own dependency
			results <- one{k, v, err}
		}()
	}
	for _, b := range mine {
		fdone, _, _ := b.f.signals(false)
		select {
		case <-fdone:
		case <-bg.ctx.Done():
			return bg.ctx.Err()
		}
		bg.take(b.key, b.w.key, &b.f.out)
	}
	for range others {
		select {
		case o := <-results:
			bg.add(o.key, o.v, o.err)
		case <-bg.ctx.Done():
			return bg.ctx.Err()
		}
	}
	return nil
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
	ctx = detach(ctx)
	finished := false
	defer onGoexit(&finished, func() {
		for _, b := range mine {
			l.c.release(ctx, b.w.key, b.f.lease.Swap(0), l.st)
			l.flights.finish(b.w.key, b.f, outcome[T]{err: errGoexit})
		}
	})
	keys := make([]string, len(mine))
	marks := make([]uint64, len(mine))
	start := l.c.now()
	lctx, sc := l.c.newLoadCtx(ctx, pol.loadTimeout, start)
	sc.needFresh = mine[0].w.fresh
	for i, b := range mine {
		keys[i] = b.key
		b.f.loading(b.lk.token, sc)
		marks[i] = b.f.begin()
	}
	m, ld := timedLoad(l, lctx, pol.loadTimeout, sc, start, len(keys), func(ctx context.Context) (map[string]T, error) { return load(ctx, keys) })
	lctx.finish()

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
		fill := b.w.prepare(b.f, &b.lk, 0, v, kl, &outs[i])
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
			mine[i].f.recycle(fills[n])
		}
		for n, i := range which {
			var err error
			if errs != nil {
				err = errs[n]
			}
			mine[i].w.filled(ctx, mine[i].f, &outs[i], oks[n], err, fmarks[n])
		}
	}
	l.c.doneLoading(lctx) // as work.loadAndFill does
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
