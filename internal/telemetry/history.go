package telemetry

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// History keeps per-second latency samples of the last minutes, split by first-requests vs
// steady, for the status page's chart and the status's recent P50/P99.
//
// It is sharded like the request metrics (by Request.Shard), each shard with its own lock and
// reservoirs, so concurrent requests do not queue on one lock; readers merge the shards, each
// sample weighted by the number of requests it stands for.
type History struct {
	shards []historyShard
	mask   int
	perSec int // reservoir size per shard, second and kind
	now    func() time.Time
}

type historyShard struct {
	mu      sync.Mutex
	seconds [historySeconds]second
	_       [64]byte
}

const (
	historySeconds   = 300 // five minutes
	samplesPerSecond = 256 // per kind, over all shards; past it, reservoir sampling keeps a fair subset
)

type second struct {
	unix          int64
	steady, first reservoir
}

type reservoir struct {
	seen    int
	samples []float64 // milliseconds
}

func (r *reservoir) add(ms float64, size int) {
	r.seen++
	if len(r.samples) < size {
		r.samples = append(r.samples, ms)
		return
	}
	if i := rand.IntN(r.seen); i < size {
		r.samples[i] = ms
	}
}

func (r *reservoir) reset() {
	r.seen = 0
	r.samples = r.samples[:0]
}

// NewHistory returns an empty history.
func NewHistory() *History {
	n := shardCount()
	return &History{shards: make([]historyShard, n), mask: n - 1, perSec: max(8, samplesPerSecond/n), now: time.Now}
}

// Observe adds one finished request that reached a worker.
func (h *History) Observe(req *Request) {
	if req.WorkerID == 0 {
		return
	}
	ms := float64(req.Duration.Microseconds()) / 1000
	t := req.Start.Add(req.Duration).Unix()
	sh := &h.shards[req.Shard&h.mask]
	sh.mu.Lock()
	s := &sh.seconds[t%historySeconds]
	if s.unix != t {
		s.unix = t
		s.steady.reset()
		s.first.reset()
	}
	if req.FirstRequests {
		s.first.add(ms, h.perSec)
	} else {
		s.steady.add(ms, h.perSec)
	}
	sh.mu.Unlock()
}

// weighted is a sample standing for weight requests.
type weighted struct{ ms, weight float64 }

// merged is one kind's samples of some seconds over all shards.
type merged struct {
	seen    int
	samples []weighted
}

func (m *merged) add(r *reservoir) {
	if len(r.samples) == 0 {
		return
	}
	m.seen += r.seen
	w := float64(r.seen) / float64(len(r.samples))
	for _, ms := range r.samples {
		m.samples = append(m.samples, weighted{ms, w})
	}
}

// merge adds o's samples, already weighted, to m.
func (m *merged) merge(o *merged) {
	m.seen += o.seen
	m.samples = append(m.samples, o.samples...)
}

// quantiles are the weighted P50 and P99: the smallest sample at which the cumulative weight
// reaches half and 99 % of the requests (nearest rank).
func (m *merged) quantiles() (p50, p99 float64) {
	if len(m.samples) == 0 {
		return 0, 0
	}
	slices.SortFunc(m.samples, func(a, b weighted) int { return cmp.Compare(a.ms, b.ms) })
	var total float64
	for _, s := range m.samples {
		total += s.weight
	}
	at := func(q float64) float64 {
		var cum float64
		for _, s := range m.samples {
			if cum += s.weight; cum >= q*total*(1-1e-12) {
				return s.ms
			}
		}
		return m.samples[len(m.samples)-1].ms
	}
	return at(0.5), at(0.99)
}

// collect calls fn for each second from..to (inclusive) that saw requests, with the shards'
// samples of that second merged.
func (h *History) collect(from, to int64, fn func(t int64, steady, first *merged)) {
	for t := from; t <= to; t++ {
		var steady, first merged
		for i := range h.shards {
			sh := &h.shards[i]
			sh.mu.Lock()
			if s := &sh.seconds[t%historySeconds]; s.unix == t {
				steady.add(&s.steady)
				first.add(&s.first)
			}
			sh.mu.Unlock()
		}
		if steady.seen > 0 || first.seen > 0 {
			fn(t, &steady, &first)
		}
	}
}

// Point is one second of the chart.
type Point struct {
	Unix      int64   `json:"t"`
	SteadyN   int     `json:"steady_n"`
	SteadyP50 float64 `json:"steady_p50_ms"`
	SteadyP99 float64 `json:"steady_p99_ms"`
	FirstN    int     `json:"first_n"`
	FirstP50  float64 `json:"first_p50_ms"`
	FirstP99  float64 `json:"first_p99_ms"`
}

// Summary is the recent latency split by first-requests vs steady.
type Summary struct {
	WindowSeconds int     `json:"window_seconds"`
	SteadyN       int     `json:"steady_requests"`
	SteadyP50     float64 `json:"steady_p50_ms"`
	SteadyP99     float64 `json:"steady_p99_ms"`
	FirstN        int     `json:"first_requests"`
	FirstP50      float64 `json:"first_p50_ms"`
	FirstP99      float64 `json:"first_p99_ms"`
}

// Points returns the seconds of the last window that saw requests, oldest first.
func (h *History) Points(window time.Duration) []Point {
	now := h.now().Unix()
	var pts []Point
	h.collect(now-int64(window/time.Second)+1, now, func(t int64, steady, first *merged) {
		p := Point{Unix: t, SteadyN: steady.seen, FirstN: first.seen}
		p.SteadyP50, p.SteadyP99 = steady.quantiles()
		p.FirstP50, p.FirstP99 = first.quantiles()
		pts = append(pts, p)
	})
	return pts
}

// Summary merges the samples of the last window.
func (h *History) Summary(window time.Duration) Summary {
	now := h.now().Unix()
	var steady, first merged
	h.collect(now-int64(window/time.Second)+1, now, func(_ int64, s, f *merged) {
		steady.merge(s)
		first.merge(f)
	})
	sum := Summary{WindowSeconds: int(window / time.Second), SteadyN: steady.seen, FirstN: first.seen}
	sum.SteadyP50, sum.SteadyP99 = steady.quantiles()
	sum.FirstP50, sum.FirstP99 = first.quantiles()
	return sum
}
