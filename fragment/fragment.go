package fragment

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"sync"

	"github.com/paddockcache/paddock"
)

// Errors of the package. Errors about bad options or arguments wrap
// [paddock.ErrInvalidOption] instead.
var (
	// ErrNotBound is returned by a render of a template set that [Cache.Bind]
	// has not bound, or of a template parsed into the set after Bind.
	ErrNotBound = errors.New("fragment: template set not bound: call Bind once, after parsing and before executing")

	// ErrNoTemplate is returned by a render of a fragment whose name is
	// not a template of the set. Nothing is cached.
	ErrNoTemplate = errors.New("fragment: no such template")

	// ErrUnsafeContext is wrapped by the error of [Cache.Bind] when a
	// template calls cache anywhere but as an action of its own in HTML
	// text (between tags): in an attribute, a script, a style, a URL, a
	// <textarea> or <title>, a comment, or with its result piped or
	// passed on. There the markup would be escaped as text, not shown.
	ErrUnsafeContext = errors.New("fragment: cache called outside HTML text")
)

// A Dot is what a fragment's template is executed with: its dot, in
// html/template's words. A page may be executed with a Dot too, so that
// its templates and its fragments' read the same .Ctx and .Data.
type Dot struct {
	// Ctx is the context of the fragment's render, a load of its Loader.
	// Pass it to the cached Gets the template makes (through methods of
	// Data) and to the cache calls nested in the template: what they read
	// becomes a dependency of the fragment. Canceling the caller's context
	// does not cancel it; it ends after the load timeout.
	Ctx context.Context
	// Data is the value given to the render.
	Data any
}

// A Cache caches rendered template fragments in a [paddock.Loader] of
// [template.HTML] values. It is safe for concurrent use; create one with
// [New].
type Cache struct {
	l   *paddock.Loader[template.HTML]
	def call

	mu   sync.RWMutex
	sets map[*template.Template]*set // every template of every bound set
}

// New returns a fragment Cache on c. Its entries live in c's store under
// the namespace [DefaultNamespace] (see [Namespace]), so
// [paddock.Cache.InvalidateTags] on c drops fragments with everything
// else that carries the tag.
func New(c *paddock.Cache, opts ...Option) (*Cache, error) {
	if c == nil {
		return nil, invalid("New: nil paddock.Cache")
	}
	cfg := config{namespace: DefaultNamespace, call: call{ttl: DefaultTTL}}
	for _, o := range opts {
		if o == nil {
			return nil, invalid("New: nil option")
		}
		if err := o.applyConfig(&cfg); err != nil {
			return nil, err
		}
	}
	l, err := paddock.NewLoader[template.HTML](c, cfg.namespace,
		paddock.WithCodec(htmlCodec{}),
		// A render that fails is not cached, whatever its error wraps
		// (see render); this keeps a paddock.ErrNotFound of a nested Get
		// from being cached as the fragment's absence.
		paddock.NegativeTTL(0),
	)
	if err != nil {
		return nil, err
	}
	return &Cache{l: l, def: cfg.call, sets: make(map[*template.Template]*set)}, nil
}

// Loader returns the Loader the fragments are cached in: its namespace
// names them in [paddock.Cache.Stats].
func (f *Cache) Loader() *paddock.Loader[template.HTML] { return f.l }

// Render returns the markup of the template name of t's set, executed with
// a [Dot] whose Data is data, from the cache if it holds a fresh entry for
// the fragment's key, otherwise rendered once (however many callers ask at
// once) and cached. t must belong to a set bound by [Cache.Bind].
//
// The key is made of name, the values given with [Vary], and a digest of
// the template's source and of every template it calls, directly or
// through nested cache calls: a template changed by a deploy never serves
// the old markup. data is not part of the key; callers that give the same
// name and vary values share one entry, and one render.
//
// Called with the context of a load (a nested Get: from inside another
// fragment's render, or from a page load), it makes that load depend on
// the fragment. A render that fails returns its error, to every caller of
// that render, and caches nothing.
func (f *Cache) Render(ctx context.Context, t *template.Template, name string, data any, opts ...CallOption) (template.HTML, error) {
	s, err := f.set(t)
	if err != nil {
		return "", err
	}
	return f.render(ctx, s, name, data, opts)
}

func (f *Cache) set(t *template.Template) (*set, error) {
	if t == nil {
		return nil, invalid("nil template")
	}
	f.mu.RLock()
	s := f.sets[t]
	f.mu.RUnlock()
	if s == nil {
		return nil, ErrNotBound
	}
	return s, nil
}

func (f *Cache) render(ctx context.Context, s *set, name string, data any, opts []CallOption) (template.HTML, error) {
	if ctx == nil {
		return "", invalid("cache %q: nil context", name)
	}
	c, err := f.callFor(opts)
	if err != nil {
		return "", err
	}
	key, err := s.key(name, c.vary)
	if err != nil {
		return "", err
	}
	get := []paddock.GetOption{paddock.TTL(c.ttl), paddock.Stale(c.stale)}
	if len(c.tags) > 0 {
		get = append(get, paddock.Tags(c.tags...))
	}
	h, err := f.l.Get(ctx, key, func(ctx context.Context) (template.HTML, error) {
		var b bytes.Buffer
		if err := s.root.ExecuteTemplate(&b, name, Dot{Ctx: ctx, Data: data}); err != nil {
			return "", &renderError{err}
		}
		return template.HTML(b.String()), nil
	}, get...)
	if re, ok := errors.AsType[*renderError](err); ok {
		return "", fmt.Errorf("fragment %q: %w", name, re.err)
	}
	return h, err
}

// renderError carries a failed execution through the Loader without
// letting it match paddock.ErrNotFound there (it has no Unwrap): a
// template whose data method returned a wrapped ErrNotFound is a failed
// render, not a fragment to cache as absent.
type renderError struct{ err error }

func (e *renderError) Error() string { return e.err.Error() }

// callFor returns the Cache's defaults with opts applied.
func (f *Cache) callFor(opts []CallOption) (call, error) {
	c := f.def
	for _, o := range opts {
		if o == nil {
			return c, invalid("nil CallOption")
		}
		if err := o.applyCall(&c); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Key returns the full store key (see [paddock.Loader.Key]) of the
// fragment name of t's set with the vary values given: Django's
// make_template_fragment_key. The Cache's own Vary values come first, as
// in [Cache.Render].
func (f *Cache) Key(t *template.Template, name string, vary ...any) (string, error) {
	s, err := f.set(t)
	if err != nil {
		return "", err
	}
	c, err := f.callFor([]CallOption{Vary(vary...)})
	if err != nil {
		return "", err
	}
	k, err := s.key(name, c.vary)
	if err != nil {
		return "", err
	}
	return f.l.Key(k), nil
}

// Invalidate drops the fragment name of t's set with the vary values given
// and fences it, like [paddock.Cache.Invalidate]: what was built from it
// (an outer fragment, a page) goes too. To drop every variant of a
// fragment, tag it ([Tags]) and invalidate the tag.
func (f *Cache) Invalidate(ctx context.Context, t *template.Template, name string, vary ...any) error {
	k, err := f.Key(t, name, vary...)
	if err != nil {
		return err
	}
	return f.l.Cache().Invalidate(ctx, k)
}

// htmlCodec stores template.HTML as its bytes.
type htmlCodec struct{}

func (htmlCodec) Marshal(v any) ([]byte, error) {
	h, ok := v.(template.HTML)
	if !ok {
		return nil, fmt.Errorf("fragment: cannot encode %T", v)
	}
	return []byte(h), nil
}

func (htmlCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*template.HTML)
	if !ok {
		return fmt.Errorf("fragment: cannot decode into %T", v)
	}
	*p = template.HTML(data)
	return nil
}
