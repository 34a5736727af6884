package otel_test

import (
	"context"
	"fmt"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/memstore"
	paddockotel "github.com/paddockcache/paddock/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// An Exporter records for one Cache on a MeterProvider; Watch makes the
// provider's readers see the Cache's counts. A real program passes its
// provider (otel.GetMeterProvider()) with a periodic reader or a
// Prometheus exporter.
func Example() {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	exp := paddock.Must(paddockotel.New(mp))
	c := paddock.Must(paddock.New(paddock.Must(memstore.New()), paddock.WithRecorder(exp)))
	defer c.Close()
	reg := paddock.Must(exp.Watch(c))
	defer reg.Unregister()

	articles := paddock.Must(paddock.NewLoader[string](c, "article"))
	load := func(context.Context) (string, error) { return "Hello", nil }
	articles.Get(context.Background(), "42", load) // a miss: loaded
	articles.Get(context.Background(), "42", load) // a hit

	var rm metricdata.ResourceMetrics
	reader.Collect(context.Background(), &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == "paddock.load.duration" {
			fmt.Println(m.Name, m.Unit, "loads:", h.DataPoints[0].Count)
		}
		if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "paddock.requests" {
			total := int64(0)
			for _, p := range s.DataPoints {
				total += p.Value
			}
			fmt.Println(m.Name, "total:", total)
		}
	}
	// Output:
	// paddock.load.duration s loads: 1
	// paddock.requests total: 2
}
