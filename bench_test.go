package paddock_test

// Benchmarks of the read path on the in-process store, each with simple
// baselines in the same run:
//
//   - impl=paddock:  a Loader on memstore (bigcache behind striped locks).
//   - impl=bigcache: raw bigcache v3, configured like memstore's default
//     (64 shards, 256 MiB); for value=struct it also JSON-decodes, which is
//     what paddock does for a struct.
//   - impl=mutexmap: a map behind a sync.RWMutex, holding the values as
//     they are (no copy, no decode): the floor.
//   - impl=singleflight: golang.org/x/sync/singleflight in front of a mutex
//     map, for the stampede.
//
// Compare with
//
//	go test -run xxx -bench . -benchmem -count 6 . | tee bench.txt
//	benchstat -col /impl bench.txt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/allegro/bigcache/v3"
	"github.com/maypok86/otter/v2"
	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/benchtest"
	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/store"
	"golang.org/x/sync/singleflight"
)

// benchKeys is the number of distinct warm keys the Get benchmarks cycle
// through, so that parallel readers spread over the stores' stripes.
const benchKeys = 1024

// benchArticle is the small struct of value=struct.
type benchArticle struct {
	ID        int64
	Title     string
	AuthorID  int64
	Tags      []string
	Published time.Time
}

var (
	benchBytes   = bytes.Repeat([]byte("paddock!"), 128) // 1 KiB
	benchStruct  = benchArticle{ID: 42, Title: "Paddock 1.0 released", AuthorID: 7, Tags: []string{"go", "cache"}, Published: time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)}
	benchKeyList = func() []string {
		k := make([]string, benchKeys)
		for i := range k {
			k[i] = "key-" + strconv.Itoa(i)
		}
		return k
	}()
)

// benchGetter is one implementation of a warm Get of one of benchKeyList.
type benchGetter func(ctx context.Context, key string) error

// benchModes runs get serially (b.Loop) and in parallel (b.RunParallel),
// cycling through the warm keys. Parallel goroutines write nothing shared.
func benchModes(b *testing.B, get benchGetter) {
	b.Run("mode=serial", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := get(ctx, benchKeyList[i%benchKeys]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("mode=parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			i := rand.IntN(benchKeys)
			for pb.Next() {
				if err := get(ctx, benchKeyList[i%benchKeys]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}

// newBenchCache returns a Cache over a new default memstore, closed when b
// ends.
func newBenchCache(b *testing.B, wrap func(store.Store) store.Store, opts ...paddock.Option) *paddock.Cache {
	b.Helper()
	s, err := memstore.New()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	var store store.Store = s
	if wrap != nil {
		store = wrap(s)
	}
	c, err := paddock.New(store, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func newBenchBigcache(b *testing.B) *bigcache.BigCache {
	b.Helper()
	cfg := bigcache.DefaultConfig(24 * time.Hour)
	cfg.Shards = 64
	cfg.HardMaxCacheSize = 256
	cfg.CleanWindow = time.Minute
	cfg.MaxEntrySize = 1024
	cfg.Verbose = false
	bc, err := bigcache.New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bc.Close() })
	return bc
}

// newBenchBigcacheAsMemstore returns a bigcache configured the way a
// default memstore configures its own (64 shards of 4 MiB, sized for 1 KiB
// entries but starting small, maphash keys), so that a miss's bigcache
// work is the same on both sides.
func newBenchBigcacheAsMemstore(b *testing.B) *bigcache.BigCache {
	b.Helper()
	seed := maphash.MakeSeed()
	cfg := bigcache.Config{
		Shards:           64,
		LifeWindow:       24 * time.Hour,
		CleanWindow:      time.Minute,
		MaxEntrySize:     1024,
		HardMaxCacheSize: 256,
		Hasher:           maphashHasher{seed},
	}
	bc, err := bigcache.New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bc.Close() })
	return bc
}

type maphashHasher struct{ seed maphash.Seed }

func (h maphashHasher) Sum64(key string) uint64 { return maphash.String(h.seed, key) }

// benchPaddockGet returns a warm Get of a paddock Loader[T] holding v under
// every key. A load during the benchmark (there should be none) is an
// error.
func benchPaddockGet[T any](b *testing.B, v T, opts ...paddock.Option) benchGetter {
	c := newBenchCache(b, nil, opts...)
	l, err := paddock.NewLoader[T](c, "bench", paddock.TTL(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	var loads atomic.Int64
	load := func(context.Context) (T, error) { loads.Add(1); return v, nil }
	ctx := context.Background()
	for _, k := range benchKeyList {
		if _, err := l.Get(ctx, k, load); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		// The audit's checks run the load again.
		if n := loads.Load(); n != benchKeys && !(c.AuditStats() != nil && n > benchKeys) {
			b.Errorf("%d loads, want %d (one per key): warm Gets loaded", n, benchKeys)
		}
	})
	return func(ctx context.Context, key string) error {
		_, err := l.Get(ctx, key, load)
		return err
	}
}

// benchOtterGet returns a warm Get of an otter cache holding v under
// every key, with a TTL, as paddock's hot tier is bounded.
func benchOtterGet[T any](b *testing.B, v T) benchGetter {
	c := otter.Must(&otter.Options[string, T]{
		MaximumSize:      paddock.DefaultHotSize,
		ExpiryCalculator: otter.ExpiryWriting[string, T](time.Hour),
	})
	b.Cleanup(func() { c.StopAllGoroutines() })
	for _, k := range benchKeyList {
		c.Set(k, v)
	}
	return func(_ context.Context, key string) error {
		if _, ok := c.GetIfPresent(key); !ok {
			return errors.New("miss")
		}
		return nil
	}
}

func BenchmarkGet(b *testing.B) {
	b.Run("impl=paddock/value=bytes1k", func(b *testing.B) {
		benchModes(b, benchPaddockGet(b, benchBytes))
	})
	b.Run("impl=paddock/value=struct", func(b *testing.B) {
		benchModes(b, benchPaddockGet(b, benchStruct))
	})
	// With a Recorder set: a hit reports nothing, and must cost the same.
	b.Run("impl=paddock/value=struct/recorder=nop", func(b *testing.B) {
		benchModes(b, benchPaddockGet(b, benchStruct, paddock.WithRecorder(paddock.NopRecorder{})))
	})
	// With the consistency audit on at its default sample: a hit pays the
	// draw and, for the few checked, a goroutine that re-runs the load.
	b.Run("impl=paddock/value=struct/audit=on", func(b *testing.B) {
		benchModes(b, benchPaddockGet(b, benchStruct, paddock.Audit(100)))
	})

	// otter v2 as an application would use it for typed values: a
	// bounded map of the decoded value, with a TTL (the hot tier's
	// container, without the tier's exactness checks).
	b.Run("impl=otter/value=bytes1k", func(b *testing.B) {
		benchModes(b, benchOtterGet(b, benchBytes))
	})
	b.Run("impl=otter/value=struct", func(b *testing.B) {
		benchModes(b, benchOtterGet(b, benchStruct))
	})

	b.Run("impl=bigcache/value=bytes1k", func(b *testing.B) {
		bc := newBenchBigcache(b)
		for _, k := range benchKeyList {
			if err := bc.Set(k, benchBytes); err != nil {
				b.Fatal(err)
			}
		}
		benchModes(b, func(_ context.Context, key string) error {
			v, err := bc.Get(key)
			if err == nil && len(v) != len(benchBytes) {
				err = errors.New("wrong value")
			}
			return err
		})
	})
	b.Run("impl=bigcache/value=struct", func(b *testing.B) {
		bc := newBenchBigcache(b)
		enc, err := json.Marshal(benchStruct)
		if err != nil {
			b.Fatal(err)
		}
		for _, k := range benchKeyList {
			if err := bc.Set(k, enc); err != nil {
				b.Fatal(err)
			}
		}
		benchModes(b, func(_ context.Context, key string) error {
			v, err := bc.Get(key)
			if err != nil {
				return err
			}
			var a benchArticle
			return json.Unmarshal(v, &a)
		})
	})

	b.Run("impl=mutexmap/value=bytes1k", func(b *testing.B) {
		m := newBenchMutexMap[[]byte]()
		for _, k := range benchKeyList {
			m.set(k, benchBytes)
		}
		benchModes(b, func(_ context.Context, key string) error {
			if _, ok := m.get(key); !ok {
				return errors.New("miss")
			}
			return nil
		})
	})
	b.Run("impl=mutexmap/value=struct", func(b *testing.B) {
		m := newBenchMutexMap[benchArticle]()
		for _, k := range benchKeyList {
			m.set(k, benchStruct)
		}
		benchModes(b, func(_ context.Context, key string) error {
			if _, ok := m.get(key); !ok {
				return errors.New("miss")
			}
			return nil
		})
	})
}

// benchMutexMap is the simplest cache: a map behind a read-write mutex.
type benchMutexMap[T any] struct {
	mu sync.RWMutex
	m  map[string]T
}

func newBenchMutexMap[T any]() *benchMutexMap[T] {
	return &benchMutexMap[T]{m: make(map[string]T)}
}

func (m *benchMutexMap[T]) get(key string) (T, bool) {
	m.mu.RLock()
	v, ok := m.m[key]
	m.mu.RUnlock()
	return v, ok
}

func (m *benchMutexMap[T]) set(key string, v T) {
	m.mu.Lock()
	m.m[key] = v
	m.mu.Unlock()
}

// BenchmarkMissVs is BenchmarkMiss's paddock and bigcache rows side by
// side in one process: blocks of misses of each, in turn (the order
// reversed every other iteration), so that the three caches hold as many
// entries as one another at every instant and the machine's noise weighs
// on them alike. It reports each one's time per miss and paddock's ratio
// to each bigcache (ns/op is a round of the three blocks).
//
// state=growing starts from empty caches, as a process does: with 1500
// iterations or more (-benchtime 1500x) it runs through their growth into
// eviction, and a bigcache still growing its queues pays for their copies.
// state=full first fills each cache past its 256 MiB, then measures: the
// steady state of a long-running process, where every miss evicts an
// entry.
func BenchmarkMissVs(b *testing.B) {
	for _, full := range []bool{false, true} {
		b.Run("state="+map[bool]string{false: "growing", true: "full"}[full], func(b *testing.B) {
			benchMissVs(b, full)
		})
	}
}

func benchMissVs(b *testing.B, full bool) {
	l, err := paddock.NewLoader[[]byte](newBenchCache(b, nil), "miss", paddock.TTL(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	load := func(context.Context) ([]byte, error) { return benchBytes, nil }
	ctx := context.Background()
	pre, asMem := newBenchBigcache(b), newBenchBigcacheAsMemstore(b)
	const block = 256
	keys := make([]string, block)
	i := 0
	next := func() {
		for j := range keys {
			keys[j] = "m" + strconv.Itoa(i)
			i++
		}
	}
	viaBigcache := func(bc *bigcache.BigCache, prefix string) {
		for _, k := range keys {
			k = prefix + k
			if _, err := bc.Get(k); !errors.Is(err, bigcache.ErrEntryNotFound) {
				b.Fatalf("Get(%s): %v, want a miss", k, err)
			}
			if err := bc.Set(k, benchBytes); err != nil {
				b.Fatal(err)
			}
		}
	}
	runs := []func(){
		func() {
			for _, k := range keys {
				if _, err := l.Get(ctx, k, load); err != nil {
					b.Fatal(err)
				}
			}
		},
		func() { viaBigcache(asMem, "miss:") },
		func() { viaBigcache(pre, "") },
	}
	if full {
		// 256 MiB hold fewer than 256 Ki entries of 1 KiB with their
		// keys and headers: 1.5 times that many leave each cache full.
		for range 3 << 18 / 2 / block {
			next()
			for _, run := range runs {
				run()
			}
		}
	}
	spent, n := benchtest.Interleave(b, next, runs...) // the three caches get the same keys
	misses := float64(n * block)
	b.ReportMetric(float64(spent[0].Nanoseconds())/misses, "paddock-ns/miss")
	b.ReportMetric(float64(spent[1].Nanoseconds())/misses, "bigcache-as-memstore-ns/miss")
	b.ReportMetric(float64(spent[2].Nanoseconds())/misses, "bigcache-ns/miss")
	b.ReportMetric(float64(spent[0])/float64(spent[1]), "paddock/bigcache-as-memstore")
	b.ReportMetric(float64(spent[0])/float64(spent[2]), "paddock/bigcache")
}

// BenchmarkMiss: each iteration a new key, so each Get misses, loads (a
// load that returns a 1 KiB value at once) and fills. The baselines do the
// same by hand: a missed Get, then a Set.
func BenchmarkMiss(b *testing.B) {
	b.Run("impl=paddock", func(b *testing.B) { benchMissGets(b, nil, context.Background()) })
	// The Cache's own share of a miss: the same Gets over a store that
	// keeps nothing, and answers at once.
	b.Run("impl=paddock-nop-store", func(b *testing.B) {
		benchMissGets(b, func(store.Store) store.Store { return nopStore{} }, context.Background())
	})
	// A caller whose context can end (a request's) does not wait for the
	// load on its own goroutine: the load and the fill run on one of the
	// Cache's, and the caller waits for it.
	b.Run("impl=paddock-cancelable-ctx", func(b *testing.B) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		benchMissGets(b, nil, ctx)
	})
	b.Run("impl=bigcache", func(b *testing.B) {
		bc := newBenchBigcache(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k := "m" + strconv.Itoa(i)
			if _, err := bc.Get(k); !errors.Is(err, bigcache.ErrEntryNotFound) {
				b.Fatalf("Get(%s): %v, want a miss", k, err)
			}
			if err := bc.Set(k, benchBytes); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("impl=bigcache-as-memstore", func(b *testing.B) {
		bc := newBenchBigcacheAsMemstore(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k := "miss:m" + strconv.Itoa(i)
			if _, err := bc.Get(k); !errors.Is(err, bigcache.ErrEntryNotFound) {
				b.Fatalf("Get(%s): %v, want a miss", k, err)
			}
			if err := bc.Set(k, benchBytes); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("impl=mutexmap", func(b *testing.B) {
		m := newBenchMutexMap[[]byte]()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k := "m" + strconv.Itoa(i)
			if _, ok := m.get(k); ok {
				b.Fatalf("Get(%s) hit", k)
			}
			m.set(k, benchBytes)
			i++
		}
	})
}

// benchMissGets makes BenchmarkMiss's paddock rows: Gets with ctx of a
// new key each, each loading (a load that returns a 1 KiB value at once)
// and filling, on the store newBenchCache makes with wrap.
func benchMissGets(b *testing.B, wrap func(store.Store) store.Store, ctx context.Context) {
	l, err := paddock.NewLoader[[]byte](newBenchCache(b, wrap), "miss", paddock.TTL(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	var loads atomic.Int64
	load := func(context.Context) ([]byte, error) { loads.Add(1); return benchBytes, nil }
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := l.Get(ctx, "m"+strconv.Itoa(i), load); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(loads.Load())/float64(i), "loads/op")
}

// nopStore keeps nothing: every lookup is a miss granted the lease, and
// every fill is accepted. It implements store.Notifier, as memstore does,
// so that a Loader over it keeps its hot tier.
type nopStore struct{}

func (nopStore) Lookup(_ context.Context, _ string, req store.LookupRequest) (store.Lookup, error) {
	return store.Lookup{Now: time.Now(), Ticket: store.Ticket{Epoch: 1, Seq: 1}, Lease: req.Lease != 0}, nil
}
func (nopStore) Fill(context.Context, string, *store.Fill) (bool, error) { return true, nil }
func (nopStore) Release(context.Context, string, uint64) error           { return nil }
func (nopStore) Invalidate(context.Context, store.Invalidation) error    { return nil }
func (nopStore) Close() error                                            { return nil }
func (nopStore) Subscribe(func(keys, tags []string)) (cancel func())     { return func() {} }

// stampedeCallers is how many callers miss the same cold key at once.
const stampedeCallers = 1000

// A stampedeRound is one iteration of BenchmarkStampede: its load is held
// at gate until every caller has arrived, that is has asked the store (or
// the cache) and found the key missing.
type stampedeRound struct {
	arrived atomic.Int64
	gate    chan struct{}
}

func newStampedeRound() *stampedeRound { return &stampedeRound{gate: make(chan struct{})} }

func (r *stampedeRound) arrive() {
	if r.arrived.Add(1) == stampedeCallers {
		close(r.gate)
	}
}

// stampedeCaller travels in a caller's context, so that the store can tell
// when each caller's first Lookup has been answered.
type stampedeCaller struct {
	round   *stampedeRound
	counted atomic.Bool
}

type stampedeCallerKey struct{}

// arrivalStore wraps a store and counts a caller as arrived when its first
// Lookup has returned. Once every caller has had its answer (one has the
// lease, the others are told it is held), the gate opens and the load may
// finish: every caller took part in the stampede, and no sleep was needed
// to make sure of it. (Lookups of a flight that polls the lease holder run
// on the context of the caller that started it, and are not counted
// again.)
type arrivalStore struct{ store.Store }

func (s arrivalStore) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	lk, err := s.Store.Lookup(ctx, key, req)
	if c, ok := ctx.Value(stampedeCallerKey{}).(*stampedeCaller); ok && c.counted.CompareAndSwap(false, true) {
		c.round.arrive()
	}
	return lk, err
}

// runStampede runs one round: stampedeCallers goroutines start together
// and call get; it returns when all have returned.
func runStampede(b *testing.B, get func(ctx context.Context) error) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range stampedeCallers {
		wg.Go(func() {
			<-start
			if err := get(context.Background()); err != nil {
				b.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
}

// BenchmarkStampede: per iteration, a new cold key and stampedeCallers
// callers that all miss it at once. loads/op is the number of loads per
// stampede: 1 means perfect coalescing.
func BenchmarkStampede(b *testing.B) {
	name := "callers=" + strconv.Itoa(stampedeCallers)
	b.Run(name+"/impl=paddock", func(b *testing.B) {
		c := newBenchCache(b, func(s store.Store) store.Store { return arrivalStore{s} })
		l, err := paddock.NewLoader[[]byte](c, "stampede", paddock.TTL(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		var loads atomic.Int64
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			key := "s" + strconv.Itoa(i)
			i++
			round := newStampedeRound()
			load := func(context.Context) ([]byte, error) {
				<-round.gate
				loads.Add(1)
				return benchBytes, nil
			}
			runStampede(b, func(ctx context.Context) error {
				ctx = context.WithValue(ctx, stampedeCallerKey{}, &stampedeCaller{round: round})
				v, err := l.Get(ctx, key, load)
				if err == nil && len(v) != len(benchBytes) {
					err = errors.New("wrong value")
				}
				return err
			})
		}
		b.ReportMetric(float64(loads.Load())/float64(i), "loads/op")
	})

	// The usual hand-made cache-aside: check a map; on a miss, one
	// singleflight call that checks again, loads and fills.
	b.Run(name+"/impl=singleflight", func(b *testing.B) {
		var (
			g     singleflight.Group
			m     = newBenchMutexMap[[]byte]()
			loads atomic.Int64
		)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			key := "s" + strconv.Itoa(i)
			i++
			round := newStampedeRound()
			runStampede(b, func(context.Context) error {
				if _, ok := m.get(key); ok {
					return nil
				}
				round.arrive()
				v, err, _ := g.Do(key, func() (any, error) {
					if v, ok := m.get(key); ok {
						return v, nil
					}
					<-round.gate
					loads.Add(1)
					m.set(key, benchBytes)
					return benchBytes, nil
				})
				if err == nil && len(v.([]byte)) != len(benchBytes) {
					err = errors.New("wrong value")
				}
				return err
			})
		}
		b.ReportMetric(float64(loads.Load())/float64(i), "loads/op")
	})
}

// BenchmarkGetAfterInvalidate measures the Get of a key that begins right
// after Invalidate returned while a load of the key that began before is
// still running (a 20 ms load, invalidated as it starts): get-ms/op is how
// long that Get took. With the doomed flight detached and its lease broken
// it loads at once; with both switched off (mode=wait) it waits for the
// doomed load and then loads again.
func BenchmarkGetAfterInvalidate(b *testing.B) {
	const loadTime = 20 * time.Millisecond
	for _, wait := range []bool{false, true} {
		mode := "detach"
		if wait {
			mode = "wait"
		}
		b.Run("mode="+mode, func(b *testing.B) {
			defer hooks.Reset()
			hooks.WaitDoomed.Store(wait)
			hooks.LeaseOutlivesInvalidation.Store(wait)
			l, err := paddock.NewLoader[string](newBenchCache(b, nil), "doomed")
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			var total time.Duration
			n := 0
			for b.Loop() {
				key := strconv.Itoa(n)
				started := make(chan struct{})
				old := make(chan struct{})
				go func() {
					defer close(old)
					l.Get(ctx, key, func(context.Context) (string, error) {
						close(started)
						time.Sleep(loadTime)
						return "old", nil
					})
				}()
				<-started
				if err := l.Invalidate(ctx, key); err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if v, err := l.Get(ctx, key, func(context.Context) (string, error) { return "new", nil }); err != nil || v != "new" {
					b.Fatalf("Get after the invalidation = %q, %v", v, err)
				}
				total += time.Since(t0)
				<-old
				n++
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(n), "get-ms/op")
		})
	}
}
