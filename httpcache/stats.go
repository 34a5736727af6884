package httpcache

import (
	"cmp"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
)

// outcome is how a request was answered.
type outcome uint8

const (
	outcomeNone      outcome = iota // not counted (the client went away)
	outcomeHit                      // a fresh page
	outcomeStale                    // a stale page (while revalidating, or in place of a failed render)
	outcomeMiss                     // this request's render
	outcomeCoalesced                // another request's render
	outcomeBypass                   // the cache was not used
)

// otherRow is the stats row of the routes past MaxStatsRows.
const otherRow = "(other)"

// statsTable holds the per-route counters, bounded in rows.
type statsTable struct {
	max  int
	mu   sync.RWMutex
	rows map[string]*statsRow
}

type statsRow struct {
	hits, stale, misses, coalesced, bypassed, notModified, stored atomic.Int64
	reasons                                                       [numReasons]atomic.Int64
}

func newStatsTable(max int) *statsTable {
	return &statsTable{max: max, rows: make(map[string]*statsRow)}
}

// label is the stats row of r: its route pattern if a ServeMux routed it
// (r.Pattern), else its path.
func (t *statsTable) label(r *http.Request) string {
	if r.Pattern != "" {
		return r.Pattern
	}
	return bounded(r.URL.EscapedPath())
}

func (t *statsTable) row(label string) *statsRow {
	t.mu.RLock()
	row := t.rows[label]
	t.mu.RUnlock()
	if row != nil {
		return row
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if row = t.rows[label]; row != nil {
		return row
	}
	if len(t.rows) >= t.max {
		label = otherRow
		if row = t.rows[label]; row != nil {
			return row
		}
	}
	row = new(statsRow)
	t.rows[label] = row
	return row
}

func (t *statsTable) add(label string, o outcome, why Reason, notModified bool) {
	if o == outcomeNone {
		return
	}
	row := t.row(label)
	switch o {
	case outcomeHit:
		row.hits.Add(1)
	case outcomeStale:
		row.stale.Add(1)
	case outcomeMiss:
		row.misses.Add(1)
		if why == ReasonNone {
			row.stored.Add(1)
		}
	case outcomeCoalesced:
		row.coalesced.Add(1)
	case outcomeBypass:
		row.bypassed.Add(1)
	}
	if notModified {
		row.notModified.Add(1)
	}
	if why != ReasonNone && o != outcomeCoalesced {
		row.reasons[why].Add(1)
	}
}

// RouteStats are the counters of one route (its pattern, when a ServeMux
// routed the request, or its path).
type RouteStats struct {
	Route string `json:"route"`
	// Hits were served a fresh page; Stale a stale one (while it was
	// re-rendered, or in place of a failed render).
	Hits  int64 `json:"hits"`
	Stale int64 `json:"stale"`
	// Misses rendered the page; Stored of them stored it. Coalesced were
	// given another request's render.
	Misses    int64 `json:"misses"`
	Stored    int64 `json:"stored"`
	Coalesced int64 `json:"coalesced"`
	// Bypassed did not use the cache (see Reasons).
	Bypassed int64 `json:"bypassed"`
	// NotModified of the hits were answered 304 Not Modified.
	NotModified int64 `json:"not_modified"`
	// Reasons counts why requests bypassed the cache and why rendered
	// pages were not stored, by [Reason] name.
	Reasons map[string]int64 `json:"reasons,omitempty"`
}

// Requests is the number of requests counted.
func (s RouteStats) Requests() int64 {
	return s.Hits + s.Stale + s.Misses + s.Coalesced + s.Bypassed
}

// HitRatio is the share of requests served from a stored page.
func (s RouteStats) HitRatio() float64 {
	if n := s.Requests(); n > 0 {
		return float64(s.Hits+s.Stale) / float64(n)
	}
	return 0
}

// Stats returns the counters of every route, sorted by route, with the
// total of them as the last row (Route "(total)"). They count the
// requests of this process.
func (c *Cache) Stats() []RouteStats {
	t := c.stats
	t.mu.RLock()
	out := make([]RouteStats, 0, len(t.rows)+1)
	for label, row := range t.rows {
		s := RouteStats{
			Route: label, Hits: row.hits.Load(), Stale: row.stale.Load(), Misses: row.misses.Load(),
			Stored: row.stored.Load(), Coalesced: row.coalesced.Load(), Bypassed: row.bypassed.Load(),
			NotModified: row.notModified.Load(),
		}
		for i := range row.reasons {
			if n := row.reasons[i].Load(); n > 0 {
				if s.Reasons == nil {
					s.Reasons = make(map[string]int64)
				}
				s.Reasons[Reason(i).String()] = n
			}
		}
		out = append(out, s)
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b RouteStats) int { return cmp.Compare(a.Route, b.Route) })
	total := RouteStats{Route: "(total)"}
	for _, s := range out {
		total.Add(s)
	}
	return append(out, total)
}

// Add adds the counters of o to s (its Route stays): to sum the rows of
// several routes, or of several processes.
func (s *RouteStats) Add(o RouteStats) {
	s.Hits += o.Hits
	s.Stale += o.Stale
	s.Misses += o.Misses
	s.Stored += o.Stored
	s.Coalesced += o.Coalesced
	s.Bypassed += o.Bypassed
	s.NotModified += o.NotModified
	for k, n := range o.Reasons {
		if s.Reasons == nil {
			s.Reasons = make(map[string]int64)
		}
		s.Reasons[k] += n
	}
}

// reasons formats a row's reasons as "cookie=3 set-cookie=1".
func (s *RouteStats) reasons() string {
	keys := make([]string, 0, len(s.Reasons))
	for k := range s.Reasons {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, s.Reasons[k])
	}
	return strings.Join(parts, " ")
}

// WriteStats writes the stats as a text table, one row per route: what
// django-fancy-cache's fancy-urls command prints.
func (c *Cache) WriteStats(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ROUTE\tHITS\tSTALE\tMISSES\tSTORED\tCOALESCED\tBYPASSED\t304\tHIT RATIO\tNOT CACHED, WHY\t")
	for _, s := range c.Stats() {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f%%\t%s\t\n",
			s.Route, s.Hits, s.Stale, s.Misses, s.Stored, s.Coalesced, s.Bypassed, s.NotModified, 100*s.HitRatio(), s.reasons())
	}
	return tw.Flush()
}

// StatsHandler serves the stats: an HTML table, JSON for a request that
// accepts application/json (or ?format=json), and the text table of
// [Cache.WriteStats] for text/plain (or ?format=text: curl's view). It
// checks no credentials: mount it where only operators reach it.
func (c *Cache) StatsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		switch format(r) {
		case "json":
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(c.Stats())
		case "text":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			c.WriteStats(w)
		default:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			statsPage.Execute(w, statsView{Namespace: c.ns, Rows: c.Stats()})
		}
	})
}

func format(r *http.Request) string {
	if f := r.URL.Query().Get("format"); f != "" {
		return f
	}
	accept := r.Header.Get("Accept")
	switch {
	case strings.Contains(accept, "application/json"):
		return "json"
	case strings.Contains(accept, "text/html"):
		return "html"
	case strings.Contains(accept, "text/plain"):
		return "text"
	}
	return "html"
}

type statsView struct {
	Namespace string
	Rows      []RouteStats
}

var statsPage = template.Must(template.New("stats").Funcs(template.FuncMap{
	"pct":     func(s RouteStats) string { return fmt.Sprintf("%.1f%%", 100*s.HitRatio()) },
	"width":   func(s RouteStats) string { return fmt.Sprintf("%.0f", 100*s.HitRatio()) },
	"reasons": func(s RouteStats) string { return s.reasons() },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>paddock pages: {{.Namespace}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}th,td{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child,td.why{text-align:left}tr.total td{font-weight:bold;border-top:2px solid #999}
.bar{display:inline-block;height:.8em;background:#4a8;vertical-align:middle;margin-right:.4em}
.why{color:#666;font-size:90%}
</style></head><body>
<h1>Cached pages: {{.Namespace}}</h1>
<table>
<tr><th>Route</th><th>Hits</th><th>Stale</th><th>Misses</th><th>Stored</th><th>Coalesced</th><th>Bypassed</th><th>304</th><th>Hit ratio</th><th>Not cached, why</th></tr>
{{range .Rows}}<tr{{if eq .Route "(total)"}} class="total"{{end}}><td>{{.Route}}</td><td>{{.Hits}}</td><td>{{.Stale}}</td><td>{{.Misses}}</td><td>{{.Stored}}</td><td>{{.Coalesced}}</td><td>{{.Bypassed}}</td><td>{{.NotModified}}</td><td><span class="bar" style="width:{{width .}}px"></span>{{pct .}}</td><td class="why">{{reasons .}}</td></tr>
{{end}}</table>
</body></html>
`))
