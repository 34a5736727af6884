package admin

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
)

func writeJSON(w io.Writer, snap *Snapshot) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(snap)
}

func writeHTML(w io.Writer, snap *Snapshot) error {
	return page.Execute(w, view{Snapshot: snap, Chart: chart(snap)})
}

// view is the page template's data.
type view struct {
	*Snapshot
	Chart chartView
}

// The chart's size in pixels, and its margin for the axis labels.
const (
	chartW, chartH = 640, 160
	chartLeft      = 40
	chartBottom    = 20
)

// chartColors are the lines' colors, one per series in turn ("(all)"
// first).
var chartColors = []string{"#222", "#1b7fc4", "#e0762b", "#3a9d4a", "#c43b3b", "#8a5ac7", "#9c7a2b", "#2bb5b5"}

type chartView struct {
	W, H, Left, Bottom int
	PlotW, PlotH       int
	Series             []series
	Samples            int
}

type series struct {
	Name   string
	Color  string
	Points string // an SVG polyline's points
	Last   string // the last sample's ratio, as a percentage
}

// chart draws the hit ratio of each namespace over the samples: x is the
// sample's place in the ring, y the ratio (0 at the bottom, 100% at the
// top). A sample in which a namespace had no request has no point on its
// line: the line joins the samples on either side.
func chart(snap *Snapshot) chartView {
	cv := chartView{W: chartW, H: chartH, Left: chartLeft, Bottom: chartBottom,
		PlotW: chartW - chartLeft - 10, PlotH: chartH - chartBottom - 10, Samples: len(snap.History)}
	names := []string{All}
	for _, ns := range snap.Namespaces {
		names = append(names, ns.Name)
	}
	n := len(snap.History)
	for i, name := range names {
		var pts []string
		last := ""
		for j, smp := range snap.History {
			r, ok := smp.HitRatio[name]
			if !ok {
				continue
			}
			x := float64(cv.Left)
			if n > 1 {
				x += float64(j) * float64(cv.PlotW) / float64(n-1)
			}
			y := 10 + (1-r)*float64(cv.PlotH)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
			last = fmt.Sprintf("%.1f%%", 100*r)
		}
		if len(pts) == 0 {
			continue
		}
		if len(pts) == 1 { // a single sample: a dot-sized line
			pts = append(pts, pts[0])
		}
		cv.Series = append(cv.Series, series{Name: name, Color: chartColors[i%len(chartColors)], Points: strings.Join(pts, " "), Last: last})
	}
	return cv
}

var page = template.Must(template.New("admin").Funcs(template.FuncMap{
	"pct":   func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
	"keys":  sortedKeys[uint64],
	"nines": nines,
	"raced": func(ws []AuditWindow) (n uint64) {
		for _, w := range ws {
			n += w.Raced
		}
		return n
	},
	"failed": func(ws []AuditWindow) (n uint64) {
		for _, w := range ws {
			n += w.Failed
		}
		return n
	},
	"add":  func(a, b int) int { return a + b },
	"sub":  func(a, b int) int { return a - b },
	"half": func(a int) int { return a / 2 },
	"reasons": func(m map[string]int64) string {
		var parts []string
		for _, k := range sortedKeys(m) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
		}
		return strings.Join(parts, " ")
	},
	"refused": func(m map[string]uint64) string {
		var parts []string
		for _, k := range sortedKeys(m) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
		}
		return strings.Join(parts, " ")
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>paddock</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em 2em;color:#222;background:#fff}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse}th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child,td.why{text-align:left}th{background:#f4f4f4}
.why{color:#555;font-size:90%}.summary span{margin-right:1.5em}
.breaker-closed{color:#2a7a3a}.breaker-open,.breaker-half_open{color:#b22;font-weight:bold}
.bad{color:#b22;font-weight:bold}
svg text{font:11px system-ui,sans-serif;fill:#555}
</style></head><body>
<h1>paddock</h1>
<p class="summary"><span>breaker: <b class="breaker-{{.Breaker}}" id="breaker">{{.Breaker}}</b></span>
<span>pending invalidations: <b id="pending">{{.PendingInvalidations}}</b></span>
<span>retried: {{.InvalidationsRetried}}</span><span>dropped: {{.InvalidationsDropped}}</span>
<span>audit: {{if .Audit}}on{{else}}off{{end}}</span></p>

<h2>Hit ratio over time</h2>
<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{{.Chart.W}}" height="{{.Chart.H}}" viewBox="0 0 {{.Chart.W}} {{.Chart.H}}" role="img" aria-label="hit ratio over the last {{.Chart.Samples}} samples">
<rect x="{{.Chart.Left}}" y="10" width="{{.Chart.PlotW}}" height="{{.Chart.PlotH}}" fill="#fafafa" stroke="#ccc"/>
<line x1="{{.Chart.Left}}" x2="{{add .Chart.Left .Chart.PlotW}}" y1="{{add 10 (half .Chart.PlotH)}}" y2="{{add 10 (half .Chart.PlotH)}}" stroke="#e4e4e4"/>
<text x="{{sub .Chart.Left 4}}" y="14" text-anchor="end">100%</text>
<text x="{{sub .Chart.Left 4}}" y="{{add 14 (half .Chart.PlotH)}}" text-anchor="end">50%</text>
<text x="{{sub .Chart.Left 4}}" y="{{add 10 .Chart.PlotH}}" text-anchor="end">0%</text>
<text x="{{.Chart.Left}}" y="{{sub .Chart.H 4}}">{{.Chart.Samples}} samples, oldest left</text>
{{range .Chart.Series}}<polyline class="series" data-name="{{.Name}}" fill="none" stroke="{{.Color}}" stroke-width="2" points="{{.Points}}"/>
{{end}}</svg>
<div>{{range .Chart.Series}}<span style="color:{{.Color}};margin-right:1.2em">■ {{.Name}} {{.Last}}</span>{{end}}</div>

<h2>Namespaces</h2>
<table id="namespaces">
<thead><tr><th>Namespace</th><th>Hits</th><th>Stale</th><th>Misses</th><th>Hit ratio</th><th>Loads</th><th>Load errors</th><th>Coalesced</th><th>Invalidations</th><th>Refused fills</th></tr></thead>
<tbody>{{range .Namespaces}}<tr><td>{{.Name}}</td><td>{{.Hits}}</td><td>{{.StaleHits}}</td><td>{{.Misses}}</td><td>{{pct .HitRatio}}</td><td>{{.Loads}}</td><td>{{.LoadErrors}}</td><td>{{.Coalesced}}</td><td>{{.Invalidations}}</td><td class="why">{{refused .RefusedFills}}</td></tr>
{{end}}</tbody></table>
{{if .Audit}}
<h2>Consistency audit</h2>
<table id="audit">
<thead><tr><th>Namespace</th><th>Under 1 s after a write</th><th>1–10 s</th><th>10–60 s</th><th>At rest</th><th>Raced</th><th>Failed</th></tr></thead>
<tbody>{{range .Namespaces}}{{if .Audit}}<tr><td>{{.Name}}</td>{{range .Audit}}<td{{if .Violations}} class="bad"{{end}}>{{nines .}}</td>{{end}}<td>{{raced .Audit}}</td><td>{{failed .Audit}}</td></tr>
{{end}}{{end}}</tbody></table>
<p class="why">Each cell: nines of consistency (checks, violations); ≥ when no check found a violation.</p>
{{end}}
{{range .Pages}}
<h2>Pages: {{.Name}}</h2>
<table class="pages">
<thead><tr><th>Route</th><th>Hits</th><th>Stale</th><th>Misses</th><th>Stored</th><th>Coalesced</th><th>Bypassed</th><th>304</th><th>Hit ratio</th><th>Not cached, why</th></tr></thead>
<tbody>{{range .Routes}}<tr><td>{{.Route}}</td><td>{{.Hits}}</td><td>{{.Stale}}</td><td>{{.Misses}}</td><td>{{.Stored}}</td><td>{{.Coalesced}}</td><td>{{.Bypassed}}</td><td>{{.NotModified}}</td><td>{{pct .HitRatio}}</td><td class="why">{{reasons .Reasons}}</td></tr>
{{end}}</tbody></table>
{{end}}
<p class="why">Counts of this process since its Cache was created. This page checks no credentials: serve it only behind the application's own authentication.</p>
</body></html>
`))

// nines writes a window's consistency: "≥ 1.3 (20, 0)", "2.0 (100, 1)",
// or "–" with no check.
func nines(a AuditWindow) string {
	if a.Checks == 0 {
		return "–"
	}
	ge := ""
	if a.AtLeast {
		ge = "≥ "
	}
	return fmt.Sprintf("%s%.1f (%d, %d)", ge, a.Nines, a.Checks, a.Violations)
}
