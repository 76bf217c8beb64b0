package telemetry

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are warmpool's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	requests          *requestStats // requests_total and the request, upstream and queue-wait histograms
	inFlight          prometheus.GaugeFunc
	inFlightSource    atomic.Pointer[func() int]
	spawns            prometheus.Counter
	warmupFailures    *prometheus.CounterVec
	recycles          *prometheus.CounterVec
	crashes           *prometheus.CounterVec
	warmupDuration    prometheus.Histogram
	warmupEnabled     prometheus.Gauge
	warmupIneffective prometheus.Counter
	handoffs          *prometheus.CounterVec
	protocolErrors    *prometheus.CounterVec
	overshoot         prometheus.Histogram
	ceilingDrains     prometheus.Counter
	workers           *stateCollector
	bootCPU           prometheus.Histogram
	recycleWait       prometheus.Histogram
	forks             prometheus.Counter
	forkFallbacks     *prometheus.CounterVec
	templateFailures  *prometheus.CounterVec
}

// Latency buckets from 1 ms to 10 s: the steady path and the cold starts both land in range.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: newRequestStats(),
		spawns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warmpool_worker_spawns_total", Help: "Worker processes started.",
		}),
		warmupFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warmpool_warmup_failures_total", Help: "Workers that failed their boot or warm-up and were never admitted, by reason.",
		}, []string{"reason"}),
		recycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warmpool_recycles_total", Help: "Workers due for recycling, by trigger.",
		}, []string{"reason"}),
		crashes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warmpool_worker_crashes_total", Help: "Admitted workers lost, by reason: exited (without being asked to), harakiri (killed at the hard limit), hung (let a request pass the request timeout: taken out of rotation and stopped).",
		}, []string{"reason"}),
		warmupDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "warmpool_warmup_duration_seconds", Help: "Time from a worker's spawn to its admission.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		warmupEnabled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "warmpool_warmup_enabled", Help: "1 when new workers are warmed before admission, 0 when warmup.enabled = false.",
		}),
		warmupIneffective: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warmpool_warmup_ineffective_total",
			Help: "Newly admitted workers whose first requests were much slower than the pool's steady latency for the same path: the warm-up plan did not cover it.",
		}),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warmpool_front_handoffs_total",
			Help: "Client connections the lean HTTP/1.1 front handed to the net/http server (slower), by the reason of their first such request.",
		}, []string{"reason"}),
		protocolErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warmpool_worker_protocol_errors_total",
			Help: "Responses a worker got wrong, by reason: bytes_after_response (more than the response's framing allowed; the connection is closed and the bytes dropped), malformed_response.",
		}, []string{"reason"}),
		overshoot: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "warmpool_recycle_overshoot_requests",
			Help:    "For each worker recycled at max_requests: the requests it served past its limit while its replacement booted and warmed (0 when the replacement was warm in time: warmpool starts replacements early by what it learned from the last recycles).",
			Buckets: []float64{0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000},
		}),
		ceilingDrains: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warmpool_recycle_ceiling_drains_total",
			Help: "Workers drained at worker.max_requests_ceiling before their replacement was ready: the pool served with one worker less until it was admitted.",
		}),
		bootCPU: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "warmpool_worker_boot_cpu_seconds", Help: "CPU time a worker's processes used from spawn (or fork) to admission: what its boot and warm-up cost.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		recycleWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "warmpool_recycle_wait_seconds",
			Help:    "Time from a worker being due for recycling to its leaving rotation, once its replacement was admitted.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		forks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warmpool_python_forks_total", Help: "Workers of a [worker.python] app forked from a warm template.",
		}),
		forkFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warmpool_python_fork_fallbacks_total",
			Help: "Workers of a [worker.python] app started as fresh processes because no template could fork them, by reason: threads (the template runs threads besides its main one), sockets (it holds connections every fork would share), template_unavailable (none was ready within warmup.timeout), fork_failed.",
		}, []string{"reason"}),
		templateFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warmpool_python_template_failures_total",
			Help: "Template processes lost, by reason: boot (failed to import or warm; restarted with backoff), exited (died after it was ready; restarted with backoff), unresponsive (stopped answering its heartbeat, or found stopped: killed and restarted warm), threads, sockets (refused to fork because it runs other threads, or holds connections every fork would share; its generation's workers start fresh).",
		}, []string{"reason"}),
		workers: &stateCollector{desc: prometheus.NewDesc("warmpool_workers", "Workers by state.", []string{"state"}, nil)},
	}
	// Read from the rotation at each scrape rather than counted per request: two contended
	// atomic updates per request are saved.
	m.inFlight = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "warmpool_in_flight_requests",
		Help: "Client requests holding a worker or waiting for one (a worker kept busy past its 504 until harakiri counts too).",
	}, func() float64 {
		if f := m.inFlightSource.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	reg.MustRegister(m.requests, m.inFlight, m.spawns,
		m.warmupFailures, m.recycles, m.crashes, m.warmupDuration, m.warmupEnabled, m.warmupIneffective, m.handoffs, m.protocolErrors, m.overshoot, m.ceilingDrains, m.workers,
		m.bootCPU, m.recycleWait, m.forks, m.forkFallbacks, m.templateFailures)
	return m
}

// ObserveRequest records one finished client request.
func (m *Metrics) ObserveRequest(req *Request) {
	if m == nil {
		return
	}
	m.requests.observe(req)
}

// WorkerSpawned counts a started worker process.
func (m *Metrics) WorkerSpawned() {
	if m != nil {
		m.spawns.Inc()
	}
}

// WorkerBootCPU records the CPU time a worker used to boot and warm.
func (m *Metrics) WorkerBootCPU(d time.Duration) {
	if m != nil {
		m.bootCPU.Observe(d.Seconds())
	}
}

// RecycleWait records how long a worker due for recycling waited for its replacement.
func (m *Metrics) RecycleWait(d time.Duration) {
	if m != nil {
		m.recycleWait.Observe(d.Seconds())
	}
}

// WorkerForked counts a worker forked from a template.
func (m *Metrics) WorkerForked() {
	if m != nil {
		m.forks.Inc()
	}
}

// ForkFallback counts a worker started fresh because no template could fork it.
func (m *Metrics) ForkFallback(reason string) {
	if m != nil {
		m.forkFallbacks.WithLabelValues(reason).Inc()
	}
}

// TemplateFailed counts a template process lost.
func (m *Metrics) TemplateFailed(reason string) {
	if m != nil {
		m.templateFailures.WithLabelValues(reason).Inc()
	}
}

// WarmupFailed counts a worker that was never admitted.
func (m *Metrics) WarmupFailed(reason string) {
	if m != nil {
		m.warmupFailures.WithLabelValues(reason).Inc()
	}
}

// WorkerAdmitted records the boot time of an admitted worker.
func (m *Metrics) WorkerAdmitted(boot time.Duration) {
	if m != nil {
		m.warmupDuration.Observe(boot.Seconds())
	}
}

// RecycleDue counts a worker due for recycling.
func (m *Metrics) RecycleDue(reason string) {
	if m != nil {
		m.recycles.WithLabelValues(reason).Inc()
	}
}

// WorkerCrashed counts an admitted worker lost without being asked to stop.
func (m *Metrics) WorkerCrashed(reason string) {
	if m != nil {
		m.crashes.WithLabelValues(reason).Inc()
	}
}

// SetWarmupEnabled states whether warm-up is on.
func (m *Metrics) SetWarmupEnabled(on bool) {
	if m == nil {
		return
	}
	v := 0.0
	if on {
		v = 1
	}
	m.warmupEnabled.Set(v)
}

// WarmupIneffective counts a worker whose warm-up missed a slow path.
func (m *Metrics) WarmupIneffective() {
	if m != nil {
		m.warmupIneffective.Inc()
	}
}

// HandedOff counts a connection handed from the lean front to net/http.
func (m *Metrics) HandedOff(reason string) {
	if m != nil {
		m.handoffs.WithLabelValues(reason).Inc()
	}
}

// RecycleOvershoot records how many requests a worker recycled at max_requests served past it.
func (m *Metrics) RecycleOvershoot(n int64) {
	if m != nil {
		m.overshoot.Observe(float64(max(n, 0)))
	}
}

// RecycleCeiling counts a worker drained at max_requests_ceiling before its replacement was ready.
func (m *Metrics) RecycleCeiling() {
	if m != nil {
		m.ceilingDrains.Inc()
	}
}

// WorkerProtocolError counts a response a worker got wrong.
func (m *Metrics) WorkerProtocolError(reason string) {
	if m != nil {
		m.protocolErrors.WithLabelValues(reason).Inc()
	}
}

// SetInFlight gives the source of the warmpool_in_flight_requests gauge, read at each scrape.
func (m *Metrics) SetInFlight(count func() int) {
	if m != nil {
		m.inFlightSource.Store(&count)
	}
}

// SetWorkerStates gives the source of the warmpool_workers gauge, read at each scrape.
func (m *Metrics) SetWorkerStates(counts func() map[string]int) {
	if m != nil {
		m.workers.counts.Store(&counts)
	}
}

func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}
