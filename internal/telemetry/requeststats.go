package telemetry

import (
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// requestStats holds the per-request series (requests by status class, request, upstream and
// queue-wait durations) as one Prometheus collector whose counts are spread over shards, each
// with its own lock and cache lines. A request updates one shard under one uncontended lock;
// client_golang's counter and three histograms took about fifteen atomic operations on lines
// every core shares, which on a busy front cost more than the rest of the bookkeeping. A
// scrape locks the shards in turn and adds them up, so it sees every request recorded before it.
type requestStats struct {
	shards []requestShard
	mask   int

	requests, duration, upstream, queueWait *prometheus.Desc
}

const statusClasses = 6 // "other", 1xx to 5xx

type requestShard struct {
	mu       sync.Mutex
	count    [statusClasses][2]uint64 // by status class and first_requests
	duration [2]durationCounts
	upstream [2]durationCounts
	queue    durationCounts
	_        [64]byte // keeps the next shard's lock off this shard's last cache line
}

// durationCounts is one histogram series: non-cumulative bucket counts, the sum and the count.
type durationCounts struct {
	buckets [16]uint64 // buckets[i]: observations in (bounds[i-1], bounds[i]]
	sum     time.Duration
	n       uint64
}

var (
	latencyBounds = durationBounds(latencyBuckets)
	queueBuckets  = []float64{.0001, .001, .005, .01, .05, .1, .5, 1, 5, 10}
	queueBounds   = durationBounds(queueBuckets)
)

func durationBounds(seconds []float64) []time.Duration {
	if len(seconds) >= len(durationCounts{}.buckets) {
		panic("telemetry: too many histogram buckets")
	}
	b := make([]time.Duration, len(seconds))
	for i, s := range seconds {
		b[i] = time.Duration(math.Round(s * float64(time.Second)))
	}
	return b
}

func (h *durationCounts) observe(d time.Duration, bounds []time.Duration) {
	i := 0
	for i < len(bounds) && d > bounds[i] {
		i++
	}
	h.buckets[i]++ // i == len(bounds): only +Inf, which is the count
	h.sum += d
	h.n++
}

func (h *durationCounts) add(o *durationCounts) {
	for i := range h.buckets {
		h.buckets[i] += o.buckets[i]
	}
	h.sum += o.sum
	h.n += o.n
}

// shardCount is how many shards the per-request bookkeeping is spread over: a power of two,
// four per P so that two running requests seldom meet, at most 64.
func shardCount() int {
	n := 1
	for n < 4*runtime.GOMAXPROCS(0) && n < 64 {
		n *= 2
	}
	return n
}

func newRequestStats() *requestStats {
	n := shardCount()
	return &requestStats{
		shards: make([]requestShard, n), mask: n - 1,
		requests: prometheus.NewDesc("warmpool_requests_total",
			"Client requests by status class, and whether they were among the first cold_window requests of their worker.",
			[]string{"code", "first_requests"}, nil),
		duration: prometheus.NewDesc("warmpool_request_duration_seconds",
			"Client request duration at the front, queue wait included.", []string{"first_requests"}, nil),
		upstream: prometheus.NewDesc("warmpool_upstream_duration_seconds",
			"Time a worker took, from sending it the request to the end of its response.", []string{"first_requests"}, nil),
		queueWait: prometheus.NewDesc("warmpool_queue_wait_seconds", "Time a request waited for a free worker.", nil, nil),
	}
}

func (s *requestStats) observe(req *Request) {
	class, first := 0, 0
	if req.Status >= 100 && req.Status <= 599 {
		class = req.Status / 100
	}
	if req.FirstRequests {
		first = 1
	}
	sh := &s.shards[req.Shard&s.mask]
	sh.mu.Lock()
	sh.count[class][first]++
	sh.duration[first].observe(req.Duration, latencyBounds)
	if req.WorkerID != 0 {
		sh.upstream[first].observe(req.Upstream, latencyBounds)
		sh.queue.observe(req.QueueWait, queueBounds)
	}
	sh.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (s *requestStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.requests
	ch <- s.duration
	ch <- s.upstream
	ch <- s.queueWait
}

// Collect implements prometheus.Collector. As with labelled client_golang series, a label set
// appears once it has been observed; the unlabelled queue-wait histogram is always there.
func (s *requestStats) Collect(ch chan<- prometheus.Metric) {
	var total requestShard
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for c := range sh.count {
			for f := range sh.count[c] {
				total.count[c][f] += sh.count[c][f]
			}
		}
		for f := range 2 {
			total.duration[f].add(&sh.duration[f])
			total.upstream[f].add(&sh.upstream[f])
		}
		total.queue.add(&sh.queue)
		sh.mu.Unlock()
	}
	firstLabel := [2]string{"false", "true"}
	for c := range total.count {
		for f, n := range total.count[c] {
			if n > 0 {
				ch <- prometheus.MustNewConstMetric(s.requests, prometheus.CounterValue, float64(n), statusClass(c*100), firstLabel[f])
			}
		}
	}
	for f := range 2 {
		if h := &total.duration[f]; h.n > 0 {
			ch <- constHistogram(s.duration, h, latencyBuckets, firstLabel[f])
		}
		if h := &total.upstream[f]; h.n > 0 {
			ch <- constHistogram(s.upstream, h, latencyBuckets, firstLabel[f])
		}
	}
	ch <- constHistogram(s.queueWait, &total.queue, queueBuckets)
}

func constHistogram(desc *prometheus.Desc, h *durationCounts, upperBounds []float64, labels ...string) prometheus.Metric {
	cumulative := make(map[float64]uint64, len(upperBounds))
	var n uint64
	for i, b := range upperBounds {
		n += h.buckets[i]
		cumulative[b] = n
	}
	return prometheus.MustNewConstHistogram(desc, h.n, h.sum.Seconds(), cumulative, labels...)
}
