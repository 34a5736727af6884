// Package fleetstats publishes a Cache's counters to Redis, so that the
// counters of a whole fleet can be read in one place (paddockctl stats and
// paddockctl urls read them), and reads them back.
//
// Publishing is opt-in: each process that wants to be counted runs a
// [Publisher]:
//
//	p, err := fleetstats.New(cache, fleetstats.Pages(pages))
//	if err != nil { ... }
//	go p.Run(ctx, nil) // publishes now and every interval, until ctx ends
//
// Each process writes one hash, "<prefix>{_}:stats:<process>", that
// expires after three intervals without a publication: a process that
// dies vanishes from the sums by itself, and one that ends its Run
// removes its hash at once. A sorted set, "<prefix>{_}:stats", lists the
// processes. The counters are the process's own since it started (what
// [paddock.Cache.Stats] and [httpcache.Cache.Stats] return), so a sum is
// the sum over the processes alive now, and it drops when one goes.
//
// Everything lives under the hash tag {_}, in one Cluster slot, so a
// publication is one MULTI and a read is two round trips (the list, then
// one pipeline of every hash), whatever the size of the fleet.
package fleetstats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/httpcache"
	"github.com/paddockcache/paddock/redisstore"
)

// DefaultInterval is the default of [Interval].
const DefaultInterval = 10 * time.Second

// ErrNotRedis is returned by [New] for a Cache whose store is not a
// *redisstore.Store and no [Client] was given.
var ErrNotRedis = errors.New("fleetstats: the Cache's store is not a redisstore.Store: pass Client")

// A Publisher publishes one process's counters. Create one with [New].
type Publisher struct {
	cache  *paddock.Cache
	pages  []*httpcache.Cache
	client redis.UniversalClient
	prefix string
	id     string
	every  time.Duration
	meta   Meta

	afterPublish func(error) // for tests
}

// An Option configures a [Publisher].
type Option func(*Publisher) error

// Pages adds the per-route counters of page caches to what is published
// (see [httpcache.Cache.Stats]), for paddockctl urls.
func Pages(pages ...*httpcache.Cache) Option {
	return func(p *Publisher) error {
		for _, pc := range pages {
			if pc == nil {
				return errors.New("fleetstats: nil page cache")
			}
		}
		p.pages = append(p.pages, pages...)
		return nil
	}
}

// Interval sets how often [Publisher.Run] publishes; the hash expires
// after three intervals. Default [DefaultInterval]; at least a second.
func Interval(d time.Duration) Option {
	return func(p *Publisher) error {
		if d < time.Second {
			return fmt.Errorf("fleetstats: Interval must be at least 1s, got %v", d)
		}
		p.every = d
		return nil
	}
}

// Name sets the name the process publishes under. Default "host:pid".
// Two processes of one name overwrite each other.
func Name(name string) Option {
	return func(p *Publisher) error {
		if name == "" {
			return errors.New("fleetstats: empty process name")
		}
		p.id = name
		return nil
	}
}

// Client publishes with client under prefix, rather than with the client
// and prefix of the Cache's redisstore.Store. Default: the store's.
func Client(client redis.UniversalClient, prefix string) Option {
	return func(p *Publisher) error {
		if client == nil {
			return errors.New("fleetstats: nil client")
		}
		p.client, p.prefix = client, prefix
		return nil
	}
}

// New returns a Publisher of c's counters. It does no I/O.
func New(c *paddock.Cache, opts ...Option) (*Publisher, error) {
	if c == nil {
		return nil, errors.New("fleetstats: nil Cache")
	}
	host, _ := os.Hostname()
	p := &Publisher{cache: c, every: DefaultInterval}
	p.meta = Meta{Host: host, PID: os.Getpid(), Started: time.Now().UTC()}
	p.id = host + ":" + strconv.Itoa(p.meta.PID)
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("fleetstats: nil option")
		}
		if err := o(p); err != nil {
			return nil, err
		}
	}
	if p.client == nil {
		rs, ok := c.Store().(*redisstore.Store)
		if !ok {
			return nil, ErrNotRedis
		}
		p.client, p.prefix = rs.Client(), rs.Prefix()
	}
	return p, nil
}

// Name returns the name the process publishes under.
func (p *Publisher) Name() string { return p.id }

// Meta describes a publishing process.
type Meta struct {
	Host     string        `json:"host"`
	PID      int           `json:"pid"`
	Started  time.Time     `json:"started"`
	Interval time.Duration `json:"interval_ns"`
	// Published is the process's clock when it last published.
	Published time.Time `json:"published"`
}

// The layout, after the prefix.
const (
	indexKey   = "{_}:stats"
	procKey    = "{_}:stats:"
	metaField  = "meta"
	nsField    = "ns:"
	routeField = "route:"
)

func (p *Publisher) ttl() time.Duration { return 3 * p.every }

// Publish writes the counters now: one MULTI that replaces the process's
// hash, sets its expiry and lists the process.
func (p *Publisher) Publish(ctx context.Context) error {
	m := p.meta
	m.Interval = p.every
	m.Published = time.Now().UTC()
	fields := make([]any, 0, 16)
	b, _ := json.Marshal(m)
	fields = append(fields, metaField, b)
	for ns, s := range p.cache.Stats() {
		b, _ := json.Marshal(s)
		fields = append(fields, nsField+ns, b)
	}
	var routes []httpcache.RouteStats
	for _, pc := range p.pages {
		for _, r := range pc.Stats() {
			if r.Route != total {
				routes = append(routes, r)
			}
		}
	}
	for _, r := range sumRoutes(routes) {
		b, _ := json.Marshal(r)
		fields = append(fields, routeField+r.Route, b)
	}
	key := p.prefix + procKey + p.id
	expires := m.Published.Add(p.ttl())
	tx := p.client.TxPipeline()
	tx.Del(ctx, key)
	tx.HSet(ctx, key, fields...)
	tx.PExpire(ctx, key, p.ttl())
	tx.ZAdd(ctx, p.prefix+indexKey, redis.Z{Score: float64(expires.UnixMilli()), Member: p.id})
	// Processes gone for an hour past their expiry leave the list.
	tx.ZRemRangeByScore(ctx, p.prefix+indexKey, "-inf", strconv.FormatInt(m.Published.Add(-time.Hour).UnixMilli(), 10))
	_, err := tx.Exec(ctx)
	if err != nil {
		err = fmt.Errorf("fleetstats: publish: %w", err)
	}
	if p.afterPublish != nil {
		p.afterPublish(err)
	}
	return err
}

// Remove deletes the process's hash and takes it off the list.
func (p *Publisher) Remove(ctx context.Context) error {
	tx := p.client.TxPipeline()
	tx.Del(ctx, p.prefix+procKey+p.id)
	tx.ZRem(ctx, p.prefix+indexKey, p.id)
	if _, err := tx.Exec(ctx); err != nil {
		return fmt.Errorf("fleetstats: remove: %w", err)
	}
	return nil
}

// Run publishes at once and then every interval until ctx ends, then
// removes the process's hash (within a second) and returns ctx's error.
// A publication that fails is tried again at the next interval; errors
// reaches onError, if not nil.
func (p *Publisher) Run(ctx context.Context, onError func(error)) error {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		if err := p.Publish(ctx); err != nil && onError != nil && ctx.Err() == nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = p.Remove(rctx)
			cancel()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// A Process is what one process published.
type Process struct {
	// Name is the name it publishes under (see [Name]).
	Name string `json:"name"`
	Meta
	// Namespaces are its [paddock.Cache.Stats].
	Namespaces map[string]paddock.Stats `json:"namespaces"`
	// Routes are its page caches' per-route counters, without the total
	// row.
	Routes []httpcache.RouteStats `json:"routes,omitempty"`
}

// Read returns what the live processes published under prefix, sorted by
// name: two round trips. A process whose hash expired is not listed.
func Read(ctx context.Context, client redis.UniversalClient, prefix string) ([]Process, error) {
	names, err := client.ZRange(ctx, prefix+indexKey, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("fleetstats: read: %w", err)
	}
	if len(names) == 0 {
		return nil, nil
	}
	pipe := client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.HGetAll(ctx, prefix+procKey+n)
	}
	_, _ = pipe.Exec(ctx)
	var out []Process
	for i, n := range names {
		h, err := cmds[i].Result()
		if err != nil {
			return nil, fmt.Errorf("fleetstats: read %s: %w", n, err)
		}
		if len(h) == 0 {
			continue // expired
		}
		p := Process{Name: n, Namespaces: map[string]paddock.Stats{}}
		for f, v := range h {
			switch {
			case f == metaField:
				err = json.Unmarshal([]byte(v), &p.Meta)
			case strings.HasPrefix(f, nsField):
				var s paddock.Stats
				err = json.Unmarshal([]byte(v), &s)
				p.Namespaces[f[len(nsField):]] = s
			case strings.HasPrefix(f, routeField):
				var r httpcache.RouteStats
				err = json.Unmarshal([]byte(v), &r)
				p.Routes = append(p.Routes, r)
			}
			if err != nil {
				return nil, fmt.Errorf("fleetstats: read %s: field %q: %w", n, f, err)
			}
		}
		slices.SortFunc(p.Routes, func(a, b httpcache.RouteStats) int { return strings.Compare(a.Route, b.Route) })
		out = append(out, p)
	}
	return out, nil
}

// Sum adds up the processes' counters per namespace.
func Sum(procs []Process) map[string]paddock.Stats {
	out := make(map[string]paddock.Stats)
	for _, p := range procs {
		for ns, s := range p.Namespaces {
			out[ns] = Add(out[ns], s)
		}
	}
	return out
}

// Add returns the sum of two namespaces' counters.
func Add(a, b paddock.Stats) paddock.Stats {
	return paddock.Stats{
		Hits: a.Hits + b.Hits, StaleHits: a.StaleHits + b.StaleHits, Misses: a.Misses + b.Misses,
		Loads: a.Loads + b.Loads, LoadErrors: a.LoadErrors + b.LoadErrors, Coalesced: a.Coalesced + b.Coalesced,
		FillsRefused: a.FillsRefused + b.FillsRefused, FillErrors: a.FillErrors + b.FillErrors,
		EarlyRefreshes: a.EarlyRefreshes + b.EarlyRefreshes, Refreshes: a.Refreshes + b.Refreshes,
		Invalidations: a.Invalidations + b.Invalidations, DecodeErrors: a.DecodeErrors + b.DecodeErrors,
		StoreErrors: a.StoreErrors + b.StoreErrors, Evictions: a.Evictions + b.Evictions,
		InvalidationsPending: a.InvalidationsPending + b.InvalidationsPending,
		InvalidationsRetried: a.InvalidationsRetried + b.InvalidationsRetried,
		InvalidationsDropped: a.InvalidationsDropped + b.InvalidationsDropped,
	}
}

// total is the name of httpcache's total row.
const total = "(total)"

// SumRoutes adds up the processes' per-route counters, sorted by route,
// with a total row last (Route "(total)"), as [httpcache.Cache.Stats]
// returns them for one process.
func SumRoutes(procs []Process) []httpcache.RouteStats {
	var all []httpcache.RouteStats
	for _, p := range procs {
		all = append(all, p.Routes...)
	}
	out := sumRoutes(all)
	t := httpcache.RouteStats{Route: total}
	for _, r := range out {
		t.Add(r)
	}
	return append(out, t)
}

// sumRoutes merges rows of one route, sorted by route.
func sumRoutes(rows []httpcache.RouteStats) []httpcache.RouteStats {
	by := make(map[string]*httpcache.RouteStats)
	var order []string
	for _, r := range rows {
		s, ok := by[r.Route]
		if !ok {
			s = &httpcache.RouteStats{Route: r.Route}
			by[r.Route] = s
			order = append(order, r.Route)
		}
		s.Add(r)
	}
	slices.Sort(order)
	out := make([]httpcache.RouteStats, len(order))
	for i, r := range order {
		out[i] = *by[r]
	}
	return out
}
