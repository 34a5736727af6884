package fragment

import (
	"fmt"
	"strings"
	"time"

	"github.com/paddockcache/paddock"
)

// Options. An [Option] configures a [Cache] in [New]; a [CallOption] one
// fragment, given to [Cache.Render] or, in a template, as an argument of
// cache. Every CallOption is also an Option: given to New it sets the
// default of every fragment ([Vary] given to New adds its values to every
// key). A bad value, or a nil option, makes New or the call fail with an
// error wrapping [paddock.ErrInvalidOption]; nothing is created, rendered
// or cached.

// An Option configures a [Cache].
type Option interface {
	applyConfig(*config) error
}

// A CallOption sets how one fragment is cached. Given to [New] it sets the
// default of every fragment.
type CallOption interface {
	Option
	applyCall(*call) error
}

// DefaultNamespace is the namespace of the fragment Loader unless
// [Namespace] sets another.
const DefaultNamespace = "fragment"

// DefaultTTL is how long a rendered fragment is fresh unless [TTL] says
// otherwise: the root package's default.
const DefaultTTL = paddock.DefaultTTL

type config struct {
	namespace string
	call      call
}

// call is what one fragment is told: the Cache's defaults with the call's
// options on top.
type call struct {
	ttl, stale time.Duration
	tags       []string
	vary       []byte // the encoded vary values, in order
}

type callOption func(*call) error

func (f callOption) applyCall(c *call) error       { return f(c) }
func (f callOption) applyConfig(cfg *config) error { return f(&cfg.call) }

type configOption func(*config) error

func (f configOption) applyConfig(cfg *config) error { return f(cfg) }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: fragment: %s", paddock.ErrInvalidOption, fmt.Sprintf(format, args...))
}

// Namespace sets the namespace of the Loader the fragments are cached in,
// on the [paddock.Cache] given to [New]. Default [DefaultNamespace]. Two
// fragment Caches on one paddock.Cache need two namespaces.
func Namespace(ns string) Option {
	return configOption(func(cfg *config) error {
		if ns == "" || strings.Contains(ns, ":") {
			return invalid("Namespace %q must be non-empty and without ':'", ns)
		}
		cfg.namespace = ns
		return nil
	})
}

// TTL sets how long a rendered fragment is fresh: Django's timeout
// argument. Default [DefaultTTL]. A fragment built from cached values
// (see the package doc) is fresh no longer than they are.
func TTL(d time.Duration) CallOption {
	return callOption(func(c *call) error {
		if d < time.Millisecond {
			return invalid("TTL must be at least 1ms, got %v", d)
		}
		c.ttl = d
		return nil
	})
}

// Stale sets the stale-while-revalidate window of a fragment: for d after
// its TTL the old markup is served at once while one render runs in the
// background. Default 0.
func Stale(d time.Duration) CallOption {
	return callOption(func(c *call) error {
		if d < 0 {
			return invalid("Stale must not be negative, got %v", d)
		}
		c.stale = d
		return nil
	})
}

// Tags adds tags to the fragment's entry: [paddock.Cache.InvalidateTags]
// of one of them drops it. They add to the defaults given to [New] and to
// those the render names with [paddock.Tag] (on [Dot].Ctx).
func Tags(tags ...string) CallOption {
	return callOption(func(c *call) error {
		for _, t := range tags {
			if t == "" {
				return invalid("Tags: empty tag")
			}
		}
		c.tags = append(c.tags[:len(c.tags):len(c.tags)], tags...)
		return nil
	})
}

// Vary adds values the fragment's key depends on: Django's vary_on
// arguments ({% cache 500 sidebar request.user.username %}). Two renders
// of one fragment share an entry only if they give equal values, in the
// same order. A value is a string, a bool, an integer or a float (of any
// named type), a [time.Time], a [fmt.Stringer], or nil; anything else is
// an error wrapping [paddock.ErrInvalidOption] (a struct or a pointer has
// no stable text to key on: give its ID). Given to [New], Vary adds its
// values to every key: a build or release identifier there makes a deploy
// that changes the Go code behind the templates start from empty entries.
func Vary(values ...any) CallOption {
	return callOption(func(c *call) error {
		b := c.vary[:len(c.vary):len(c.vary)]
		for _, v := range values {
			var err error
			if b, err = appendVary(b, v); err != nil {
				return err
			}
		}
		c.vary = b
		return nil
	})
}
