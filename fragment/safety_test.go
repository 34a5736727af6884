package fragment_test

import (
	"errors"
	"html/template"
	"strings"
	"testing"

	"github.com/paddockcache/paddock/fragment"
)

// hostile is data that would inject a script if it reached the page raw.
const hostile = `<script>alert("x")</script>`

// Data in a fragment is escaped when the fragment renders; the cache
// stores the escaped markup and serves it as it is: escaped once, never
// raw, never twice.
func TestEscaping(t *testing.T) {
	c := newCache(t, nil)
	s := newSite(t, c)
	frags := newFrags(t, c)
	tm := parse(t, frags, `
{{- define "page"}}<main>{{cache .Ctx "bio" .}}</main>{{end}}
{{- define "bio"}}{{.Data.Site.Rendered "bio"}}<p title="{{.Data.User}}">{{.Data.User}}</p><script>var u = {{.Data.User}};</script>{{end}}`)
	want := `<main><p title="&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;">&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</p>` +
		`<script>var u = "\u003cscript\u003ealert(\"x\")\u003c/script\u003e";</script></main>`
	p := page{Ctx: ctx, Site: s, User: hostile}
	for i := range 2 {
		if got := exec(t, tm, "page", p); got != want {
			t.Fatalf("execution %d:\n got %s\nwant %s", i, got, want)
		}
	}
	if n := s.count("bio"); n != 1 {
		t.Fatalf("renders = %d, want 1: the second execution must come from the cache", n)
	}
	r, found, err := frags.Loader().Peek(ctx, mustKey(t, frags, tm, "bio"))
	if err != nil || !found {
		t.Fatalf("Peek: %v, %v", found, err)
	}
	if stored := string(r.Value); strings.Contains(stored, "<script>alert") || !strings.HasPrefix(want, "<main>"+stored) {
		t.Errorf("stored markup %q is not the escaped render", stored)
	}
}

// Bind refuses a cache call anywhere but as an action of its own in HTML
// text, naming the place; it accepts it in text, also inside branches and
// in templates called from text.
func TestBindContexts(t *testing.T) {
	const call = `{{cache $.Ctx "f" $}}`
	for _, tc := range []struct {
		name, page string
		where      string // in the error; "" if Bind accepts it
	}{
		{"text", `<div>` + call + `</div>`, ""},
		{"text in if and range", `{{if .Site}}{{range .Site.IDs}}<p>` + call + `</p>{{end}}{{else}}` + call + `{{end}}`, ""},
		{"template called from text", `<div>{{template "t" .}}</div>`, ""},
		{"quoted attribute", `<div title="` + call + `">`, "an attribute value"},
		{"unquoted attribute", `<div title=` + call + `>`, "an unquoted attribute value"},
		{"attribute name", `<div ` + call + `>`, "a tag or attribute name"},
		{"script", `<script>var f = ` + call + `;</script>`, "JavaScript"},
		{"script string", `<script>var f = "` + call + `";</script>`, "a JavaScript string"},
		{"event handler", `<button onclick="` + call + `">`, "JavaScript"},
		{"style", `<style>` + call + `</style>`, "CSS"},
		{"URL", `<a href="` + call + `">`, "a URL"},
		{"textarea", `<textarea>` + call + `</textarea>`, "<textarea> or <title>"},
		{"title", `<title>` + call + `</title>`, "<textarea> or <title>"},
		{"template called from an attribute", `<div title="{{template "t" .}}">`, "an attribute value"},
		{"piped", `<div>{{cache .Ctx "f" . | printf "%s"}}</div>`, "piped to another command"},
		{"piped to html", `<div>{{cache .Ctx "f" . | html}}</div>`, "piped to another command"},
		{"argument", `<div>{{printf "%s" (cache .Ctx "f" .)}}</div>`, "not an action of its own"},
		{"variable", `{{$f := cache .Ctx "f" .}}<div>{{$f}}</div>`, "not an action of its own"},
		{"condition", `{{if cache .Ctx "f" .}}x{{end}}`, "not an action of its own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t, nil)
			frags := newFrags(t, c)
			tm := template.Must(template.New("page").Funcs(frags.Funcs()).Parse(
				`{{define "page"}}` + tc.page + `{{end}}{{define "t"}}` + call + `{{end}}{{define "f"}}<b>f</b>{{end}}`))
			err := frags.Bind(tm)
			switch {
			case tc.where == "" && err != nil:
				t.Fatalf("Bind: %v, want it accepted", err)
			case tc.where != "" && !errors.Is(err, fragment.ErrUnsafeContext):
				t.Fatalf("Bind: %v, want ErrUnsafeContext", err)
			case tc.where != "" && (!strings.Contains(err.Error(), tc.where) || !strings.Contains(err.Error(), "page:1:")):
				t.Fatalf("Bind: %v; want it to name %q and the place (page:1:...)", err, tc.where)
			}
			if err != nil {
				return
			}
			s := newSite(t, c)
			if got := exec(t, tm, "page", page{Ctx: ctx, Site: s}); !strings.Contains(got, "<b>f</b>") {
				t.Errorf("page = %q, want the fragment's markup in it", got)
			}
		})
	}
}

// Bind's check runs nothing of the program: the set's functions and data
// are not called.
func TestBindRunsNothing(t *testing.T) {
	c := newCache(t, nil)
	frags := newFrags(t, c)
	calls := 0
	tm := template.Must(template.New("root").Funcs(frags.Funcs()).Funcs(template.FuncMap{
		"effect": func() string { calls++; return "" },
	}).Parse(`{{effect}}{{define "page"}}{{effect}}<p>{{cache .Ctx "f" .}}{{effect}}</p>{{end}}{{define "f"}}{{effect}}{{end}}`))
	if err := frags.Bind(tm); err != nil {
		t.Fatal(err)
	}
	if calls != 0 {
		t.Errorf("Bind called a function of the set %d times", calls)
	}
	s := newSite(t, c)
	exec(t, tm, "page", page{Ctx: ctx, Site: s})
	if calls != 3 {
		t.Errorf("the execution called effect %d times, want 3: Bind must not change the set's other functions", calls)
	}
}

// A fragment rendered from Go is template.HTML: placed by the program in
// an attribute or a script, html/template still escapes it for there.
// Nothing is injected; this is why Bind refuses such places for cache.
func TestRenderedHTMLOutsideTextIsEscaped(t *testing.T) {
	c := newCache(t, nil)
	s := newSite(t, c)
	frags := newFrags(t, c)
	tm := parse(t, frags, `{{define "f"}}<b onclick="x()">{{.Data}}</b>{{end}}`)
	h, err := frags.Render(ctx, tm, "f", s.Item(1).Site.db[1])
	if err != nil {
		t.Fatal(err)
	}
	out := template.Must(template.New("o").Parse(`<div title="{{.}}"></div><script>var f = {{.}};</script>`))
	var b strings.Builder
	if err := out.Execute(&b, h); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); strings.Contains(got, "<b") || strings.Contains(got, `onclick="`) {
		t.Errorf("the fragment's markup reached an attribute or a script raw: %s", got)
	}
}
