package fragment_test

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"strings"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/fragment"
)

// flaky is data whose Value fails while err is set. It sets the
// fragment's TTL, as a method that knows its row's expiry may: a failed
// render is not cached even then.
type flaky struct {
	s   *site
	err error
}

func (f *flaky) Value(ctx context.Context) (string, error) {
	f.s.Rendered("flaky")
	paddock.SetTTL(ctx, time.Hour)
	if f.err != nil {
		return "", f.err
	}
	return "ok", nil
}

// A render that fails returns its error and caches nothing: the next call
// renders again. An error that wraps paddock.ErrNotFound (a nested Get of
// a missing row) is not cached as the fragment's absence either.
func TestRenderErrorNotCached(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"execution error", errors.New("database down")},
		{"not found", fmt.Errorf("row 7: %w", paddock.ErrNotFound)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t, nil)
			s := newSite(t, c)
			frags := newFrags(t, c)
			tm := parse(t, frags, `{{define "page"}}<p>{{cache .Ctx "f" .Data}}</p>{{end}}{{define "f"}}{{.Data.Value .Ctx}}{{end}}`)
			d := &flaky{s: s, err: tc.err}
			var b strings.Builder
			err := tm.ExecuteTemplate(&b, "page", fragment.Dot{Ctx: ctx, Data: d})
			if !errors.Is(err, tc.err) {
				t.Fatalf("execution: %v, want it to wrap %v", err, tc.err)
			}
			if _, found, _ := frags.Loader().Peek(ctx, mustKey(t, frags, tm, "f")); found {
				t.Fatal("the failed render was cached")
			}
			d.err = nil
			if got := exec(t, tm, "page", fragment.Dot{Ctx: ctx, Data: d}); got != "<p>ok</p>" {
				t.Fatalf("page after the failure = %q", got)
			}
			if n := s.count("flaky"); n != 2 {
				t.Errorf("renders = %d, want 2", n)
			}
		})
	}
}

// A fragment whose template does not exist is an error naming it, from
// the template function and from Render; nothing is cached.
func TestMissingTemplate(t *testing.T) {
	c := newCache(t, nil)
	frags := newFrags(t, c)
	tm := parse(t, frags, `{{define "page"}}{{cache .Ctx "nope" .}}{{end}}`)
	err := tm.ExecuteTemplate(new(strings.Builder), "page", page{Ctx: ctx})
	if !errors.Is(err, fragment.ErrNoTemplate) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("execution: %v, want ErrNoTemplate naming nope", err)
	}
	if _, err := frags.Render(ctx, tm, "nope", nil); !errors.Is(err, fragment.ErrNoTemplate) {
		t.Errorf("Render: %v, want ErrNoTemplate", err)
	}
	if st := c.Stats()[fragment.DefaultNamespace]; st.Loads != 0 {
		t.Errorf("loads = %d, want 0", st.Loads)
	}
}

// A set must be bound once, after parsing and before executing.
func TestBindOrder(t *testing.T) {
	c := newCache(t, nil)
	frags := newFrags(t, c)
	src := `{{define "page"}}<p>{{cache .Ctx "f" .}}</p>{{end}}{{define "f"}}f{{end}}`

	unbound := template.Must(template.New("page").Funcs(frags.Funcs()).Parse(src))
	if err := unbound.ExecuteTemplate(new(strings.Builder), "page", page{Ctx: ctx}); !errors.Is(err, fragment.ErrNotBound) {
		t.Errorf("executing an unbound set: %v, want ErrNotBound", err)
	}
	if _, err := frags.Render(ctx, unbound, "f", nil); !errors.Is(err, fragment.ErrNotBound) {
		t.Errorf("Render of an unbound set: %v, want ErrNotBound", err)
	}
	// It was executed: too late to bind.
	if err := frags.Bind(unbound); err == nil || !strings.Contains(err.Error(), "before") {
		t.Errorf("Bind after an execution: %v, want an error", err)
	}

	bound := parse(t, frags, src)
	template.Must(bound.New("late").Parse(`late`))
	if _, err := frags.Render(ctx, bound, "late", nil); !errors.Is(err, fragment.ErrNotBound) {
		t.Errorf("Render of a template parsed after Bind: %v, want ErrNotBound", err)
	}
	if err := frags.Bind(nil); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("Bind(nil): %v, want ErrInvalidOption", err)
	}
}

// Bad options and arguments are errors wrapping paddock.ErrInvalidOption,
// from New, from Render and from the template functions.
func TestInvalidOptions(t *testing.T) {
	c := newCache(t, nil)
	if _, err := fragment.New(nil); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("New(nil): %v", err)
	}
	for i, o := range []fragment.Option{
		nil, fragment.TTL(0), fragment.TTL(-time.Second), fragment.Stale(-1),
		fragment.Namespace(""), fragment.Namespace("a:b"), fragment.Tags("ok", ""),
		fragment.Vary([]int{1}),
	} {
		if _, err := fragment.New(c, o); !errors.Is(err, paddock.ErrInvalidOption) {
			t.Errorf("New with option %d: %v, want ErrInvalidOption", i, err)
		}
	}
	newFrags(t, c) // the bad options took no namespace
	if _, err := fragment.New(c); err == nil {
		t.Error("a second fragment Cache on one namespace: no error")
	}
	frags := newFrags(t, c, fragment.Namespace("frag2"))
	tm := parse(t, frags, `{{define "f"}}f{{end}}`)
	for i, opts := range [][]fragment.CallOption{{nil}, {fragment.TTL(0)}, {fragment.Vary(&struct{}{})}} {
		if _, err := frags.Render(ctx, tm, "f", nil, opts...); !errors.Is(err, paddock.ErrInvalidOption) {
			t.Errorf("Render with options %d: %v, want ErrInvalidOption", i, err)
		}
	}
	var nilCtx context.Context
	if _, err := frags.Render(nilCtx, tm, "f", nil); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("Render with a nil context: %v, want ErrInvalidOption", err)
	}
	for _, call := range []string{`(ttl "soon")`, `(ttl 1.5)`, `(ttl 0)`, `(stale "-1s")`, `(tags "")`, `(vary .)`} {
		tm := parse(t, frags, `{{define "page"}}{{cache .Ctx "f" . `+call+`}}{{end}}{{define "f"}}f{{end}}`)
		err := tm.ExecuteTemplate(new(strings.Builder), "page", page{Ctx: ctx})
		if !errors.Is(err, paddock.ErrInvalidOption) {
			t.Errorf("cache with %s: %v, want ErrInvalidOption", call, err)
		}
	}
	if _, err := frags.Render(ctx, nil, "f", nil); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("Render(nil template): %v", err)
	}
}
