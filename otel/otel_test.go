package otel_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/memstore"
	paddockotel "github.com/paddockcache/paddock/otel"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// setup returns a Cache over s recording into an Exporter read by a
// ManualReader.
func setup(t *testing.T, s store.Store, opts ...paddock.Option) (*paddock.Cache, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	exp, err := paddockotel.New(mp)
	if err != nil {
		t.Fatal(err)
	}
	c, err := paddock.New(s, append(opts, paddock.WithRecorder(exp))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	reg, err := exp.Watch(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Unregister() })
	return c, reader
}

func attrs(s attribute.Set) string {
	var out []string
	for _, kv := range s.ToSlice() {
		out = append(out, fmt.Sprintf("%s=%q", kv.Key, kv.Value.String()))
	}
	sort.Strings(out)
	return "{" + strings.Join(out, ",") + "}"
}

// collect returns every data point by instrument name and attributes:
// sums and gauges by value, histograms by count (name.count{...}).
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != paddockotel.ScopeName {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if !d.IsMonotonic {
					t.Errorf("%s: not monotonic", m.Name)
				}
				for _, p := range d.DataPoints {
					out[m.Name+attrs(p.Attributes)] = float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[m.Name+attrs(p.Attributes)] = float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				if m.Unit != "s" {
					t.Errorf("%s: unit %q, want s", m.Name, m.Unit)
				}
				for _, p := range d.DataPoints {
					out[m.Name+".count"+attrs(p.Attributes)] = float64(p.Count)
				}
			default:
				t.Errorf("%s: data of type %T", m.Name, m.Data)
			}
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

func TestCollectAfterTraffic(t *testing.T) {
	s, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c, reader := setup(t, s)
	l := paddock.Must(paddock.NewLoader[string](c, "art"))
	ctx := context.Background()
	load := func(context.Context) (string, error) { return "v", nil }
	for range 2 {
		if _, err := l.Get(ctx, "1", load); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Get(ctx, "bad", func(context.Context) (string, error) { panic("oops") }); !errors.Is(err, paddock.ErrLoadPanicked) {
		t.Fatalf("panicking load: %v", err)
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
	expect(t, collect(t, reader), map[string]float64{
		`paddock.requests{namespace="art",result="hit"}`:              1,
		`paddock.requests{namespace="art",result="miss"}`:             3, // the panicking load included
		`paddock.loads{namespace="art"}`:                              3,
		`paddock.load.errors{namespace="art"}`:                        1,
		`paddock.load.duration.count{namespace="art",result="ok"}`:    2,
		`paddock.load.duration.count{namespace="art",result="panic"}`: 1,
		`paddock.fills{namespace="art",result="stored"}`:              1,
		`paddock.fills{namespace="art",result="fenced"}`:              1,
		`paddock.invalidations{namespace="art"}`:                      1,
		`paddock.invalidation.results{result="applied"}`:              1,
		`paddock.invalidations.pending{}`:                             0,
		`paddock.breaker.state{state="closed"}`:                       1,
		`paddock.memstore.entries{}`:                                  1,
	})
}

func TestCollectAfterRedisKilled(t *testing.T) {
	srv := redistest.Start(t)
	rs, err := redisstore.New(srv.Client(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	c, reader := setup(t, rs, paddock.Breaker(1, time.Hour))
	l := paddock.Must(paddock.NewLoader[string](c, "art"))
	ctx := context.Background()
	load := func(context.Context) (string, error) { return "v", nil }
	if _, err := l.Get(ctx, "1", load); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := l.Get(ctx, "2", load); err != nil {
		t.Fatal(err)
	}
	if err := l.Invalidate(ctx, "1"); !errors.Is(err, paddock.ErrStoreUnavailable) {
		t.Fatalf("Invalidate on a dead Redis: %v", err)
	}
	got := collect(t, reader)
	expect(t, got, map[string]float64{
		`paddock.breaker.state{state="open"}`:                                           1,
		`paddock.breaker.state{state="closed"}`:                                         0,
		`paddock.breaker.changes{state="open"}`:                                         1,
		`paddock.store.call.duration.count{namespace="art",op="lookup",result="ok"}`:    1,
		`paddock.store.call.duration.count{namespace="art",op="fill",result="ok"}`:      1,
		`paddock.store.call.duration.count{namespace="art",op="lookup",result="error"}`: 1,
		`paddock.store.errors{namespace="art"}`:                                         1,
		`paddock.invalidations.pending{}`:                                               1,
		`paddock.invalidation.results{result="pending"}`:                                1,
	})
	if _, ok := got[`paddock.memstore.entries{}`]; ok {
		t.Error("memstore gauges observed for a Redis store")
	}
}

func TestNewAndWatchRefuseNil(t *testing.T) {
	if _, err := paddockotel.New(nil); err == nil {
		t.Error("New(nil): no error")
	}
	exp, err := paddockotel.New(sdkmetric.NewMeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exp.Watch(nil); err == nil {
		t.Error("Watch(nil): no error")
	}
}
