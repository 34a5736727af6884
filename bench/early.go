package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/paddockcache/paddock"
)

// Early refresh under load: earlyReaders goroutines each read one hot key
// every earlyPace, about eight reads per millisecond, with no stale window;
// the TTL is earlyTTL and a load takes a quarter of it. A plain TTL
// expires the key and blocks its readers for a load once per TTL plus a
// load. Early refresh should load about once per TTL instead, before the
// entry expires, so that no reader waits; it must not load more than that,
// however many reads fall near expiry. paddock runs at its defaults, with
// Beta(0) (early refresh off: a plain TTL) and with Beta(1), on each of
// its stores, in the same run.

const (
	earlyTTL     = 200 * time.Millisecond
	earlyLoad    = 50 * time.Millisecond
	earlyReaders = 8
	earlyPace    = time.Millisecond
	// earlyTarget bounds the loads at the defaults, as a multiple of the
	// plain TTL's loads; no Get may wait for a load.
	earlyTarget = 1.3
)

func runEarly(ctx context.Context, e *env) error {
	ttls := e.pick(10, 60)
	dur := time.Duration(ttls) * earlyTTL
	fmt.Fprintf(e.out, "%d readers each Get one hot key every %v for %v (%d TTLs); TTL %v, the load sleeps %v, no stale window. "+
		"paddock at its defaults against paddock with Beta(0), early refresh off (a plain TTL), on the same store; Beta(1) for a wider margin. "+
		"A blocked Get waited for a load: it took at least %v and a load ended while it ran. "+
		"Target at the defaults: loads ≤ %.1f × the plain TTL's, 0 blocked Gets.\n\n",
		earlyReaders, earlyPace, dur, ttls, earlyTTL, earlyLoad, earlyLoad/2, earlyTarget)
	t := newTable("library", "store", "early refresh", "loads", "loads/TTL", "× plain TTL", "early refreshes", "blocked Gets", "Get p50", "p99", "max", "Gets", "target")
	t.left = 3
	shape := expiryLoadShape{readers: earlyReaders, pace: earlyPace, load: earlyLoad, dur: dur}
	for _, lib := range e.libs {
		if !strings.HasPrefix(lib.Name, "paddock-") || !e.usable(lib) {
			continue
		}
		var plain uint64
		for i, v := range []struct {
			name string
			opts []paddock.GetOption
		}{
			{"off: Beta(0)", []paddock.GetOption{paddock.Beta(0)}},
			{"defaults", nil},
			// A wider margin: every refresh starts two loads before
			// expiry on average (the default before the draw moved to
			// fill time), for what it costs.
			{"Beta(1)", []paddock.GetOption{paddock.Beta(1)}},
		} {
			r, early, err := earlyRow(ctx, e, lib, v.name, v.opts, shape)
			if err != nil {
				t.add(lib.Name, where(lib), v.name, e.failed(lib.Name, err), "", "", "", "", "", "", "", "", "")
				continue
			}
			ratio, target := "1", ""
			x := float64(r.loads) / float64(max(plain, 1))
			switch {
			case i == 0: // the plain TTL's row
				plain = r.loads
			case v.opts == nil:
				ratio, target = fmt.Sprintf("%.2f", x), "met"
				if x > earlyTarget || r.blocked > 0 {
					target = "missed"
				}
			default:
				ratio = fmt.Sprintf("%.2f", x)
			}
			t.add(lib.Name, where(lib), v.name, r.loads, fmt.Sprintf("%.2f", float64(r.loads)/float64(ttls)), ratio, early, r.blocked,
				fmtDur(r.h.quantile(0.5)), fmtDur(r.h.quantile(0.99)), fmtDur(r.h.max), r.h.n, target)
			e.logf("   %-16s %-13s loads %d early %d blocked %d slow %d p99 %v max %v gets %d errors %d",
				lib.Name, v.name, r.loads, early, r.blocked, r.slow, r.h.quantile(0.99), r.h.max, r.h.n, r.errors)
		}
	}
	t.print(e.out)
	return nil
}

// earlyRow runs shape on a new cache of paddock lib whose Gets take opts,
// and returns the result and the early refreshes the cache counted.
func earlyRow(ctx context.Context, e *env, lib Lib, name string, opts []paddock.GetOption, shape expiryLoadShape) (*expiryResult, uint64, error) {
	c, err := lib.New(e.config(Config{TTL: earlyTTL, Entries: 16}))
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	pc, ok := c.(*paddockCache)
	if !ok {
		return nil, 0, fmt.Errorf("%s is not a paddock adapter", lib.Name)
	}
	pc.getOpts = opts
	before := pc.c.Stats()[pc.ns].EarlyRefreshes
	r, err := expiry(ctx, e.key(lib, "early", name), pc, shape)
	if err != nil {
		return nil, 0, err
	}
	return r, pc.c.Stats()[pc.ns].EarlyRefreshes - before, nil
}
