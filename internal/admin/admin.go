package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"

	"warmpool/internal/pool"
)

// StatusSource is what the admin endpoints report on.
type StatusSource interface {
	Status() pool.Status
}

// Handler serves the admin endpoints.
type Handler struct {
	src      StatusSource
	minReady atomic.Int64
	draining atomic.Bool
	mux      *http.ServeMux
}

// New returns the admin handler. /readyz needs minReady ready workers once the pool was first
// fully ready; metrics (nil: no /metrics) serves /metrics.
func New(src StatusSource, minReady int, metrics http.Handler) *Handler {
	h := &Handler{src: src, mux: http.NewServeMux()}
	h.minReady.Store(int64(minReady))
	if metrics != nil {
		h.mux.Handle("GET /metrics", metrics)
	}
	h.mux.HandleFunc("GET /livez", h.livez)
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.HandleFunc("GET /status", h.status)
	return h
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

func (h *Handler) status(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(h.src.Status())
}
