package telemetry

import (
	"log/slog"
	"slices"
	"sync"
	"time"
)

// WarmupCheck verifies each newly admitted worker's warm-up against reality: it compares the
// latency of the worker's first real requests with the pool's recent median for the same path,
// and warns once per worker when they are slower by more than Factor and Floor. This catches a
// warm-up that passes but never reaches the slow code (the post-mortem's silent failure).
type WarmupCheck struct {
	factor float64
	floor  time.Duration
	log    *slog.Logger
	onMiss func()
	// first is told of every request among a new worker's first, with the pool's steady median
	// for its path (ok false: none yet): the learner's feed.
	first func(req *Request, steady time.Duration, ok bool)

	mu     sync.Mutex
	routes map[string]*latencyRing
	warned map[int]bool // worker ids already reported
}

const (
	ringSize      = 128  // steady samples kept per path
	minSamples    = 10   // a median needs at least this many
	maxRoutes     = 1024 // paths tracked; more are ignored, so random paths cannot grow memory
	maxWarnedKept = 1024
)

// NewWarmupCheck returns a check; onMiss (may be nil) is called for each warning, first (may be
// nil) for each request among a new worker's first.
func NewWarmupCheck(factor float64, floor time.Duration, log *slog.Logger, onMiss func(), first func(req *Request, steady time.Duration, ok bool)) *WarmupCheck {
	return &WarmupCheck{factor: factor, floor: floor, log: log, onMiss: onMiss, first: first,
		routes: map[string]*latencyRing{}, warned: map[int]bool{}}
}

// Observe feeds one finished request (only requests that reached a worker count).
func (c *WarmupCheck) Observe(req *Request) {
	if req.WorkerID == 0 || req.Status >= 500 {
		return
	}
	c.mu.Lock()
	ring := c.routes[req.Path]
	if !req.FirstRequests {
		if ring == nil && len(c.routes) < maxRoutes {
			ring = &latencyRing{}
			c.routes[req.Path] = ring
		}
		if ring != nil {
			ring.add(req.Upstream)
		}
		c.mu.Unlock()
		return
	}
	var median time.Duration
	var ok bool
	if ring != nil {
		median, ok = ring.median()
	}
	slow := ok && !c.warned[req.WorkerID] && float64(req.Upstream) > c.factor*float64(median) && req.Upstream-median > c.floor
	if slow {
		c.warned[req.WorkerID] = true
		c.pruneLocked(req.WorkerID)
	}
	c.mu.Unlock()
	if c.first != nil {
		c.first(req, median, ok)
	}
	if !slow {
		return
	}
	c.log.Warn("warm-up did not cover this path: a new worker's first request to it was far slower than the pool's steady latency; add it to the warm-up plan",
		"worker", req.WorkerID, "path", req.Path, "request_index", req.RequestIndex,
		"first_request", req.Upstream.Round(time.Microsecond), "steady_median", median.Round(time.Microsecond))
	if c.onMiss != nil {
		c.onMiss()
	}
}

// pruneLocked forgets old workers so the map stays bounded; ids only grow.
func (c *WarmupCheck) pruneLocked(newest int) {
	if len(c.warned) <= maxWarnedKept {
		return
	}
	for id := range c.warned {
		if id < newest-maxWarnedKept/2 {
			delete(c.warned, id)
		}
	}
}

type latencyRing struct {
	buf  [ringSize]time.Duration
	n    int
	next int
}

func (r *latencyRing) add(d time.Duration) {
	r.buf[r.next] = d
	r.next = (r.next + 1) % ringSize
	r.n = min(r.n+1, ringSize)
}

func (r *latencyRing) median() (time.Duration, bool) {
	if r.n < minSamples {
		return 0, false
	}
	s := slices.Clone(r.buf[:r.n])
	slices.Sort(s)
	return s[len(s)/2], true
}
