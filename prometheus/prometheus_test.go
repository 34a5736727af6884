package prometheus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/memstore"
	paddockprom "github.com/paddockcache/paddock/prometheus"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// setup returns a Cache over s recording into a registered Exporter.
func setup(t *testing.T, s store.Store, opts ...paddock.Option) (*paddock.Cache, *prom.Registry) {
	t.Helper()
	exp, err := paddockprom.New()
	if err != nil {
		t.Fatal(err)
	}
	c, err := paddock.New(s, append(opts, paddock.WithRecorder(exp))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	exp.Watch(c)
	reg := prom.NewRegistry()
	reg.MustRegister(exp)
	return c, reg
}

// gather returns every sample of reg by name and labels, as
// `name{k="v",...}`: counters and gauges by value, histograms by count
// (name_count{...}).
func gather(t *testing.T, reg *prom.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			name := mf.GetName()
			var v float64
			switch {
			case m.Counter != nil:
				v = m.Counter.GetValue()
			case m.Gauge != nil:
				v = m.Gauge.GetValue()
			case m.Histogram != nil:
				name += "_count"
				v = float64(m.Histogram.GetSampleCount())
			}
			out[name+"{"+strings.Join(ls, ",")+"}"] = v
		}
	}
	return out
}

func expect(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: missing", k)
			continue
		}
		if g != v {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
}

func newMem(t *testing.T) *memstore.Store {
	t.Helper()
	s, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestScrapeAfterTraffic scrapes a registry after a hit, misses, a cached
// absence and a fill refused because an invalidation raced its load.
func TestScrapeAfterTraffic(t *testing.T) {
	c, reg := setup(t, newMem(t))
	l := paddock.Must(paddock.NewLoader[string](c, "art"))
	ctx := context.Background()
	load := func(context.Context) (string, error) { return "v", nil }
	for range 2 {
		if _, err := l.Get(ctx, "1", load); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Get(ctx, "gone", func(context.Context) (string, error) { return "", paddock.ErrNotFound }); !errors.Is(err, paddock.ErrNotFound) {
		t.Fatal(err)
	}
	// A load that an invalidation races: its fill is refused.
	started, release, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		_, err := l.Get(ctx, "2", func(context.Context) (string, error) {
			close(started)
			<-release
			return "old", nil
		})
		done <- err
	}()
	<-started
	if err := l.Invalidate(ctx, "2"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	expect(t, gather(t, reg), map[string]float64{
		`paddock_requests_total{namespace="art",result="hit"}`:                    1,
		`paddock_requests_total{namespace="art",result="miss"}`:                   3,
		`paddock_requests_total{namespace="art",result="stale"}`:                  0,
		`paddock_loads_total{namespace="art"}`:                                    3,
		`paddock_load_duration_seconds_count{namespace="art",result="ok"}`:        2,
		`paddock_load_duration_seconds_count{namespace="art",result="not_found"}`: 1,
		`paddock_fills_total{namespace="art",result="stored"}`:                    2,
		`paddock_fills_total{namespace="art",result="fenced"}`:                    1,
		`paddock_invalidations_total{namespace="art"}`:                            1,
		`paddock_invalidation_results_total{result="applied"}`:                    1,
		`paddock_invalidations_pending{}`:                                         0,
		`paddock_breaker_state{state="closed"}`:                                   1,
		`paddock_breaker_state{state="open"}`:                                     0,
		`paddock_memstore_entries{}`:                                              2, // "1" and the absence of "gone"
		`paddock_store_errors_total{namespace="art"}`:                             0,
	})

	// The same, scraped over HTTP as a Prometheus server would.
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`paddock_requests_total{namespace="art",result="hit"} 1`,
		`paddock_fills_total{namespace="art",result="fenced"} 1`,
		`# TYPE paddock_load_duration_seconds histogram`,
	} {
		if !strings.Contains(string(body), line) {
			t.Errorf("scrape has no line %q", line)
		}
	}
}

// TestScrapeAfterRedisKilled kills the Redis a Cache uses: its lookups
// fail, the breaker opens, and an invalidation is kept pending.
func TestScrapeAfterRedisKilled(t *testing.T) {
	srv := redistest.Start(t)
	rs, err := redisstore.New(srv.Client(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	c, reg := setup(t, rs, paddock.Breaker(1, time.Hour))
	l := paddock.Must(paddock.NewLoader[string](c, "art"))
	ctx := context.Background()
	load := func(context.Context) (string, error) { return "v", nil }
	if _, err := l.Get(ctx, "1", load); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := l.Get(ctx, "2", load); err != nil { // loaded without the store
		t.Fatal(err)
	}
	if err := l.Invalidate(ctx, "1"); !errors.Is(err, paddock.ErrStoreUnavailable) {
		t.Fatalf("Invalidate on a dead Redis: %v", err)
	}
	got := gather(t, reg)
	expect(t, got, map[string]float64{
		`paddock_breaker_state{state="open"}`:                                                    1,
		`paddock_breaker_state{state="closed"}`:                                                  0,
		`paddock_breaker_changes_total{state="open"}`:                                            1,
		`paddock_store_call_duration_seconds_count{namespace="art",op="lookup",result="ok"}`:     1,
		`paddock_store_call_duration_seconds_count{namespace="art",op="fill",result="ok"}`:       1,
		`paddock_store_call_duration_seconds_count{namespace="art",op="lookup",result="error"}`:  1,
		`paddock_store_call_duration_seconds_count{namespace="",op="invalidate",result="error"}`: 1,
		`paddock_store_errors_total{namespace="art"}`:                                            1,
		`paddock_invalidations_pending{}`:                                                        1,
		`paddock_invalidation_results_total{result="pending"}`:                                   1,
		`paddock_requests_total{namespace="art",result="miss"}`:                                  2,
	})
	if _, ok := got[`paddock_memstore_entries{}`]; ok {
		t.Error("memstore gauges exported for a Redis store")
	}
}

func TestOptions(t *testing.T) {
	if _, err := paddockprom.New(paddockprom.LoadBuckets(1, 0.5)); err == nil {
		t.Error("LoadBuckets(1, 0.5): no error")
	}
	if _, err := paddockprom.New(paddockprom.StoreBuckets()); err == nil {
		t.Error("StoreBuckets(): no error")
	}
	exp, err := paddockprom.New(paddockprom.ConstLabels(prom.Labels{"cache": "pages"}), paddockprom.LoadBuckets(0.1, 1))
	if err != nil {
		t.Fatal(err)
	}
	c := paddock.Must(paddock.New(newMem(t), paddock.WithRecorder(exp)))
	defer c.Close()
	exp.Watch(c)
	exp.RecordAudit(paddock.AuditEvent{Namespace: "art", Window: time.Second, Consistent: true})
	exp.RecordAudit(paddock.AuditEvent{Namespace: "art", Window: paddock.AuditAtRest, Consistent: false})
	reg := prom.NewRegistry()
	reg.MustRegister(exp)
	expect(t, gather(t, reg), map[string]float64{
		`paddock_audit_checks_total{cache="pages",namespace="art",result="consistent",window="1s"}`:     1,
		`paddock_audit_checks_total{cache="pages",namespace="art",result="inconsistent",window="rest"}`: 1,
		`paddock_breaker_state{cache="pages",state="closed"}`:                                           1,
	})
}
