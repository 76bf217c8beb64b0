package telemetry

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// History keeps per-second latency samples of the last minutes, split by first-requests vs
// steady, for the status page's chart and the status's recent P50/P99.
type History struct {
	mu      sync.Mutex
	seconds [historySeconds]second
	now     func() time.Time
}

const (
	historySeconds   = 300 // five minutes
	samplesPerSecond = 256 // per kind; past it, reservoir sampling keeps a fair subset
)

type second struct {
	unix          int64
	steady, first reservoir
}

type reservoir struct {
	seen    int
	samples []float64 // milliseconds
}

func (r *reservoir) add(ms float64) {
	r.seen++
	if len(r.samples) < samplesPerSecond {
		r.samples = append(r.samples, ms)
		return
	}
	if i := rand.IntN(r.seen); i < samplesPerSecond {
		r.samples[i] = ms
	}
}

func (r *reservoir) reset() {
	r.seen = 0
	r.samples = r.samples[:0]
}

// NewHistory returns an empty history.
func NewHistory() *History { return &History{now: time.Now} }

// Observe adds one finished request that reached a worker.
func (h *History) Observe(req *Request) {
	if req.WorkerID == 0 {
		return
	}
	ms := float64(req.Duration.Microseconds()) / 1000
	t := req.Start.Add(req.Duration).Unix()
	h.mu.Lock()
	s := &h.seconds[t%historySeconds]
	if s.unix != t {
		s.unix = t
		s.steady.reset()
		s.first.reset()
	}
	if req.FirstRequests {
		s.first.add(ms)
	} else {
		s.steady.add(ms)
	}
	h.mu.Unlock()
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
	from := now - int64(window/time.Second)
	h.mu.Lock()
	defer h.mu.Unlock()
	var pts []Point
	for t := from + 1; t <= now; t++ {
		s := &h.seconds[t%historySeconds]
		if s.unix != t || (s.steady.seen == 0 && s.first.seen == 0) {
			continue
		}
		p := Point{Unix: t, SteadyN: s.steady.seen, FirstN: s.first.seen}
		p.SteadyP50, p.SteadyP99 = quantiles(s.steady.samples)
		p.FirstP50, p.FirstP99 = quantiles(s.first.samples)
		pts = append(pts, p)
	}
	return pts
}

// Summary merges the samples of the last window.
func (h *History) Summary(window time.Duration) Summary {
	now := h.now().Unix()
	from := now - int64(window/time.Second)
	var steady, first []float64
	sum := Summary{WindowSeconds: int(window / time.Second)}
	h.mu.Lock()
	for t := from + 1; t <= now; t++ {
		s := &h.seconds[t%historySeconds]
		if s.unix != t {
			continue
		}
		steady = append(steady, s.steady.samples...)
		first = append(first, s.first.samples...)
		sum.SteadyN += s.steady.seen
		sum.FirstN += s.first.seen
	}
	h.mu.Unlock()
	sum.SteadyP50, sum.SteadyP99 = quantiles(steady)
	sum.FirstP50, sum.FirstP99 = quantiles(first)
	return sum
}

func quantiles(samples []float64) (p50, p99 float64) {
	if len(samples) == 0 {
		return 0, 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return s[(len(s)-1)/2], s[(len(s)-1)*99/100]
}
