package linearizability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/memstore"
)

// The rows, and their tags: a names t0 late (paddock.Tag), b names it
// early (paddock.Tags).
var (
	keys      = []string{"a", "b"}
	earlyTags = map[string][]string{"b": {"t0"}}
	lateTags  = map[string][]string{"a": {"t0"}}
)

const rounds = 200

// TestLinearizable records histories of Gets, commits and invalidations
// and checks each with porcupine.
func TestLinearizable(t *testing.T) {
	for seed := range uint64(rounds) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			ops := record(t, seed)
			res, info := porcupine.CheckOperationsVerbose(spec, ops, time.Minute)
			if res != porcupine.Ok {
				path := filepath.Join(t.TempDir(), "history.html")
				if os.Getenv("LINEARIZABILITY_OUT") != "" {
					path = os.Getenv("LINEARIZABILITY_OUT")
				}
				porcupine.VisualizePath(spec, info, path)
				t.Fatalf("history of %d operations is %s; visualization: %s", len(ops), res, path)
			}
		})
	}
}

// TestLinearizableCanFail turns off one safety mechanism at a time and
// checks that porcupine then finds a history that is not linearizable.
func TestLinearizableCanFail(t *testing.T) {
	for name, sw := range map[string]*atomic.Bool{
		"NoFence":        &hooks.NoFence,
		"JoinOldFlights": &hooks.JoinOldFlights,
		"HardAsSoft":     &hooks.HardAsSoft,
		"IgnoreLoadTags": &hooks.IgnoreLoadTags,
	} {
		t.Run(name, func(t *testing.T) {
			sw.Store(true)
			defer hooks.Reset()
			for seed := range uint64(rounds) {
				if !porcupine.CheckOperations(spec, record(t, seed)) {
					t.Logf("with %s on, seed %d gave a history that is not linearizable", name, seed)
					return
				}
			}
			t.Fatalf("with %s on, none of %d histories was found not linearizable", name, rounds)
		})
	}
}

// The operations.
type input struct {
	op  string // "commit", "invalidate", "get"
	key string
	v   int // commit: the version written
}

type state struct{ db, floor int }

var spec = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, o := range h {
			k := o.Input.(input).key
			by[k] = append(by[k], o)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return state{db: 1} },
	Step: func(st, in, out any) (bool, any) {
		s, i := st.(state), in.(input)
		switch i.op {
		case "commit":
			return i.v == s.db+1, state{db: i.v, floor: s.floor}
		case "invalidate":
			return true, state{db: s.db, floor: s.db}
		default:
			v := out.(int)
			return s.floor <= v && v <= s.db, s
		}
	},
	DescribeOperation: func(in, out any) string {
		i := in.(input)
		switch i.op {
		case "commit":
			return fmt.Sprintf("commit %s v%d", i.key, i.v)
		case "invalidate":
			return "invalidate " + i.key
		}
		return fmt.Sprintf("get %s -> v%v", i.key, out)
	},
	DescribeState: func(st any) string {
		s := st.(state)
		return fmt.Sprintf("db v%d, floor v%d", s.db, s.floor)
	},
}

// record runs one workload in a synctest bubble and returns its history.
func record(t *testing.T, seed uint64) []porcupine.Operation {
	var (
		ops   []porcupine.Operation
		opsMu sync.Mutex
		clock atomic.Int64
	)
	add := func(client int, in input, out any, call, ret int64) {
		opsMu.Lock()
		ops = append(ops, porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret})
		opsMu.Unlock()
	}
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store, err := memstore.New(memstore.MaxBytes(1<<20), memstore.MaxEntryBytes(4<<10))
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		var (
			dbMu    sync.Mutex
			db      = map[string]int{"a": 1, "b": 1}
			caches  []*paddock.Cache
			loaders []*paddock.Loader[string]
		)
		for range 3 {
			c, err := paddock.New(store, paddock.LeaseTTL(2*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			l, err := paddock.NewLoader[string](c, "row", paddock.TTL(3*time.Second), paddock.Stale(time.Second), paddock.Beta(0),
				paddock.LoadTimeout(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			caches, loaders = append(caches, c), append(loaders, l)
		}
		sleep := func(r *rand.Rand, max time.Duration) { time.Sleep(time.Duration(r.Int64N(int64(max)))) }
		// Loads run on goroutines of their own (background refreshes
		// too): they draw from a shared, locked source.
		var loadMu sync.Mutex
		loadRand := rand.New(rand.NewPCG(seed, 1000))
		loadSleep := func(max time.Duration) {
			loadMu.Lock()
			d := time.Duration(loadRand.Int64N(int64(max)))
			loadMu.Unlock()
			time.Sleep(d)
		}

		var wg sync.WaitGroup
		for id := range 6 { // readers
			wg.Go(func() {
				r := rand.New(rand.NewPCG(seed, uint64(id)))
				for range 30 {
					sleep(r, 200*time.Millisecond)
					key := keys[r.IntN(len(keys))]
					l := loaders[r.IntN(len(loaders))]
					load := func(ctx context.Context) (string, error) {
						loadSleep(300 * time.Millisecond)
						dbMu.Lock()
						v := db[key]
						dbMu.Unlock()
						if tags := lateTags[key]; len(tags) > 0 {
							paddock.Tag(ctx, tags...)
						}
						loadSleep(300 * time.Millisecond)
						return strconv.Itoa(v), nil
					}
					call := clock.Add(1)
					got, err := l.Get(ctx, key, load, paddock.Tags(earlyTags[key]...))
					ret := clock.Add(1)
					if err != nil {
						continue
					}
					v, _ := strconv.Atoi(got)
					add(id, input{op: "get", key: key}, v, call, ret)
				}
			})
		}
		for id := range 2 { // writers: commit, then invalidate the key or the tag
			wg.Go(func() {
				r := rand.New(rand.NewPCG(seed, 100+uint64(id)))
				client := 6 + id
				for range 20 {
					sleep(r, 400*time.Millisecond)
					byTag := r.IntN(2) == 0
					touched := []string{keys[r.IntN(len(keys))]}
					if byTag {
						touched = keys // t0 covers both rows
					}
					dbMu.Lock()
					for _, k := range touched {
						call := clock.Add(1)
						db[k]++
						add(client, input{op: "commit", key: k, v: db[k]}, nil, call, clock.Add(1))
					}
					dbMu.Unlock()
					c := caches[r.IntN(len(caches))]
					call := clock.Add(1)
					if byTag {
						err = c.InvalidateTags(ctx, "t0")
					} else {
						err = c.Invalidate(ctx, "row:"+touched[0])
					}
					ret := clock.Add(1)
					if err != nil {
						t.Errorf("invalidate: %v", err)
						continue
					}
					for _, k := range touched {
						add(client, input{op: "invalidate", key: k}, nil, call, ret)
					}
				}
			})
		}
		wg.Wait()
		for _, c := range caches {
			c.Close()
		}
	})
	return ops
}
