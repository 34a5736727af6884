package prometheus_test

import (
	"context"
	"fmt"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/memstore"
	paddockprom "github.com/paddockcache/paddock/prometheus"
	prom "github.com/prometheus/client_golang/prometheus"
)

// An Exporter records for one Cache and is registered with a registry;
// serve the registry with promhttp.HandlerFor.
func Example() {
	exp := paddock.Must(paddockprom.New())
	c := paddock.Must(paddock.New(paddock.Must(memstore.New()), paddock.WithRecorder(exp)))
	defer c.Close()
	exp.Watch(c)
	reg := prom.NewRegistry()
	reg.MustRegister(exp)

	articles := paddock.Must(paddock.NewLoader[string](c, "article"))
	load := func(context.Context) (string, error) { return "Hello", nil }
	articles.Get(context.Background(), "42", load) // a miss: loaded
	articles.Get(context.Background(), "42", load) // a hit

	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "paddock_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			fmt.Println(m.GetLabel()[1].GetValue(), m.GetCounter().GetValue())
		}
	}
	// Output:
	// hit 1
	// miss 1
	// stale 0
}
