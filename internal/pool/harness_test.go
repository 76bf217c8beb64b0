package pool_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"warmpool/internal/config"
	"warmpool/internal/pool"
	"warmpool/internal/proxy"
	"warmpool/internal/telemetry"
	"warmpool/internal/testutil"
	"warmpool/internal/testworker"
	"warmpool/internal/worker"
)

// recordingRotation wraps the real balancer and records what the pool does to it.
type recordingRotation struct {
	*proxy.Balancer
	mu             sync.Mutex
	added          []*worker.Worker
	sizeAtRemove   []int // rotation size just before each Remove
	addedNotWarmed int
}

func (r *recordingRotation) Add(w *worker.Worker, limit int, marks ...worker.CountMark) {
	r.mu.Lock()
	r.added = append(r.added, w)
	if w.State() != worker.Ready {
		r.addedNotWarmed++
	}
	r.mu.Unlock()
	r.Balancer.Add(w, limit, marks...)
}

func (r *recordingRotation) Remove(w *worker.Worker) <-chan struct{} {
	r.mu.Lock()
	r.sizeAtRemove = append(r.sizeAtRemove, r.Balancer.Len())
	r.mu.Unlock()
	return r.Balancer.Remove(w)
}

type harness struct {
	t    *testing.T
	cfg  *config.Config
	rot  *recordingRotation
	pool *pool.Pool
	logs *testutil.Logs
	srv  *httptest.Server
	cl   *http.Client
	reg  *prometheus.Registry // the pool's metrics
}

// counter is the value of a counter of the pool's metrics with the given labels (0 if absent).
func (h *harness) counter(name string, labels map[string]string) float64 {
	h.t.Helper()
	families, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// baseConfig runs the test binary as the worker, with a 50ms cold start warmed by 4 requests.
func baseConfig() *config.Config {
	cfg := config.Default()
	cfg.Worker.Command = []string{os.Args[0], "{socket}"}
	cfg.Worker.Env = map[string]string{testworker.EnvActive: "1", testworker.EnvCold: "50ms"}
	cfg.Worker.Count = 2
	cfg.Worker.Concurrency = 4
	cfg.Worker.GracefulTimeout = config.Duration{Duration: 5 * time.Second}
	cfg.Worker.RestartBackoff = config.Duration{Duration: 20 * time.Millisecond}
	cfg.Worker.RestartBackoffMax = config.Duration{Duration: 200 * time.Millisecond}
	cfg.Warmup.Timeout = config.Duration{Duration: 10 * time.Second}
	cfg.Warmup.Requests = []config.WarmupRequest{{Method: "GET", Path: "/", Repeat: 4}}
	return &cfg
}

func start(t *testing.T, cfg *config.Config) *harness {
	t.Helper()
	return startWith(t, cfg, nil)
}

// startWith is start with options of the test's (a learner).
func startWith(t *testing.T, cfg *config.Config, adjust func(*pool.Options)) *harness {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	logs := testutil.NewLogs(t)
	rot := &recordingRotation{Balancer: proxy.NewBalancer(cfg.Proxy.QueueSize, cfg.Proxy.QueueTimeout.Duration)}
	reg := prometheus.NewRegistry()
	opts := pool.Options{Config: cfg, Rotation: rot, SocketDir: t.TempDir(), Logger: logs.Logger(), Metrics: telemetry.NewMetrics(reg)}
	if adjust != nil {
		adjust(&opts)
	}
	p := pool.New(opts)
	front := proxy.NewFront(rot.Balancer, proxy.Options{RequestTimeout: cfg.Proxy.RequestTimeout.Duration, Logger: logs.Logger()})
	front.Start()
	srv := httptest.NewServer(front)
	h := &harness{t: t, cfg: cfg, rot: rot, pool: p, logs: logs, srv: srv, reg: reg,
		cl: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.cl.CloseIdleConnections()
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("pool close: %v", err)
		}
		if err := front.Close(ctx); err != nil {
			t.Errorf("front close: %v", err)
		}
	})
	return h
}

func (h *harness) waitReady() {
	h.t.Helper()
	select {
	case <-h.pool.FirstReady():
	case <-time.After(20 * time.Second):
		h.t.Fatalf("pool not ready in time: %+v", h.pool.Status())
	}
}

type reply struct {
	status int
	body   string
	header http.Header
	err    error
}

func (h *harness) get(path string) reply {
	return h.read(h.cl.Get(h.srv.URL + path))
}

func (h *harness) post(path string) reply {
	return h.read(h.cl.Post(h.srv.URL+path, "text/plain", strings.NewReader("payload")))
}

func (h *harness) read(resp *http.Response, err error) reply {
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, body: string(b), header: resp.Header, err: err}
}

func (h *harness) statusJSON() pool.Status {
	// Round-trip through JSON to exercise what /status serves.
	b, err := json.Marshal(h.pool.Status())
	if err != nil {
		h.t.Fatal(err)
	}
	var st pool.Status
	if err := json.Unmarshal(b, &st); err != nil {
		h.t.Fatal(err)
	}
	return st
}

func workerPID(h *harness, id int) int {
	for _, w := range h.pool.Status().Workers {
		if w.ID == id {
			return w.PID
		}
	}
	h.t.Fatalf("no worker %d in status", id)
	return 0
}

// waitStatus waits, on status-change events, until cond holds for the pool's status.
func (h *harness) waitStatus(what string, cond func(pool.Status) bool) pool.Status {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		changed := h.pool.StatusChanged()
		if st := h.pool.Status(); cond(st) {
			return st
		}
		select {
		case <-changed:
		case <-deadline:
			h.t.Fatalf("timed out waiting for %s; status: %+v", what, h.pool.Status())
		}
	}
}
