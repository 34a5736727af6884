package paddock

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/store"
)

// What a load says about its result, and what the Gets it makes record.
//
// Every load runs on a context that carries its scope. The functions
// below (Tag, SetTTL, SetStale, KeepAtMost, NoStore, Private) find the scope in the
// context they are given and write to it; outside a load they do nothing.
// A Get, Fetch, GetMany or Peek made with a context that descends from a
// load's context on the same Cache (a nested Get) writes to it too: the
// inner key and the inner entry's tags become tags of the outer entry, the
// inner entry's windows bound the outer's, and an inner result that may
// not be cached or shared makes the outer one so too.

type scopeKey struct{}

// scope collects what a load and its nested Gets say about its result.
// It is part of a reused loadState: gen, guarded by mu, counts the loads
// it served, and a write from a load that is over (a goroutine of its own
// that outlived it) goes through a scopeRef of an older generation, and is
// dropped.
type scope struct {
	c   *Cache
	mu  sync.Mutex
	gen uint64
	scopeFields
}

// scopeFields is what one load's scope holds, cleared when the scope is
// reused. Guarded by scope.mu, except where it says.
type scopeFields struct {
	// tags: named with Tag, and those of nested Gets (the inner keys'
	// dependency tags and the inner entries' tags).
	tags []string
	// ttl and stale, if set (SetTTL, SetStale), replace the Get's.
	ttl, stale, staleIfError          time.Duration
	hasTTL, hasStale, hasStaleIfError bool
	noStore, private                  bool
	// fl is the flight the load runs for: Private releases its other
	// callers at once.
	fl privatizer
	// fresh: the load refreshes a value that is being served stale (or
	// runs for a Get that needs a fresh value): its nested Gets wait for
	// fresh values rather than take stale ones, so that the refresh
	// yields a fresh value at once instead of one stale round per level.
	// Set before the load runs.
	needFresh bool
	// background: the load is a refresh while the old value is served
	// (see Refreshing). Set before the load runs.
	background bool
	// bounds from nested inputs: instants of this process's clock past
	// which an input is no longer fresh, servable stale, or servable after
	// a failed refresh. Zero: no input bounds it.
	fresh, staleEnd, errorEnd time.Time
}

// A scopeRef is a load's scope as a context descending from the load's
// context names it: the scope and the generation of that load (see
// scope). The zero scopeRef names none.
type scopeRef struct {
	s   *scope
	gen uint64
}

// scopeOf returns the scope of the load ctx descends from, if any.
func scopeOf(ctx context.Context) scopeRef {
	x, _ := ctx.Value(scopeKey{}).(*loadCtx)
	if x == nil {
		return scopeRef{}
	}
	return scopeRef{&x.st.sc, x.gen}
}

// lock locks the scope and returns it, if r names one and its load is
// still the scope's; otherwise it returns nil, and locks nothing.
func (r scopeRef) lock() *scope {
	switch {
	case r.s == nil:
		return nil
	case hooks.KeptScopeWrites.Load():
		r.s.mu.Lock() // the generation is not checked
		return r.s
	case !r.s.lockAt(r.gen):
		return nil
	}
	return r.s
}

// lockAt locks s and reports true if gen is still the generation of its
// load; if it is not, the load of gen is over and s is left unlocked.
func (s *scope) lockAt(gen uint64) bool {
	s.mu.Lock()
	if s.gen != gen {
		s.mu.Unlock()
		return false
	}
	return true
}

// Tag adds tags to the entry being loaded. Call it from inside a load
// function, with the context the load was given, once the tags are known
// (often only after the query: the author of an article, the ids on a
// page). The fill is fenced by these tags like by any other: if one of them
// was invalidated after the load began, the fill is refused. Outside a load
// Tag does nothing. Empty tags are ignored.
func Tag(ctx context.Context, tags ...string) {
	if len(tags) == 0 {
		return
	}
	if s := scopeOf(ctx).lock(); s != nil {
		s.tags = append(s.tags, tags...)
		s.mu.Unlock()
	}
}

// SetTTL sets how long the value being loaded stays fresh, in place of the
// Get's [TTL] (or [NegativeTTL] for a not-found): a row's own expiry, an
// HTTP response's max-age. Zero or less stores the entry already stale: it
// is served only inside its stale windows, each time with a refresh, and
// not stored at all if it has none. Call it from inside a load, with the
// load's context; outside a load it does nothing. Nested Gets may shorten
// the TTL further (see the package doc).
func SetTTL(ctx context.Context, d time.Duration) {
	if s := scopeOf(ctx).lock(); s != nil {
		s.ttl, s.hasTTL = max(d, 0), true
		s.mu.Unlock()
	}
}

// SetStale sets the stale-while-revalidate window of the value being
// loaded, in place of the Get's [Stale]: an HTTP response's
// stale-while-revalidate. Less than zero counts as zero. Call it from
// inside a load, with the load's context; outside a load it does nothing.
func SetStale(ctx context.Context, d time.Duration) {
	if s := scopeOf(ctx).lock(); s != nil {
		s.stale, s.hasStale = max(d, 0), true
		s.mu.Unlock()
	}
}

// SetStaleIfError sets the stale-if-error window of the value being
// loaded, in place of the Get's [StaleIfError]: an HTTP response's
// stale-if-error. Less than zero counts as zero. Call it from inside a
// load, with the load's context; outside a load it does nothing.
func SetStaleIfError(ctx context.Context, d time.Duration) {
	if s := scopeOf(ctx).lock(); s != nil {
		s.staleIfError, s.hasStaleIfError = max(d, 0), true
		s.mu.Unlock()
	}
}

// KeepAtMost bounds how long the value being loaded is kept: it is served
// (fresh, stale, or stale-if-error) no later than d from now, whatever the
// Get's options, [SetTTL] or [SetStale] say. It only shortens: the bound
// is the earliest of every call and of the windows of the load's nested
// Gets, and entries built from this one by nested Gets inherit it. Zero or
// less keeps nothing. Use it for a value whose source can only promise
// freshness for a while: a read from a replica that lags (the fence needs
// the primary). Call it from inside a load, with the load's context, before
// the read; outside a load it does nothing.
func KeepAtMost(ctx context.Context, d time.Duration) {
	until := time.Now().Add(max(d, 0))
	if s := scopeOf(ctx).lock(); s != nil {
		s.fresh = earliest(s.fresh, until)
		s.staleEnd = earliest(s.staleEnd, until)
		s.errorEnd = earliest(s.errorEnd, until)
		s.mu.Unlock()
	}
}

// NoStore keeps the value being loaded out of the cache: it is returned to
// every caller of this load (those coalesced with it included), and the
// next Get loads again. Use it for a result that is fine to share but not
// to keep: an error page, a response too big to keep. A load whose nested
// Get read a NoStore value is NoStore too. Outside a load it does nothing.
func NoStore(ctx context.Context) {
	if s := scopeOf(ctx).lock(); s != nil {
		s.noStore = true
		s.mu.Unlock()
	}
}

// Private makes the value being loaded its own caller's alone: it is
// returned only to the caller whose request ran the load, it is not
// cached, and the callers coalesced with the load each run a load of their
// own instead, not coalesced with each other. They are released at once,
// while the load goes on (a response that streams for minutes does not
// hold them), and so is the key's lease: callers that come later load too.
// Use it for a result made for one user: a response that set a cookie. A
// load whose nested Get read a Private value is Private too. Outside a
// load it does nothing.
func Private(ctx context.Context) {
	s := scopeOf(ctx).lock()
	if s == nil {
		return
	}
	first := !s.private
	s.private, s.noStore = true, true
	fl := s.fl
	s.mu.Unlock()
	if first && fl != nil {
		fl.privatize()
	}
}

// end forgets the flight of the load of s, once the load has returned:
// the load may have kept its context, and the flight may be reused for
// another key (see group.reuse). A Private called after that changes
// nothing, as before: the load's result is already taken. kept does it
// too, under the same lock: a load that is kept calls only kept.
func (s *scope) end() {
	s.mu.Lock()
	s.fl = nil
	s.mu.Unlock()
}

// privatize is implemented by flights: see Private.
type privatizer interface{ privatize() }

// Refreshing reports whether ctx is the context of a background refresh:
// a load that runs while its key's old value is served, for which no
// caller waits. A load that would hand its result to its caller as it goes
// (a page streamed to the client whose request started it) checks it.
// Outside a load it returns false.
func Refreshing(ctx context.Context) bool {
	s := scopeOf(ctx).lock()
	if s == nil {
		return false
	}
	defer s.mu.Unlock()
	return s.background
}

// ModelTag returns the tag of one row of a model, "model:id": what a load
// built from that row tags itself with, and what the code that writes the
// row invalidates. ModelTag("article", 42) is "article:42".
func ModelTag(model string, id any) string {
	return fmt.Sprintf("%s:%v", model, id)
}

// DependencyTag returns the tag that entries built from the entry of the
// full key carry: "@" + key. A load that reads key with a nested Get tags
// its entry with it, and [Cache.Invalidate], [Cache.MarkStale] and
// [Loader.Set] of key invalidate the entries that carry it. A load that
// read key some other way may name it with [Tag] or [Tags] itself.
func DependencyTag(key string) string { return "@" + key }

// input is what a nested read passes to the load it is nested in.
type input struct {
	key              string
	tags             []string
	fresh, stale     time.Time // local instants; zero: unbounded
	errorEnd         time.Time
	noStore, private bool
}

// add records in r's scope that the load read in, unless the load is
// over.
func (r scopeRef) add(in *input) {
	if hooks.NoDeps.Load() {
		return
	}
	s := r.lock()
	if s == nil {
		return
	}
	defer s.mu.Unlock()
	s.tags = append(s.tags, DependencyTag(in.key))
	s.tags = append(s.tags, in.tags...)
	s.noStore = s.noStore || in.noStore
	s.private = s.private || in.private
	s.fresh = earliest(s.fresh, in.fresh)
	s.staleEnd = earliest(s.staleEnd, in.stale)
	s.errorEnd = earliest(s.errorEnd, in.errorEnd)
}

// earliest returns the earlier of a and b, where zero means unbounded.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// entryInput is the input of a nested read served entry e, looked up at
// store-clock instant now and local instant at (taken before the lookup
// was sent, so that the bounds are never later than the store's). An
// entry served stale (its window passed, or a soft invalidation of it or
// of one of its tags, which leaves its FreshUntil alone) is fresh no
// longer; one served stale-if-error is not servable stale either.
func entryInput(e *store.Entry, now, at time.Time, status Status) input {
	in := input{
		tags:     e.Tags,
		fresh:    at.Add(e.FreshUntil.Sub(now)),
		stale:    at.Add(e.StaleUntil.Sub(now)),
		errorEnd: at.Add(e.ErrorUntil.Sub(now)),
	}
	switch status {
	case StatusStaleIfError:
		in.stale = earliest(in.stale, at)
		fallthrough
	case StatusStale:
		in.fresh = earliest(in.fresh, at)
	}
	return in
}

// keptAs is how a load's result is kept: the fill's windows from a local
// instant, its tags, and whether it may be stored or shared at all.
type keptAs struct {
	ttl, stale, staleIfError time.Duration
	tags                     []string
	noStore, private         bool
	hasTTL                   bool // the load set its TTL (SetTTL)
}

// kept returns how the load's result is kept, once the load has
// returned: with ttl, stale and staleIfError from the Get's options (ttl
// is the negative TTL for a not-found), as changed by the load and bounded
// by its inputs from local instant now. It forgets the load's flight, as
// end does.
func (s *scope) kept(ttl, stale, staleIfError time.Duration, now time.Time) keptAs {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fl = nil
	k := keptAs{ttl: ttl, stale: stale, staleIfError: staleIfError, noStore: s.noStore, private: s.private, hasTTL: s.hasTTL}
	if s.hasTTL {
		k.ttl = s.ttl
	}
	if s.hasStale {
		k.stale = s.stale
	}
	if s.hasStaleIfError {
		k.staleIfError = s.staleIfError
	}
	if len(s.tags) > 0 {
		k.tags = slices.Clone(s.tags)
	}
	if s.fresh.IsZero() && s.staleEnd.IsZero() && s.errorEnd.IsZero() && k.ttl >= 0 && k.stale >= 0 && k.staleIfError >= 0 {
		return k // no nested read bounds the windows: they are as given
	}
	fresh, staleEnd, errorEnd := now.Add(k.ttl), now.Add(k.ttl+k.stale), now.Add(k.ttl+k.staleIfError)
	fresh = earliest(fresh, s.fresh)
	staleEnd = earliest(staleEnd, s.staleEnd)
	errorEnd = earliest(errorEnd, s.errorEnd)
	if fresh.Before(now) {
		fresh = now
	}
	k.ttl = fresh.Sub(now)
	k.stale = max(staleEnd.Sub(fresh), 0)
	k.staleIfError = max(errorEnd.Sub(fresh), 0)
	return k
}

// servable reports whether an entry kept as k would ever be served.
func (k *keptAs) servable() bool { return k.ttl > 0 || k.stale > 0 || k.staleIfError > 0 }

// mergeTags returns the sorted union of a and b without empty strings.
func mergeTags(a, b []string) []string {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := make([]string, 0, len(a)+len(b))
	for _, t := range a {
		if t != "" {
			out = append(out, t)
		}
	}
	for _, t := range b {
		if t != "" {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
