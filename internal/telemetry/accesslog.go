package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strings"
	"time"
)

// AccessLog writes one JSON line per client request.
type AccessLog struct {
	log    *slog.Logger
	closer io.Closer
}

// OpenAccessLog opens the access log target: "off" (or empty) gives nil, "stdout", or a file
// path, appended to.
func OpenAccessLog(target string) (*AccessLog, error) {
	switch target {
	case "", "off":
		return nil, nil
	case "stdout":
		return NewAccessLog(os.Stdout, nil), nil
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return NewAccessLog(f, f), nil
}

// NewAccessLog writes JSON lines to w; closer (may be nil) is closed by Close.
func NewAccessLog(w io.Writer, closer io.Closer) *AccessLog {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
			return slog.Attr{} // an access record has no level or message
		}
		return a
	}})
	return &AccessLog{log: slog.New(h), closer: closer}
}

// Write logs one request.
func (a *AccessLog) Write(req *Request) {
	if a == nil {
		return
	}
	a.log.LogAttrs(context.Background(), slog.LevelInfo, "",
		slog.String("client", string(req.Client)), slog.String("method", req.Method), slog.String("host", string(req.Host)),
		slog.String("path", req.Path), slog.String("query", string(req.Query)), slog.Int("status", req.Status),
		slog.Int64("request_bytes", req.RequestBytes), slog.Int64("bytes", req.Bytes), slog.String("user_agent", string(req.UserAgent)),
		slog.Float64("duration_ms", ms(req.Duration)),
		slog.Float64("queue_wait_ms", ms(req.QueueWait)), slog.Float64("upstream_ms", ms(req.Upstream)),
		slog.Int("worker", req.WorkerID), slog.Int("pid", req.PID), slog.Int("generation", req.Generation),
		slog.Int64("request_index", req.RequestIndex), slog.Float64("worker_age_s", math.Round(req.WorkerAge.Seconds()*1000)/1000),
		slog.Bool("first_requests", req.FirstRequests), slog.String("trace_id", req.TraceID))
}

// Close closes the log file, if any.
func (a *AccessLog) Close() error {
	if a == nil || a.closer == nil {
		return nil
	}
	return a.closer.Close()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// TraceID extracts the trace id of a W3C traceparent header ("" when absent or malformed).
func TraceID(h http.Header) string {
	tp := h.Get("Traceparent")
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || len(parts[1]) != 32 {
		return ""
	}
	return parts[1]
}
