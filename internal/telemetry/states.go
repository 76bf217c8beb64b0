package telemetry

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// workerStates are the states warmpool_workers always reports, even at 0.
var workerStates = []string{"starting", "warming", "ready", "draining"}

// stateCollector reports the number of workers per state, read from the pool at scrape time.
type stateCollector struct {
	desc   *prometheus.Desc
	counts atomic.Pointer[func() map[string]int]
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	var counts map[string]int
	if f := c.counts.Load(); f != nil {
		counts = (*f)()
	}
	for _, s := range workerStates {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), s)
	}
}
