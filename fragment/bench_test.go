package fragment_test

import (
	"context"
	"html/template"
	"io"
	"strings"
	"testing"

	"github.com/paddockcache/paddock/fragment"
)

var varyAnn = []fragment.CallOption{fragment.Vary("ann")}

// benchSrc is a page with a sidebar of 50 links: the fragment is what a
// cache hit saves.
const benchSrc = `
{{- define "page"}}<main>{{cache .Ctx "sidebar" .Data (vary "ann")}}</main>{{end}}
{{- define "plain"}}<main>{{template "sidebar" .}}</main>{{end}}
{{- define "sidebar"}}<aside><ul>{{range .Data}}<li><a href="/l/{{.}}">{{.}}</a></li>{{end}}</ul></aside>{{end}}`

// BenchmarkExecute compares a page whose sidebar comes from the cache
// (fragment=cached, a hit on memstore) with the same page executing the
// sidebar each time (fragment=none), and a Render hit from Go.
func BenchmarkExecute(b *testing.B) {
	c := newCache(b, nil)
	frags := newFrags(b, c)
	tm := parse(b, frags, benchSrc)
	links := make([]string, 50)
	for i := range links {
		links[i] = strings.Repeat("x", 20)
	}
	ctx := context.Background()
	data := struct {
		Ctx  context.Context
		Data []string
	}{ctx, links}
	if err := tm.ExecuteTemplate(io.Discard, "page", data); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, tmpl string }{
		{"fragment=cached", "page"},
		{"fragment=none", "plain"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := tm.ExecuteTemplate(io.Discard, bc.tmpl, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("render=go/hit", func(b *testing.B) {
		b.ReportAllocs()
		var h template.HTML
		for b.Loop() {
			var err error
			if h, err = frags.Render(ctx, tm, "sidebar", links, varyAnn...); err != nil {
				b.Fatal(err)
			}
		}
		_ = h
	})
	if n := c.Stats()["fragment"].Loads; n != 1 {
		b.Fatalf("renders = %d, want 1", n)
	}
}
