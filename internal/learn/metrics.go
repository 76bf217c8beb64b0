package learn

import (
	"github.com/prometheus/client_golang/prometheus"
)

// maxPathSeries bounds the per-path latency series: the learned requests and the costliest
// candidates, never every path a client tried.
const maxPathSeries = 32

var (
	learnedDesc = prometheus.NewDesc("warmpool_learned_items",
		"What traffic taught the warm-up, by kind (request, module) and state (learned, dropped).", []string{"kind", "state"}, nil)
	rebuildsDesc = prometheus.NewDesc("warmpool_template_rebuilds_total",
		"Template rebuilds started with what traffic taught, by what was new: modules, requests, or modules+requests.", []string{"reason"}, nil)
	rebuildResultsDesc = prometheus.NewDesc("warmpool_template_rebuild_results_total",
		"How template rebuilds ended: ready (the workers rolled to it) or failed (the template that worked kept forking).", []string{"outcome"}, nil)
	firstDesc = prometheus.NewDesc("warmpool_new_worker_first_request_seconds",
		"Median latency of new workers' recent first requests to a path that new workers met cold (a learned or candidate request); compare with warmpool_steady_request_seconds.", []string{"method", "path"}, nil)
	steadyDesc = prometheus.NewDesc("warmpool_steady_request_seconds",
		"The pool's steady median latency for the same paths as warmpool_new_worker_first_request_seconds.", []string{"method", "path"}, nil)
)

// Describe implements prometheus.Collector.
func (l *Learner) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{learnedDesc, rebuildsDesc, rebuildResultsDesc, firstDesc, steadyDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (l *Learner) Collect(ch chan<- prometheus.Metric) {
	st := l.Status()
	counts := map[[2]string]int{{"request", "learned"}: 0, {"request", "dropped"}: 0, {"module", "learned"}: 0, {"module", "dropped"}: 0}
	series := 0
	for _, r := range st.Requests {
		if r.State == "learned" || r.State == "dropped" {
			counts[[2]string{"request", r.State}]++
		}
		if (r.State == "learned" || r.State == "candidate") && series < maxPathSeries && r.FirstMS > 0 {
			series++
			ch <- prometheus.MustNewConstMetric(firstDesc, prometheus.GaugeValue, r.FirstMS/1000, r.Method, r.Path)
			if r.SteadyMS > 0 {
				ch <- prometheus.MustNewConstMetric(steadyDesc, prometheus.GaugeValue, r.SteadyMS/1000, r.Method, r.Path)
			}
		}
	}
	for _, m := range st.Modules {
		counts[[2]string{"module", m.State}]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(learnedDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, reason := range reasons {
		ch <- prometheus.MustNewConstMetric(rebuildsDesc, prometheus.CounterValue, float64(l.rebuilds[reason]), reason)
	}
	for _, outcome := range []string{"ready", "failed"} {
		ch <- prometheus.MustNewConstMetric(rebuildResultsDesc, prometheus.CounterValue, float64(l.outcomes[outcome]), outcome)
	}
}
