// Package admin serves the stats page of a [paddock.Cache]: per namespace
// the hit ratio, loads, refused fills by reason and the consistency
// audit's nines (see [paddock.Audit]); for the Cache the breaker's state
// and the pending invalidations; per URL the page cache's counters (see
// [Pages]); and a chart of the hit ratio over time, drawn as inline SVG
// from a ring of samples the [Handler] keeps. The page is plain HTML with
// no script; the same data is served as JSON to a request that accepts
// application/json or asks ?format=json.
//
// The Handler checks no credentials: authentication is the
// application's. Mount it behind your own (an operators' listener, a
// middleware that checks a session or a client certificate):
//
//	h, err := admin.New(cache, admin.Pages("pages", pages))
//	if err != nil { ... }
//	defer h.Close()
//	mux.Handle("/debug/paddock", requireOperator(h))
package admin

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/httpcache"
)

// Defaults of the options.
const (
	// DefaultInterval is how often the Handler samples the hit ratio.
	DefaultInterval = 10 * time.Second
	// DefaultHistory is how many samples it keeps (15 minutes at the
	// default interval).
	DefaultHistory = 90
)

// PageStats is what the page reads of a page cache: [httpcache.Cache]
// implements it.
type PageStats interface {
	Stats() []httpcache.RouteStats
}

// An Option configures a [Handler].
type Option func(*Handler) error

// Pages adds the per-URL counters of a page cache to the page, under
// name. Default: none.
func Pages(name string, p PageStats) Option {
	return func(h *Handler) error {
		if p == nil {
			return errors.New("admin: Pages: nil PageStats")
		}
		h.pages = append(h.pages, namedPages{name, p})
		return nil
	}
}

// Interval sets how often the Handler samples the hit ratio for its
// chart, on a goroutine of its own that [Handler.Close] stops. Zero
// starts no goroutine: the application samples with [Handler.Sample].
// Default: [DefaultInterval].
func Interval(d time.Duration) Option {
	return func(h *Handler) error {
		if d < 0 {
			return fmt.Errorf("admin: Interval: %v is negative", d)
		}
		h.interval = d
		return nil
	}
}

// History sets how many samples of the hit ratio the Handler keeps: the
// chart's width in samples. Default: [DefaultHistory].
func History(n int) Option {
	return func(h *Handler) error {
		if n < 2 {
			return fmt.Errorf("admin: History: %d samples draw no line (at least 2)", n)
		}
		h.history = n
		return nil
	}
}

type namedPages struct {
	name string
	p    PageStats
}

// A Handler serves the stats page of a Cache. It is safe for concurrent
// use. Create one with [New]; Close it to stop its sampling.
type Handler struct {
	c        *paddock.Cache
	pages    []namedPages
	interval time.Duration
	history  int

	// mu guards the ring of samples and the counts of the last sample,
	// written by Sample and read by every request.
	mu    sync.Mutex
	ring  []Sample // len ≤ history; next is the oldest once it is full
	next  int
	lastN map[string]ratioCounts

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// ratioCounts are what a hit ratio is computed from.
type ratioCounts struct{ hits, requests uint64 }

// New returns a Handler for c. It takes a first sample at once.
func New(c *paddock.Cache, opts ...Option) (*Handler, error) {
	if c == nil {
		return nil, errors.New("admin: New: nil Cache")
	}
	h := &Handler{c: c, interval: DefaultInterval, history: DefaultHistory}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("admin: New: nil Option")
		}
		if err := o(h); err != nil {
			return nil, err
		}
	}
	h.Sample()
	if h.interval > 0 {
		h.stop, h.done = make(chan struct{}), make(chan struct{})
		go h.sampler()
	}
	return h, nil
}

// Close stops the Handler's sampling goroutine and waits for it to
// return. The Handler still serves afterwards, with no new samples.
func (h *Handler) Close() {
	h.closeOnce.Do(func() {
		if h.stop != nil {
			close(h.stop)
			<-h.done
		}
	})
}

func (h *Handler) sampler() {
	defer close(h.done)
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.Sample()
		case <-h.stop:
			return
		}
	}
}

// A Sample is the hit ratio of each namespace between two samples, and of
// them all under "(all)". A namespace with no request in the interval is
// absent.
type Sample struct {
	Time     time.Time          `json:"time"`
	HitRatio map[string]float64 `json:"hit_ratio"`
}

// All is the name under which a Sample holds the hit ratio of every
// namespace together.
const All = "(all)"

// Sample records a sample of the hit ratio now: the ratio of each
// namespace since the previous sample. The Handler calls it every
// [Interval]; call it yourself with Interval(0).
func (h *Handler) Sample() {
	stats := h.c.Stats()
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := make(map[string]ratioCounts, len(stats)+1)
	var all ratioCounts
	for ns, s := range stats {
		if ns == "" {
			continue
		}
		rc := counts(s)
		cur[ns] = rc
		all.hits += rc.hits
		all.requests += rc.requests
	}
	cur[All] = all
	smp := Sample{Time: now, HitRatio: make(map[string]float64)}
	if h.lastN != nil {
		for ns, rc := range cur {
			prev := h.lastN[ns]
			if d := rc.requests - prev.requests; d > 0 {
				smp.HitRatio[ns] = float64(rc.hits-prev.hits) / float64(d)
			}
		}
	}
	h.lastN = cur
	if len(h.ring) < h.history {
		h.ring = append(h.ring, smp)
		return
	}
	h.ring[h.next] = smp
	h.next = (h.next + 1) % h.history
}

// samples returns the samples, oldest first.
func (h *Handler) samples() []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Sample, 0, len(h.ring))
	out = append(out, h.ring[h.next:]...)
	return append(out, h.ring[:h.next]...)
}

func counts(s paddock.Stats) ratioCounts {
	hits := s.Hits + s.StaleHits
	return ratioCounts{hits: hits, requests: hits + s.Misses}
}

// A Snapshot is what the page shows, as the JSON view serves it.
type Snapshot struct {
	Time time.Time `json:"time"`
	// Breaker is the breaker's state: "closed", "open" or "half_open".
	Breaker string `json:"breaker"`
	// PendingInvalidations are invalidations the store has not
	// acknowledged, kept and retried (see [paddock.Cache.Invalidate]);
	// Retried and Dropped count those a retry applied and those given up.
	PendingInvalidations uint64 `json:"pending_invalidations"`
	InvalidationsRetried uint64 `json:"invalidations_retried"`
	InvalidationsDropped uint64 `json:"invalidations_dropped"`
	// Audit reports whether the consistency audit is on.
	Audit      bool        `json:"audit"`
	Namespaces []Namespace `json:"namespaces"`
	Pages      []PageTable `json:"pages,omitempty"`
	// History holds the samples of the hit ratio, oldest first.
	History []Sample `json:"history"`
}

// Namespace is the row of one namespace.
type Namespace struct {
	Name      string `json:"namespace"`
	Hits      uint64 `json:"hits"`
	StaleHits uint64 `json:"stale_hits"`
	Misses    uint64 `json:"misses"`
	// HitRatio is (Hits+StaleHits) / (Hits+StaleHits+Misses) since the
	// Cache was created; 0 with no request.
	HitRatio      float64 `json:"hit_ratio"`
	Loads         uint64  `json:"loads"`
	LoadErrors    uint64  `json:"load_errors"`
	Coalesced     uint64  `json:"coalesced"`
	Invalidations uint64  `json:"invalidations"`
	// RefusedFills counts the fills that stored nothing, by reason (the
	// labels of [paddock.FillResult]: "fenced", "pending", "too_large",
	// "store_error", "encode_error").
	RefusedFills map[string]uint64 `json:"refused_fills,omitempty"`
	// Audit holds the audit's tally per window, when the audit is on.
	Audit []AuditWindow `json:"audit,omitempty"`
}

// AuditWindow is the audit's tally of one window (see
// [paddock.AuditStats]).
type AuditWindow struct {
	// Window is "1s", "10s", "1m0s" or "rest".
	Window     string `json:"window"`
	Checks     uint64 `json:"checks"`
	Violations uint64 `json:"violations"`
	Raced      uint64 `json:"raced"`
	Failed     uint64 `json:"failed"`
	// Nines is the consistency in nines; with AtLeast, a lower bound (no
	// violation among the checks).
	Nines   float64 `json:"nines"`
	AtLeast bool    `json:"nines_at_least"`
}

// PageTable is the per-URL table of one page cache.
type PageTable struct {
	Name   string                 `json:"name"`
	Routes []httpcache.RouteStats `json:"routes"`
}

// Snapshot returns what the page shows now.
func (h *Handler) Snapshot() Snapshot {
	stats := h.c.Stats()
	audit := h.c.AuditStats()
	tags := stats[""]
	snap := Snapshot{
		Time:                 time.Now(),
		Breaker:              h.c.BreakerState().String(),
		PendingInvalidations: tags.InvalidationsPending,
		InvalidationsRetried: tags.InvalidationsRetried,
		InvalidationsDropped: tags.InvalidationsDropped,
		Audit:                audit != nil,
		History:              h.samples(),
	}
	for _, ns := range slices.Sorted(maps.Keys(stats)) {
		if ns == "" {
			continue
		}
		s := stats[ns]
		row := Namespace{
			Name: ns, Hits: s.Hits, StaleHits: s.StaleHits, Misses: s.Misses, Loads: s.Loads,
			LoadErrors: s.LoadErrors, Coalesced: s.Coalesced, Invalidations: s.Invalidations,
		}
		if rc := counts(s); rc.requests > 0 {
			row.HitRatio = float64(rc.hits) / float64(rc.requests)
		}
		for r, n := range s.Fills {
			if r != paddock.FillStored.String() {
				if row.RefusedFills == nil {
					row.RefusedFills = make(map[string]uint64)
				}
				row.RefusedFills[r] = n
			}
		}
		for _, a := range audit[ns] {
			nines, atLeast := a.Nines()
			row.Audit = append(row.Audit, AuditWindow{
				Window: paddock.AuditWindowLabel(a.Window), Checks: a.Checks, Violations: a.Violations,
				Raced: a.Raced, Failed: a.Failed, Nines: nines, AtLeast: atLeast,
			})
		}
		snap.Namespaces = append(snap.Namespaces, row)
	}
	for _, p := range h.pages {
		snap.Pages = append(snap.Pages, PageTable{Name: p.name, Routes: p.p.Stats()})
	}
	return snap
}

// ServeHTTP serves the page: JSON to a request that asks ?format=json or
// accepts application/json (and not text/html first), HTML otherwise.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	snap := h.Snapshot()
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		writeJSON(w, &snap)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	writeHTML(w, &snap)
}

// wantsJSON reports whether r asks for JSON: ?format=json, or an Accept
// header that names application/json before text/html.
func wantsJSON(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "json"
	}
	accept := r.Header.Get("Accept")
	j := strings.Index(accept, "application/json")
	h := strings.Index(accept, "text/html")
	return j >= 0 && (h < 0 || j < h)
}

// sortedKeys returns m's keys, sorted.
func sortedKeys[V any](m map[string]V) []string {
	return slices.SortedFunc(maps.Keys(m), cmp.Compare[string])
}
