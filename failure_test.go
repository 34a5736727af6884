package paddock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/store"
)

// The failure paths of the Cache, each driven by a store wrapper that
// fails the way a real store does (the fault suite in faulttest drives the
// same paths on a real Redis).

// holdStore presents a store as remote and can hold back the reply of one
// lookup: the store has run it, the Cache has not heard yet.
type holdStore struct {
	store.Store

	mu      sync.Mutex
	hold    bool          // hold the next lookup's reply
	held    chan struct{} // closed once a reply is held
	release chan struct{} // the held reply goes out when it is closed
}

func (*holdStore) Remote() bool { return true }

func (h *holdStore) holdNext() {
	h.mu.Lock()
	h.hold, h.held, h.release = true, make(chan struct{}), make(chan struct{})
	h.mu.Unlock()
}

func (h *holdStore) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	lk, err := h.Store.Lookup(ctx, key, req)
	h.mu.Lock()
	hold, held, release := h.hold, h.held, h.release
	h.hold = false
	h.mu.Unlock()
	if hold {
		close(held)
		<-release
	}
	return lk, err
}

// TestRetryAfterRejectedFlightObeysJoinRule: a Get
// that rejected an old flight's result, and on its retry found a
// background refresh started from a lookup older than itself, must not
// take that refresh's stale-if-error value of the invalidated entry. The
// invalidation would detach G0's flight and break its lease, sparing G the
// join; WaitDoomed and LeaseOutlivesInvalidation keep both, so that the
// join rule alone is tested.
func TestRetryAfterRejectedFlightObeysJoinRule(t *testing.T) {
	for _, takeAny := range []bool{false, true} {
		t.Run(fmt.Sprintf("RetryTakesAny=%v", takeAny), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				defer hooks.Reset()
				hooks.WaitDoomed.Store(true)
				hooks.LeaseOutlivesInvalidation.Store(true)
				hs := &holdStore{Store: newMem(t)}
				c := newCache(t, hs)
				l := newLoader[string](t, c, "p", paddock.TTL(time.Minute), paddock.Stale(time.Hour),
					paddock.StaleIfError(2*time.Hour), paddock.Beta(0))
				if _, err := l.Get(ctx, "k", func(context.Context) (string, error) { return "old", nil }); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Minute) // stale: the next lookup grants the refresh lease

				refresh := make(chan struct{})
				failing := func(context.Context) (string, error) {
					<-refresh
					return "", errors.New("db down")
				}
				hs.holdNext()
				g0 := make(chan paddock.Result[string], 1)
				go func() {
					r, _ := l.Fetch(ctx, "k", failing)
					g0 <- r
				}()
				<-hs.held // G0's lookup ran: stale entry, refresh lease
				if err := l.Invalidate(ctx, "k"); err != nil {
					t.Fatal(err)
				}
				type res struct {
					r   paddock.Result[string]
					err error
				}
				g := make(chan res, 1)
				go func() {
					r, err := l.Fetch(ctx, "k", func(context.Context) (string, error) { return "new", nil })
					g <- res{r, err}
				}()
				synctest.Wait() // G joined G0's lookup flight
				hooks.RetryTakesAny.Store(takeAny)
				first := hs.release
				hs.holdNext() // G's retry lookup, held until G0 is done
				close(first)  // G0 serves stale and starts the refresh
				if r := <-g0; r.Status != paddock.StatusStale || r.Value != "old" {
					t.Fatalf("G0 = %+v, want the stale value", r)
				}
				<-hs.held
				synctest.Wait()
				close(hs.release)
				synctest.Wait() // G retried and joined the refresh
				close(refresh)  // the refresh fails
				got := <-g
				stale := got.err == nil && got.r.Value == "old"
				if takeAny != stale {
					t.Errorf("G after the invalidation = %+v, %v (old rule %v)", got.r, got.err, takeAny)
				}
				if !takeAny && (got.err != nil || got.r.Value != "new") {
					t.Errorf("G = %+v, %v; want a load of its own", got.r, got.err)
				}
			})
		})
	}
}

// slowStore delays every call by the latency it is set to (honoring the
// call's context, as a network client does), or fails it with fail.
type slowStore struct {
	store.Store
	remote  bool
	latency atomic.Int64 // time.Duration
	fail    atomic.Pointer[error]
	calls   atomic.Int64
}

func (s *slowStore) Remote() bool { return s.remote }

func (s *slowStore) wait(ctx context.Context) error {
	s.calls.Add(1)
	if p := s.fail.Load(); p != nil {
		return *p
	}
	d := time.Duration(s.latency.Load())
	if d == 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *slowStore) setFail(err error) {
	if err == nil {
		s.fail.Store(nil)
		return
	}
	s.fail.Store(&err)
}

func (s *slowStore) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	if err := s.wait(ctx); err != nil {
		return store.Lookup{}, err
	}
	return s.Store.Lookup(ctx, key, req)
}

func (s *slowStore) Fill(ctx context.Context, key string, f *store.Fill) (bool, error) {
	if err := s.wait(ctx); err != nil {
		return false, err
	}
	return s.Store.Fill(ctx, key, f)
}

func (s *slowStore) Release(ctx context.Context, key string, lease uint64) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.Store.Release(ctx, key, lease)
}

func (s *slowStore) Invalidate(ctx context.Context, inv store.Invalidation) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.Store.Invalidate(ctx, inv)
}

// TestBreakerRecoversWhateverTheCallersDeadlines: a half-open
// probe taken by a caller whose deadline ends first must still report, so
// that the Cache uses the store again within cooldown + one store timeout
// of its recovery.
func TestBreakerRecoversWhateverTheCallersDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ss := &slowStore{Store: newMem(t), remote: true}
		const cooldown, timeout = 200 * time.Millisecond, time.Second
		c := newCache(t, ss, paddock.Breaker(1, cooldown), paddock.StoreTimeout(timeout))
		l := newLoader[string](t, c, "p")
		load := func(context.Context) (string, error) { return "v", nil }
		get := func() (paddock.Result[string], error) {
			cctx, cancel := context.WithTimeout(ctx, 120*time.Millisecond)
			defer cancel()
			return l.Fetch(cctx, "k", load)
		}
		if _, err := l.Get(ctx, "k", load); err != nil { // filled
			t.Fatal(err)
		}
		// A latency spike: 2 s a call. Callers give up after 120 ms.
		ss.latency.Store(int64(2 * time.Second))
		spike := time.Now()
		for time.Since(spike) < 5*time.Second {
			get()
			time.Sleep(50 * time.Millisecond)
		}
		ss.latency.Store(0) // healed
		healed := time.Now()
		before := ss.calls.Load()
		var hit time.Duration
		for time.Since(healed) < 10*time.Second {
			if r, err := get(); err == nil && r.Status == paddock.StatusHit {
				hit = time.Since(healed)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if hit == 0 {
			t.Fatalf("no hit in 10 s after the store healed (%d store calls)", ss.calls.Load()-before)
		}
		if bound := cooldown + timeout + 50*time.Millisecond; hit > bound {
			t.Errorf("first hit %v after the store healed, want within cooldown + store timeout (%v)", hit, bound)
		}
		synctest.Wait()
	})
}

// lateStore runs each lookup on the store but, while lost is set, loses
// the reply: the caller gets a timeout although the store granted the
// lease (a reply that arrived after the deadline).
type lateStore struct {
	store.Store
	lost atomic.Bool
}

func (*lateStore) Remote() bool { return true }

func (s *lateStore) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	lk, err := s.Store.Lookup(ctx, key, req)
	if s.lost.Load() {
		return store.Lookup{}, context.DeadlineExceeded
	}
	return lk, err
}

// TestTimedOutLookupLeavesNoLease: a lookup whose reply was lost
// may still have been granted the lease; the next Get of the key must not
// wait for it, in this process or (once the store answers) in another.
func TestTimedOutLookupLeavesNoLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMem(t)
		ls := &lateStore{Store: mem}
		const leaseTTL = 10 * time.Second
		const cooldown = 10 * time.Millisecond
		c := newCache(t, ls, paddock.LeaseTTL(leaseTTL), paddock.Breaker(100, cooldown))
		l := newLoader[string](t, c, "p")
		load := func(context.Context) (string, error) { return "v", nil }

		ls.lost.Store(true)
		if v, err := l.Get(ctx, "a", load); err != nil || v != "v" { // loads without the store
			t.Fatal(v, err)
		}
		ls.lost.Store(false)
		// The timeout opened the breaker; the next Get, past its cooldown
		// and before the retrier gives the lease up, takes it back.
		time.Sleep(cooldown + time.Millisecond)
		start := time.Now()
		r, err := l.Fetch(ctx, "a", load)
		if err != nil || r.Value != "v" {
			t.Fatal(r, err)
		}
		if waited := time.Since(start); waited >= time.Second {
			t.Errorf("the Get after recovery waited %v on the lease its own Cache abandoned", waited)
		}
		if _, found, _ := l.Peek(ctx, "a"); !found {
			t.Errorf("the Get after recovery did not fill: %+v", c.Stats()["p"])
		}

		// Another process, after this one abandoned a lease and the store
		// answers again: the retrier gave the lease up.
		ls.lost.Store(true)
		l.Get(ctx, "b", load)
		ls.lost.Store(false)
		time.Sleep(time.Second) // the retrier's delay, at most
		other := newLoader[string](t, newCache(t, mem, paddock.LeaseTTL(leaseTTL)), "p")
		start = time.Now()
		if _, err := other.Get(ctx, "b", load); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited >= time.Second {
			t.Errorf("another process waited %v on an abandoned lease", waited)
		}
	})
}

// TestFailedInvalidationIsKeptAndRetried: an invalidation the store did
// not acknowledge binds this process at once and the store once it
// answers again, within the retry delay.
func TestFailedInvalidationIsKeptAndRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMem(t)
		ss := &slowStore{Store: mem, remote: true}
		c := newCache(t, ss, paddock.Breaker(100, time.Second))
		pages := newLoader[string](t, c, "page", paddock.TTL(time.Hour))
		other := newLoader[string](t, newCache(t, mem), "page", paddock.TTL(time.Hour)) // another process
		var version atomic.Int64
		version.Store(1)
		render := func(ctx context.Context) (string, error) {
			paddock.Tag(ctx, "article:1")
			return fmt.Sprint("home v", version.Load()), nil
		}
		if v, _ := pages.Get(ctx, "home", render); v != "home v1" {
			t.Fatal(v)
		}
		other.Get(ctx, "home", render)

		// The store is frozen while the article is published.
		ss.latency.Store(int64(time.Hour))
		version.Store(2)
		err := c.InvalidateTags(ctx, "article:1")
		if !errors.Is(err, paddock.ErrStoreUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("InvalidateTags with the store frozen = %v", err)
		}
		if msg := err.Error(); strings.Count(msg, "store unavailable") != 1 {
			t.Errorf("error text stutters: %q", msg)
		}
		if st := c.Stats()[""]; st.InvalidationsPending != 1 {
			t.Errorf("pending = %d, want 1", st.InvalidationsPending)
		}
		// The store answers again (faster than the Cache's timeout), still
		// holding the old page; the retrier has not run yet.
		ss.latency.Store(int64(time.Millisecond))
		thawed := time.Now()
		if v, err := pages.Get(ctx, "home", render); err != nil || v != "home v2" {
			t.Errorf("this process while the invalidation is pending: %q, %v; want the new page", v, err)
		}
		// The fleet is bound once the retry lands: at most one retry
		// delay after the store answers again.
		for time.Since(thawed) < 2*time.Second {
			if c.Stats()[""].InvalidationsPending == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if d := time.Since(thawed); d > time.Second+50*time.Millisecond {
			t.Errorf("the pending invalidation was applied %v after the store answered, want at most 1 s", d)
		}
		if v, _ := other.Get(ctx, "home", render); v != "home v2" {
			t.Errorf("another process after the retry: %q", v)
		}
		st := c.Stats()[""]
		if st.InvalidationsPending != 0 || st.InvalidationsRetried != 1 {
			t.Errorf("stats = %+v", st)
		}
	})
}

// TestPendingInvalidationFencesFlights: a Get that starts after a failed
// invalidation does not take the result of a load that began before it,
// and that load does not fill.
func TestPendingInvalidationFencesFlights(t *testing.T) {
	modes(t, func(t *testing.T, store func(*testing.T) store.Store) {
		synctest.Test(t, func(t *testing.T) {
			fs := &faultStore{Store: store(t)}
			c := newCache(t, fs, paddock.Breaker(100, time.Second))
			l := newLoader[string](t, c, "p")
			var row atomic.Int64
			row.Store(1)
			gate := make(chan struct{})
			load := func(context.Context) (string, error) {
				v := fmt.Sprint("v", row.Load())
				<-gate
				return v, nil
			}
			first := make(chan string, 1)
			go func() { v, _ := l.Get(ctx, "k", load); first <- v }()
			synctest.Wait() // the load read v1 and is blocked

			row.Store(2)
			fs.setFail(errDown)
			if err := l.Invalidate(ctx, "k"); !errors.Is(err, paddock.ErrStoreUnavailable) {
				t.Fatalf("Invalidate = %v", err)
			}
			fs.setFail(nil)
			second := make(chan string, 1)
			go func() { v, _ := l.Get(ctx, "k", load); second <- v }()
			synctest.Wait()
			close(gate)
			if v := <-first; v != "v1" {
				t.Errorf("the Get that began before the invalidation = %q", v)
			}
			if v := <-second; v != "v2" {
				t.Errorf("the Get that began after the failed invalidation = %q, want v2", v)
			}
		})
	})
}

// TestCloseFlushesPendingInvalidations: Close tries the pending
// invalidations once more and names those it could not apply.
func TestCloseFlushesPendingInvalidations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ss := &slowStore{Store: newMem(t), remote: true}
		c, err := paddock.New(ss)
		if err != nil {
			t.Fatal(err)
		}
		ss.setFail(errDown)
		c.InvalidateTags(ctx, "article:1")
		if err := c.Close(); !errors.Is(err, paddock.ErrStoreUnavailable) || !strings.Contains(err.Error(), "tag article:1") {
			t.Errorf("Close with the store down = %v", err)
		}

		c, _ = paddock.New(ss)
		c.InvalidateTags(ctx, "article:2")
		ss.setFail(nil)
		if err := c.Close(); err != nil {
			t.Errorf("Close with the store back = %v", err)
		}
	})
}

// TestDeadStoreCostsOneTimeout: a store that does not answer
// costs one store timeout, then nearly nothing per Get while the breaker
// is open.
func TestDeadStoreCostsOneTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ss := &slowStore{Store: newMem(t), remote: true}
		ss.latency.Store(int64(time.Hour))
		c := newCache(t, ss)
		l := newLoader[string](t, c, "p")
		var total time.Duration
		for i := range 5 {
			start := time.Now()
			if v, err := l.Get(ctx, fmt.Sprint("k", i), func(context.Context) (string, error) { return "v", nil }); err != nil || v != "v" {
				t.Fatal(v, err)
			}
			total += time.Since(start)
		}
		if total > paddock.DefaultStoreTimeout+10*time.Millisecond {
			t.Errorf("5 Gets with a dead store took %v, want one store timeout (%v)", total, paddock.DefaultStoreTimeout)
		}
		synctest.Wait()
	})
}

// TestCloseWaitsForRefreshes: Close and background refreshes
// race under -race, and after Close returns nothing of the Cache runs.
func TestCloseWaitsForRefreshes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := paddock.New(newMem(t))
		if err != nil {
			t.Fatal(err)
		}
		l := newLoader[string](t, c, "p", paddock.TTL(time.Minute), paddock.Stale(time.Hour), paddock.Beta(0))
		var closed atomic.Bool
		var late atomic.Int64
		load := func(ctx context.Context) (string, error) {
			if closed.Load() {
				late.Add(1)
			}
			<-ctx.Done() // a load that runs until it is told to stop
			return "", ctx.Err()
		}
		for i := range 64 {
			l.Get(ctx, fmt.Sprint(i), func(context.Context) (string, error) { return "v", nil })
		}
		time.Sleep(2 * time.Minute)
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Go(func() { l.Get(ctx, fmt.Sprint(i), load) })
		}
		if err := c.Close(); err != nil {
			t.Error(err)
		}
		closed.Store(true)
		wg.Wait()
		synctest.Wait()
		if n := late.Load(); n != 0 {
			t.Errorf("%d loads started after Close returned", n)
		}
	})
}

// TestErrorsForWhatUsersGetWrong: clear errors for mistakes users make.
func TestErrorsForWhatUsersGetWrong(t *testing.T) {
	mem := newMem(t)
	c := newCache(t, mem)
	l := newLoader[string](t, c, "p")
	load := func(context.Context) (string, error) { return "v", nil }

	if err := c.Invalidate(ctx, "k0b"); !errors.Is(err, paddock.ErrInvalidOption) || !strings.Contains(err.Error(), "Loader.Key") {
		t.Errorf("Invalidate of a bare key = %v", err)
	}
	if err := c.Invalidate(ctx, "elsewhere:k"); err != nil {
		t.Errorf("Invalidate of another process's namespace = %v", err)
	}

	// A load that runs out of its own time says so.
	_, err := l.Get(ctx, "slow", func(ctx context.Context) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	}, paddock.LoadTimeout(time.Millisecond))
	if !errors.Is(err, paddock.ErrLoadTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a load past its LoadTimeout = %v", err)
	}

	// After the store's Close, Gets fail rather than load in silence.
	mem.Close()
	if _, err := l.Get(ctx, "k", load); !errors.Is(err, paddock.ErrClosed) {
		t.Errorf("Get after the store's Close = %v", err)
	}
	if err := l.Set(ctx, "k", "v"); !errors.Is(err, paddock.ErrClosed) {
		t.Errorf("Set after the store's Close = %v", err)
	}

	c.Close()
	if _, err := paddock.NewLoader[string](c, "q"); !errors.Is(err, paddock.ErrClosed) {
		t.Errorf("NewLoader after Close = %v", err)
	}
}

// TestSetErrorKeepsItsCause: Set's error says what failed.
func TestSetErrorKeepsItsCause(t *testing.T) {
	fs := &faultStore{Store: remoteStore{newMem(t)}}
	c := newCache(t, fs)
	l := newLoader[string](t, c, "p")
	fs.setFail(errDown)
	err := l.Set(ctx, "k", "v")
	if !errors.Is(err, paddock.ErrStoreUnavailable) || !errors.Is(err, errDown) {
		t.Errorf("Set with the store down = %v", err)
	}
}

// corruptStore reports one key's data as unparseable.
type corruptStore struct {
	store.Store
	asError bool // report it as an error wrapping ErrCorrupt, not a miss
}

func (s *corruptStore) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	lk, err := s.Store.Lookup(ctx, key, req)
	if key == "p:bad" && err == nil {
		if s.asError {
			return store.Lookup{}, fmt.Errorf("store: %w", paddock.ErrCorrupt)
		}
		lk.Entry, lk.State, lk.Corrupt = nil, store.StateMiss, true
	}
	return lk, err
}

// TestCorruptEntryNeverTripsBreaker, on the Cache's side: one
// key's bad data is a miss, counted, and never opens the breaker.
func TestCorruptEntryNeverTripsBreaker(t *testing.T) {
	for _, asError := range []bool{false, true} {
		t.Run(fmt.Sprintf("asError=%v", asError), func(t *testing.T) {
			cs := &corruptStore{Store: newMem(t), asError: asError}
			c := newCache(t, cs, paddock.Breaker(1, time.Hour))
			l := newLoader[string](t, c, "p")
			load := func(context.Context) (string, error) { return "v", nil }
			for range 5 {
				if v, err := l.Get(ctx, "bad", load); err != nil || v != "v" {
					t.Fatal(v, err)
				}
			}
			st := c.Stats()["p"]
			if st.DecodeErrors == 0 || st.StoreErrors != 0 {
				t.Errorf("stats = %+v; want decode errors and no store error", st)
			}
			l.Get(ctx, "good", load)
			if r, err := l.Fetch(ctx, "good", load); err != nil || r.Status != paddock.StatusHit {
				t.Errorf("another key after the bad one: %+v, %v; the breaker opened", r, err)
			}
		})
	}
}

// TestLookupInFlightAcrossTheRetry: a lookup the store ran before a pending
// invalidation's retry, whose reply is read after the retry was
// acknowledged, must not serve the entry the invalidation dropped.
func TestLookupInFlightAcrossTheRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := &faultStore{Store: newMem(t)}
		hs := &holdStore{Store: fs}
		c := newCache(t, hs, paddock.Breaker(100, time.Second))
		l := newLoader[string](t, c, "page", paddock.TTL(time.Hour))
		var version atomic.Int64
		version.Store(1)
		render := func(ctx context.Context) (string, error) {
			paddock.Tag(ctx, "article:1")
			return fmt.Sprint("v", version.Load()), nil
		}
		l.Get(ctx, "home", render)
		version.Store(2)
		fs.setFail(errDown)
		if err := c.InvalidateTags(ctx, "article:1"); err == nil {
			t.Fatal("InvalidateTags succeeded with the store down")
		}
		fs.setFail(nil)
		hs.holdNext()
		got := make(chan string, 1)
		go func() { v, _ := l.Get(ctx, "home", render); got <- v }()
		<-hs.held                          // the store ran the lookup: the old page
		time.Sleep(100 * time.Millisecond) // the retry is applied meanwhile
		if st := c.Stats()[""]; st.InvalidationsPending != 0 || st.InvalidationsRetried != 1 {
			t.Fatalf("the retry did not land: %+v", st)
		}
		close(hs.release)
		if v := <-got; v != "v2" {
			t.Errorf("a Get that began after the failed invalidation = %q, want v2", v)
		}
	})
}

// A value loaded while the store cannot be reached says why it was not
// stored (Result.FillErr), and is still returned.
func TestUnreachableStoreReportsFillErr(t *testing.T) {
	fs := &faultStore{Store: newMem(t)}
	c := newCache(t, fs)
	l := newLoader[string](t, c, "p")
	fs.setFail(errDown)
	r, err := l.Fetch(ctx, "k", func(context.Context) (string, error) { return "v", nil })
	if err != nil || r.Value != "v" || r.Stored || !errors.Is(r.FillErr, paddock.ErrStoreUnavailable) {
		t.Errorf("store down: %+v, %v; want the value, not stored, FillErr ErrStoreUnavailable", r, err)
	}
	fs.setFail(nil)
	r, _ = l.Fetch(ctx, "j", func(ctx context.Context) (string, error) { paddock.NoStore(ctx); return "v", nil })
	if r.FillErr != nil {
		t.Errorf("NoStore with the store up: FillErr %v", r.FillErr)
	}
}
