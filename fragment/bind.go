package fragment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strings"
	"text/template/parse"
	"time"
)

// The names of the template functions. cacheFunc is the only one that
// needs its template set (see Bind); the others build [CallOption]s.
const (
	cacheFunc = "cache"
	varyFunc  = "vary"
	ttlFunc   = "ttl"
	staleFunc = "stale"
	tagsFunc  = "tags"
)

// Funcs returns the template functions of fragments, to give to
// [template.Template.Funcs] before parsing:
//
//	{{cache CTX NAME DATA OPTIONS...}}
//
// renders the template NAME of the set with a [Dot] of CTX and DATA
// through [Cache.Render], and returns its markup. OPTIONS are made by
// these functions ([Vary], [TTL], [Stale] and [Tags] in the template):
//
//	(vary VALUES...)  the values the key depends on
//	(ttl T)           a number is seconds, as in Django; a string a Go duration ("90s")
//	(stale T)         read like ttl
//	(tags TAGS...)    tags of the entry
//
// Until [Cache.Bind] has bound the set, cache returns [ErrNotBound]. Of
// two functions of one name the later Funcs wins: give your own FuncMap
// after this one if one of its names must keep its meaning (and that
// option is then not available in the set's templates).
func (f *Cache) Funcs() template.FuncMap {
	return template.FuncMap{
		cacheFunc: func(context.Context, string, any, ...CallOption) (template.HTML, error) {
			return "", ErrNotBound
		},
		varyFunc:  func(values ...any) CallOption { return Vary(values...) },
		ttlFunc:   func(d any) CallOption { return templateDuration(ttlFunc, d, TTL) },
		staleFunc: func(d any) CallOption { return templateDuration(staleFunc, d, Stale) },
		tagsFunc:  func(tags ...string) CallOption { return Tags(tags...) },
	}
}

// templateDuration reads a template's duration: an integer is seconds
// (Django's unit, and a template constant cannot be a time.Duration), a
// string is parsed by [time.ParseDuration], a time.Duration is itself.
func templateDuration(fn string, v any, opt func(time.Duration) CallOption) CallOption {
	var d time.Duration
	switch x := v.(type) {
	case time.Duration:
		d = x
	case int:
		d = time.Duration(x) * time.Second
	case int64:
		d = time.Duration(x) * time.Second
	case string:
		var err error
		if d, err = time.ParseDuration(x); err != nil {
			return failed(invalid("%s %q: %v", fn, x, err))
		}
	default:
		return failed(invalid("%s: want seconds, a duration string or a time.Duration, got %T", fn, v))
	}
	return opt(d)
}

// failed is a CallOption that fails the call with err.
func failed(err error) CallOption {
	return callOption(func(*call) error { return err })
}

// Bind binds the template set of t to f, once, after the set is parsed and
// before any of it is executed:
//
//	t := template.Must(template.New("page").Funcs(frags.Funcs()).Parse(src))
//	if err := frags.Bind(t); err != nil { ... }
//
// It computes the digest of every template (its source and that of every
// template it calls: the key of a fragment changes with any of them), and
// binds the set's cache function to it and to f, so that concurrent
// executions share one func map that never changes again.
//
// It also checks where the set calls cache, and returns an error wrapping
// [ErrUnsafeContext] that names the place if it is anywhere but an action
// of its own in HTML text: the cached markup is [template.HTML], which
// html/template inserts as it is only there. Elsewhere html/template would
// still escape it (in an attribute as text, in a script as a string), so
// nothing would be injected, but the fragment would not show as markup. To
// see each call's context Bind escapes a clone of the set, executing each
// of its templates with nil data and every function replaced by one that
// fails: nothing of the program runs.
//
// Templates parsed into the set after Bind are not bound: rendering them
// returns [ErrNotBound]. A clone of a bound set (Clone before executing)
// must be bound itself. A set is bound to one fragment Cache.
func (f *Cache) Bind(t *template.Template) error {
	if t == nil {
		return invalid("Bind: nil template")
	}
	if err := checkContexts(t); err != nil {
		return err
	}
	s := &set{root: t, digests: digests(t)}
	t.Funcs(template.FuncMap{
		cacheFunc: func(ctx context.Context, name string, data any, opts ...CallOption) (template.HTML, error) {
			return f.render(ctx, s, name, data, opts)
		},
	})
	f.mu.Lock()
	for _, x := range t.Templates() {
		f.sets[x] = s
	}
	f.sets[t] = s
	f.mu.Unlock()
	return nil
}

// set is a bound template set.
type set struct {
	root *template.Template
	// digests holds, by template name, the digest of the template and of
	// every template it calls, computed once by Bind: reading the trees
	// later would race with html/template escaping them on their first
	// execution.
	digests map[string]string
}

// key returns the key of fragment name under the encoded vary values.
func (s *set) key(name string, vary []byte) (string, error) {
	d, ok := s.digests[name]
	if !ok {
		if s.root.Lookup(name) == nil {
			return "", fmt.Errorf("%w: %q", ErrNoTemplate, name)
		}
		return "", fmt.Errorf("%w (template %q was added after Bind)", ErrNotBound, name)
	}
	return fragmentKey(name, d, vary), nil
}

// digests returns the digest of every template of t's set: a hash of the
// source of the template and of every template it reaches through
// {{template}} and cache calls. A cache call whose name is not a constant
// may reach any template, so a template that makes one (or reaches one
// that does) digests the whole set.
func digests(t *template.Template) map[string]string {
	src := map[string]string{}
	calls := map[string][]string{}
	dynamic := map[string]bool{}
	for _, x := range t.Templates() {
		if x.Tree == nil || x.Tree.Root == nil {
			continue
		}
		name := x.Name()
		src[name] = x.Tree.Root.String()
		walk(x.Tree.Root, func(n parse.Node) {
			switch n := n.(type) {
			case *parse.TemplateNode:
				calls[name] = append(calls[name], n.Name)
			case *parse.CommandNode:
				if !isCache(n) {
					return
				}
				if len(n.Args) > 2 {
					if s, ok := n.Args[2].(*parse.StringNode); ok {
						calls[name] = append(calls[name], s.Text)
						return
					}
				}
				dynamic[name] = true
			}
		})
	}
	all := make([]string, 0, len(src))
	for name := range src {
		all = append(all, name)
	}
	out := make(map[string]string, len(src))
	for name := range src {
		seen := map[string]bool{name: true}
		stack := []string{name}
		for len(stack) > 0 {
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if dynamic[n] {
				for _, a := range all {
					seen[a] = true
				}
				break
			}
			for _, c := range calls[n] {
				if !seen[c] {
					seen[c] = true
					stack = append(stack, c)
				}
			}
		}
		reach := make([]string, 0, len(seen))
		for n := range seen {
			reach = append(reach, n)
		}
		slices.Sort(reach)
		h := sha256.New()
		io.WriteString(h, "fragment digest 1\x00")
		for _, n := range reach {
			s, ok := src[n]
			if !ok {
				s = "\x01undefined"
			}
			fmt.Fprintf(h, "%d:%s%d:%s", len(n), n, len(s), s)
		}
		out[name] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}

// isCache reports whether the command calls the cache function.
func isCache(c *parse.CommandNode) bool {
	id, ok := c.Args[0].(*parse.IdentifierNode)
	return ok && id.Ident == cacheFunc
}

// checkContexts returns an error wrapping ErrUnsafeContext if t's set calls
// cache anywhere but as an action of its own in HTML text. It escapes a
// clone of the set to learn each call's context (see Bind).
func checkContexts(t *template.Template) error {
	clone, err := t.Clone()
	if err != nil {
		return fmt.Errorf("fragment: Bind must come before the set is executed: %w", err)
	}
	names := []string{}
	stubs := template.FuncMap{}
	calls := map[string][]string{} // template -> templates it calls, before escaping
	caches := map[string]bool{}    // templates that call cache themselves
	for _, x := range clone.Templates() {
		if x.Tree == nil || x.Tree.Root == nil {
			continue
		}
		name := x.Name()
		names = append(names, name)
		walk(x.Tree.Root, func(n parse.Node) {
			switch n := n.(type) {
			case *parse.IdentifierNode:
				stubs[n.Ident] = stub
				if n.Ident == cacheFunc {
					caches[name] = true
				}
			case *parse.TemplateNode:
				calls[name] = append(calls[name], n.Name)
			}
		})
	}
	if _, ok := stubs[cacheFunc]; !ok {
		return nil // no cache call to check
	}
	clone.Funcs(stubs)
	slices.Sort(names)
	for _, name := range names {
		// Execution stops at the first write, the first function, or the
		// first error of nil data; its error says nothing about contexts.
		// An escaping error is html/template's to report when the program
		// executes the template; a call whose template could not be
		// escaped has no escaper, and is skipped below.
		_ = clone.ExecuteTemplate(failWriter{}, name, nil)
	}
	var bad []string
	for _, x := range clone.Templates() {
		if x.Tree == nil || x.Tree.Root == nil {
			continue
		}
		tree := x.Tree
		report := func(n parse.Node, why string) {
			loc, _ := tree.ErrorContext(n)
			bad = append(bad, fmt.Sprintf("%s: %s", loc, why))
		}
		walkCalls(tree.Root, report)
		// A template called where the context is not HTML text is
		// escaped as a copy for that context, named after it, which
		// html/template keeps out of Templates(): judge it by its name,
		// and by whether the original reaches a cache call.
		walk(tree.Root, func(n parse.Node) {
			tn, ok := n.(*parse.TemplateNode)
			if !ok {
				return
			}
			base, state, derived := strings.Cut(tn.Name, "$htmltemplate_")
			if derived && reaches(base, calls, caches) {
				report(tn, fmt.Sprintf("template %q, which calls cache, is executed in %s; its markup can only be placed in HTML text, between tags", base, stateContext(state)))
			}
		})
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	bad = slices.Compact(bad)
	return fmt.Errorf("%w: %s", ErrUnsafeContext, strings.Join(bad, "; "))
}

// reaches reports whether template name calls cache, itself or through
// the templates it calls.
func reaches(name string, calls map[string][]string, caches map[string]bool) bool {
	seen := map[string]bool{name: true}
	stack := []string{name}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if caches[n] {
			return true
		}
		for _, c := range calls[n] {
			if !seen[c] {
				seen[c] = true
				stack = append(stack, c)
			}
		}
	}
	return false
}

// stateContext names the context of html/template's mangled state name.
func stateContext(state string) string {
	for _, p := range []struct{ prefix, where string }{
		{"stateAttrName", "a tag or attribute name"},
		{"stateAttr", "an attribute value"},
		{"stateTag", "a tag"},
		{"stateAfterName", "a tag"},
		{"stateBeforeValue", "a tag"},
		{"stateURL", "a URL"},
		{"stateSrcset", "a srcset attribute"},
		{"stateJS", "JavaScript"},
		{"stateCSS", "CSS"},
		{"stateRCDATA", "<textarea> or <title> (text shown as it is)"},
		{"stateHTMLCmt", "an HTML comment"},
	} {
		if strings.HasPrefix(state, p.prefix) {
			return p.where
		}
	}
	return "a context other than HTML text (" + state + ")"
}

var errStub = errors.New("fragment: not run while checking contexts")

func stub(...any) (any, error) { return nil, errStub }

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errStub }

// walkCalls calls bad for every cache call in the tree under n that is not
// an action of its own in HTML text, with the reason.
func walkCalls(n parse.Node, bad func(parse.Node, string)) {
	ok := map[*parse.CommandNode]bool{}
	walk(n, func(n parse.Node) {
		a, isAction := n.(*parse.ActionNode)
		if !isAction || len(a.Pipe.Decl) > 0 || len(a.Pipe.Cmds) == 0 || !isCache(a.Pipe.Cmds[0]) {
			return
		}
		ok[a.Pipe.Cmds[0]] = true
		if why := outsideText(a.Pipe.Cmds[1:]); why != "" {
			bad(a, why)
		}
	})
	walk(n, func(n parse.Node) {
		if c, isCmd := n.(*parse.CommandNode); isCmd && isCache(c) && !ok[c] {
			bad(c, "cache is not an action of its own ({{cache ...}}): its markup would not reach the page as it is")
		}
	})
}

// outsideText returns why a cache action whose pipeline goes on with rest
// is not in HTML text, or "" if it is (or the template was never escaped,
// so it cannot run).
func outsideText(rest []*parse.CommandNode) string {
	if len(rest) == 0 {
		return ""
	}
	if len(rest) == 1 {
		if id, ok := rest[0].Args[0].(*parse.IdentifierNode); ok && id.Ident == "_html_template_htmlescaper" {
			return ""
		}
	}
	for _, c := range rest {
		id, ok := c.Args[0].(*parse.IdentifierNode)
		if !ok || !strings.HasPrefix(id.Ident, "_html_template_") {
			return "the result of cache is piped to another command"
		}
	}
	id := rest[0].Args[0].(*parse.IdentifierNode).Ident
	where, ok := escaperContexts[id]
	if !ok {
		where = "a context other than HTML text (escaped by " + id + ")"
	}
	return "cache is called in " + where + "; its markup can only be placed in HTML text, between tags"
}

// escaperContexts names the context of an action by the first escaper
// html/template gives it.
var escaperContexts = map[string]string{
	"_html_template_attrescaper":      "an attribute value",
	"_html_template_nospaceescaper":   "an unquoted attribute value",
	"_html_template_htmlnamefilter":   "a tag or attribute name",
	"_html_template_jsvalescaper":     "JavaScript",
	"_html_template_jsstrescaper":     "a JavaScript string",
	"_html_template_jstmpllitescaper": "a JavaScript template literal",
	"_html_template_jsregexpescaper":  "a JavaScript regular expression",
	"_html_template_cssvaluefilter":   "CSS",
	"_html_template_cssescaper":       "a CSS string",
	"_html_template_urlfilter":        "a URL",
	"_html_template_urlnormalizer":    "a URL",
	"_html_template_urlescaper":       "a URL's query",
	"_html_template_srcsetescaper":    "a srcset attribute",
	"_html_template_rcdataescaper":    "<textarea> or <title> (text shown as it is)",
	"_html_template_commentescaper":   "an HTML comment",
}

// walk calls fn for n and every node under it.
func walk(n parse.Node, fn func(parse.Node)) {
	fn(n)
	switch n := n.(type) {
	case *parse.ListNode:
		for _, c := range n.Nodes {
			walk(c, fn)
		}
	case *parse.ActionNode:
		walk(n.Pipe, fn)
	case *parse.PipeNode:
		for _, c := range n.Cmds {
			walk(c, fn)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walk(a, fn)
		}
	case *parse.ChainNode:
		walk(n.Node, fn)
	case *parse.IfNode:
		walkBranch(&n.BranchNode, fn)
	case *parse.RangeNode:
		walkBranch(&n.BranchNode, fn)
	case *parse.WithNode:
		walkBranch(&n.BranchNode, fn)
	case *parse.TemplateNode:
		if n.Pipe != nil { // {{template "x"}} has none
			walk(n.Pipe, fn)
		}
	}
}

func walkBranch(b *parse.BranchNode, fn func(parse.Node)) {
	walk(b.Pipe, fn)
	walk(b.List, fn)
	if b.ElseList != nil {
		walk(b.ElseList, fn)
	}
}
