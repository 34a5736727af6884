package paddock

import (
	"math"
	"time"
)

// Defaults of the per-call options (see [GetOption]).
const (
	DefaultTTL         = 5 * time.Minute
	DefaultNegativeTTL = 30 * time.Second
	DefaultLoadTimeout = 10 * time.Second
	DefaultBeta        = 1.0
)

// policy is what a Get is told about freshness: the loader's defaults with
// the call's options on top.
type policy struct {
	ttl          time.Duration
	stale        time.Duration
	staleIfError time.Duration
	negativeTTL  time.Duration
	loadTimeout  time.Duration
	beta         float64
	tags         []string
	err          error
}

func defaultPolicy() policy {
	return policy{
		ttl:         DefaultTTL,
		negativeTTL: DefaultNegativeTTL,
		loadTimeout: DefaultLoadTimeout,
		beta:        DefaultBeta,
	}
}

// A GetOption sets how one entry is cached. Given to [NewLoader] it sets
// the loader's default; given to a Get it applies to that call.
type GetOption struct {
	apply func(*policy)
}

func (o GetOption) applyLoader(lc *loaderConfig) { o.apply(&lc.policy) }

func durationOption(name string, d time.Duration, min time.Duration, set func(*policy, time.Duration)) GetOption {
	return GetOption{func(p *policy) {
		if d < min {
			if p.err == nil {
				p.err = invalid("%s must be at least %v, got %v", name, min, d)
			}
			return
		}
		set(p, d)
	}}
}

// TTL sets how long a loaded value is fresh. Default [DefaultTTL].
func TTL(d time.Duration) GetOption {
	return durationOption("TTL", d, time.Millisecond, func(p *policy, d time.Duration) { p.ttl = d })
}

// Stale sets the stale-while-revalidate window: for d after the TTL, a Get
// returns the previous value at once while exactly one refresh runs in the
// background. Default 0: an expired entry is loaded in the foreground.
func Stale(d time.Duration) GetOption {
	return durationOption("Stale", d, 0, func(p *policy, d time.Duration) { p.stale = d })
}

// StaleIfError sets the stale-if-error window: for d after the TTL, a Get
// whose load fails returns the previous value, marked [StatusStaleIfError],
// instead of the error. Default 0.
func StaleIfError(d time.Duration) GetOption {
	return durationOption("StaleIfError", d, 0, func(p *policy, d time.Duration) { p.staleIfError = d })
}

// NegativeTTL sets how long a load's [ErrNotFound] is cached. Zero turns
// negative caching off. Default [DefaultNegativeTTL].
func NegativeTTL(d time.Duration) GetOption {
	return durationOption("NegativeTTL", d, 0, func(p *policy, d time.Duration) { p.negativeTTL = d })
}

// LoadTimeout bounds a load. The load runs on a context detached from its
// callers' (they may give up; the load goes on for the others) that ends
// after d. Default [DefaultLoadTimeout].
func LoadTimeout(d time.Duration) GetOption {
	return durationOption("LoadTimeout", d, time.Millisecond, func(p *policy, d time.Duration) { p.loadTimeout = d })
}

// Beta sets the eagerness of early refresh (XFetch, Vattani et al.): a Get
// on a fresh entry refreshes it in the background with a probability that
// grows as expiry nears, scaled by the measured load duration times beta.
// Zero turns early refresh off; above 1 refreshes earlier. Default
// [DefaultBeta].
func Beta(beta float64) GetOption {
	return GetOption{func(p *policy) {
		if beta < 0 || math.IsNaN(beta) || math.IsInf(beta, 0) {
			if p.err == nil {
				p.err = invalid("Beta must be a finite number >= 0, got %v", beta)
			}
			return
		}
		p.beta = beta
	}}
}

// Tags adds tags to the entry. They add to the loader's default tags and
// to those the load names with [Tag].
func Tags(tags ...string) GetOption {
	return GetOption{func(p *policy) {
		for _, t := range tags {
			if t == "" {
				if p.err == nil {
					p.err = invalid("empty tag")
				}
				return
			}
		}
		p.tags = append(p.tags[:len(p.tags):len(p.tags)], tags...)
	}}
}

// early draws the XFetch factor beta * -ln(u) for u uniform in (0, 1].
func (p *policy) early(rand func() float64) float64 {
	if p.beta == 0 {
		return 0
	}
	u := 1 - rand() // (0, 1]
	return p.beta * -math.Log(u)
}
