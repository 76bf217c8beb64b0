package admin

import (
	"crypto/subtle"
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"warmpool/internal/pool"
	"warmpool/internal/pyfork"
	"warmpool/internal/telemetry"
	"warmpool/internal/worker"
)

//go:embed page/index.html
var page embed.FS

// StatusSource is what the admin endpoints report on.
type StatusSource interface {
	Status() pool.Status
}

// Handler serves the admin endpoints.
type Handler struct {
	src      StatusSource
	history  *telemetry.History
	minReady atomic.Int64
	draining atomic.Bool
	mux      *http.ServeMux
}

// Access says who may use what on the admin listener.
type Access struct {
	// Token, when set, is needed (Authorization: Bearer) for everything but /livez, /readyz
	// and the status page's HTML (which asks for it and sends it with its requests).
	Token string
	// MetricsOpen serves /metrics without the token (a Prometheus that cannot send one).
	MetricsOpen bool
	// Pprof serves /debug/pprof/; off, it is not served at all.
	Pprof bool
}

// New returns the admin handler. /readyz needs minReady ready workers once the pool was first
// fully ready; metrics (nil: no /metrics) serves /metrics; history (nil: none) gives the
// latency figures of /status and the page's chart.
func New(src StatusSource, minReady int, metrics http.Handler, history *telemetry.History, access Access) *Handler {
	h := &Handler{src: src, history: history, mux: http.NewServeMux()}
	h.minReady.Store(int64(minReady))
	guard := func(next http.Handler) http.Handler { return h.needToken(access.Token, next) }
	if metrics != nil {
		if access.MetricsOpen {
			h.mux.Handle("GET /metrics", metrics)
		} else {
			h.mux.Handle("GET /metrics", guard(metrics))
		}
	}
	h.mux.HandleFunc("GET /livez", h.livez)
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.Handle("GET /status", guard(http.HandlerFunc(h.status)))
	h.mux.HandleFunc("GET /{$}", h.page)
	if access.Pprof { // profiles, a command line and traces: only when asked for
		h.mux.Handle("/debug/pprof/", guard(http.HandlerFunc(pprof.Index)))
		h.mux.Handle("/debug/pprof/cmdline", guard(http.HandlerFunc(pprof.Cmdline)))
		h.mux.Handle("/debug/pprof/profile", guard(http.HandlerFunc(pprof.Profile)))
		h.mux.Handle("/debug/pprof/symbol", guard(http.HandlerFunc(pprof.Symbol)))
		h.mux.Handle("/debug/pprof/trace", guard(http.HandlerFunc(pprof.Trace)))
	}
	return h
}

// needToken serves next only to a request with the bearer token ("" token: to anyone).
func (h *Handler) needToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="warmpool admin"`)
			http.Error(w, "warmpool: this admin endpoint needs Authorization: Bearer <admin token>", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SetMinReady changes the readiness threshold (on a config reload).
func (h *Handler) SetMinReady(n int) { h.minReady.Store(int64(n)) }

// SetDraining makes /readyz answer 503 from now on: warmpool is shutting down.
func (h *Handler) SetDraining() { h.draining.Store(true) }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) livez(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

func (h *Handler) readyz(w http.ResponseWriter, _ *http.Request) {
	st := h.src.Status()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	switch {
	case h.draining.Load() || st.ShuttingDown:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready: shutting down")
	case !st.FirstReady:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %d of %d workers warmed up so far\n", st.Ready, st.Desired)
	case int64(st.Ready) < h.minReady.Load():
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %d ready workers, min_ready is %d; %s\n", st.Ready, h.minReady.Load(), st.Problem)
	default:
		fmt.Fprintf(w, "ready: %d of %d workers\n", st.Ready, st.Desired)
	}
}

// statusResponse is the pool's status with what is measured at request time.
type statusResponse struct {
	pool.Status
	Workers   []workerStatus   `json:"workers"`
	Templates []templateStatus `json:"templates,omitempty"`
	// Latency is the last minute's P50/P99, first requests of workers vs steady.
	Latency telemetry.Summary `json:"latency"`
	// Chart is per second over the last five minutes.
	Chart []telemetry.Point `json:"chart"`
}

// Memory is read at request time: RSS and PSS of each worker's process group (for a gunicorn
// worker, its arbiter and worker processes), and of each Python template.
type workerStatus struct {
	pool.WorkerStatus
	AgeSeconds float64 `json:"age_seconds"`
	RSSBytes   int64   `json:"rss_bytes,omitempty"`
	PSSBytes   int64   `json:"pss_bytes,omitempty"`
}

type templateStatus struct {
	pyfork.TemplateStatus
	RSSBytes int64 `json:"rss_bytes,omitempty"`
	PSSBytes int64 `json:"pss_bytes,omitempty"`
}

func (h *Handler) status(w http.ResponseWriter, _ *http.Request) {
	st := h.src.Status()
	resp := statusResponse{Status: st, Workers: make([]workerStatus, 0, len(st.Workers)), Chart: []telemetry.Point{}}
	for _, ws := range st.Workers {
		out := workerStatus{WorkerStatus: ws}
		if !ws.StartedAt.IsZero() {
			out.AgeSeconds = time.Since(ws.StartedAt).Seconds()
		}
		if ws.PID != 0 {
			out.RSSBytes, out.PSSBytes, _ = worker.GroupMemory(ws.PID)
		}
		resp.Workers = append(resp.Workers, out)
	}
	for _, ts := range st.Templates {
		out := templateStatus{TemplateStatus: ts}
		if ts.PID != 0 {
			out.RSSBytes, out.PSSBytes, _ = worker.ProcessMemory(ts.PID)
		}
		resp.Templates = append(resp.Templates, out)
	}
	if h.history != nil {
		resp.Latency = h.history.Summary(time.Minute)
		resp.Chart = h.history.Points(5 * time.Minute)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(resp)
}

// page is the live status page: self-contained, no external assets.
func (h *Handler) page(w http.ResponseWriter, _ *http.Request) {
	b, _ := page.ReadFile("page/index.html")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
	_, _ = w.Write(b)
}
