package telemetry

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The sharded request series expose exactly what client_golang's own counter and histograms
// expose for the same requests, whatever shards the requests land on.
func TestRequestStatsMatchClientGolang(t *testing.T) {
	got := prometheus.NewPedanticRegistry()
	m := NewMetrics(got)

	want := prometheus.NewPedanticRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warmpool_requests_total",
		Help: "Client requests by status class, and whether they were among the first cold_window requests of their worker."},
		[]string{"code", "first_requests"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "warmpool_request_duration_seconds",
		Help: "Client request duration at the front, queue wait included.", Buckets: latencyBuckets}, []string{"first_requests"})
	upstream := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "warmpool_upstream_duration_seconds",
		Help: "Time a worker took, from sending it the request to the end of its response.", Buckets: latencyBuckets}, []string{"first_requests"})
	queue := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "warmpool_queue_wait_seconds",
		Help: "Time a request waited for a free worker.", Buckets: queueBuckets})
	want.MustRegister(requests, duration, upstream, queue)

	rng := rand.New(rand.NewPCG(1, 2))
	statuses := []int{200, 204, 302, 404, 502, 503, 0, 700}
	// Bucket bounds themselves are included: "le" means at most.
	exact := []time.Duration{time.Millisecond, 2500 * time.Microsecond, 10 * time.Second, 100 * time.Microsecond}
	for i := range 5000 {
		d := time.Duration(rng.Int64N(int64(20 * time.Second)))
		if i < len(exact) {
			d = exact[i]
		}
		req := &Request{Status: statuses[rng.IntN(len(statuses))], FirstRequests: rng.IntN(10) == 0, Duration: d,
			Upstream: d / 2, QueueWait: time.Duration(rng.Int64N(int64(time.Second))), Shard: rng.Int()}
		if i < len(exact) {
			req.QueueWait = d
		}
		if rng.IntN(20) != 0 {
			req.WorkerID = 1 + rng.IntN(3)
		}
		m.ObserveRequest(req)

		first := "false"
		if req.FirstRequests {
			first = "true"
		}
		requests.WithLabelValues(statusClass(req.Status), first).Inc()
		duration.WithLabelValues(first).Observe(req.Duration.Seconds())
		if req.WorkerID != 0 {
			upstream.WithLabelValues(first).Observe(req.Upstream.Seconds())
			queue.Observe(req.QueueWait.Seconds())
		}
	}
	gotFams, err := got.Gather()
	if err != nil {
		t.Fatal(err)
	}
	wantFams, err := want.Gather()
	if err != nil {
		t.Fatal(err)
	}
	compared := 0
	for _, wf := range wantFams {
		var gf *dto.MetricFamily
		for _, f := range gotFams {
			if f.GetName() == wf.GetName() {
				gf = f
			}
		}
		if gf == nil || gf.GetType() != wf.GetType() || gf.GetHelp() != wf.GetHelp() || len(gf.Metric) != len(wf.Metric) {
			t.Fatalf("%s: got %v, want %v", wf.GetName(), gf, wf)
		}
		for i, wm := range wf.Metric {
			gm := gf.Metric[i]
			where := wf.GetName() + labelsOf(wm)
			if labelsOf(gm) != labelsOf(wm) {
				t.Fatalf("%s: got labels %s", where, labelsOf(gm))
			}
			switch {
			case wm.Counter != nil:
				if gm.GetCounter().GetValue() != wm.Counter.GetValue() {
					t.Errorf("%s = %v, want %v", where, gm.GetCounter().GetValue(), wm.Counter.GetValue())
				}
			case wm.Histogram != nil:
				gh, wh := gm.GetHistogram(), wm.Histogram
				if gh.GetSampleCount() != wh.GetSampleCount() || math.Abs(gh.GetSampleSum()-wh.GetSampleSum()) > 1e-9*wh.GetSampleSum() {
					t.Errorf("%s: count %d sum %v, want %d and %v", where, gh.GetSampleCount(), gh.GetSampleSum(), wh.GetSampleCount(), wh.GetSampleSum())
				}
				if len(gh.Bucket) != len(wh.Bucket) {
					t.Fatalf("%s: %d buckets, want %d", where, len(gh.Bucket), len(wh.Bucket))
				}
				for j, wb := range wh.Bucket {
					if gb := gh.Bucket[j]; gb.GetUpperBound() != wb.GetUpperBound() || gb.GetCumulativeCount() != wb.GetCumulativeCount() {
						t.Errorf("%s: bucket le=%v has %d, want le=%v with %d", where, gb.GetUpperBound(), gb.GetCumulativeCount(), wb.GetUpperBound(), wb.GetCumulativeCount())
					}
				}
			}
			compared++
		}
	}
	if compared < 12 {
		t.Fatalf("compared only %d series", compared)
	}
}

func labelsOf(m *dto.Metric) string {
	var b strings.Builder
	for _, l := range m.Label {
		b.WriteString("," + l.GetName() + "=" + l.GetValue())
	}
	return "{" + strings.TrimPrefix(b.String(), ",") + "}"
}
