package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AccessLog writes one line per client request: a JSON object, or the combined format of
// nginx and Apache (gunicorn's default) with warmpool's fields after it.
type AccessLog struct {
	log      *slog.Logger // JSON
	combined *combinedWriter
	closer   io.Closer
}

// Access log formats.
const (
	AccessLogJSON     = "json"
	AccessLogCombined = "combined"
)

// OpenAccessLog opens the access log target: "off" (or empty) gives nil, "stdout", or a file
// path, appended to; format is AccessLogJSON or AccessLogCombined.
func OpenAccessLog(target, format string) (*AccessLog, error) {
	var w io.Writer
	var closer io.Closer
	switch target {
	case "", "off":
		return nil, nil
	case "stdout":
		w = os.Stdout
	default:
		f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("access log: %w", err)
		}
		w, closer = f, f
	}
	if format == AccessLogCombined {
		return &AccessLog{combined: &combinedWriter{w: w}, closer: closer}, nil
	}
	return NewAccessLog(w, closer), nil
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
	if a.combined != nil {
		a.combined.write(req)
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

// combinedWriter writes the combined log format, one line per request, then warmpool's own
// fields as key=value (the worker, its request index and whether it was one of its first):
//
//	203.0.113.9 - - [06/Dec/2026:04:05:06 +0000] "GET /a?b=1 HTTP/1.1" 200 512 "-" "curl/8.5" rt=0.012 uct=0.001 worker=2 index=17 first=false
type combinedWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func (c *combinedWriter) write(req *Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buf[:0]
	b = append(b, orDash(string(req.Client))...)
	b = append(b, " - - ["...)
	b = req.Start.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = appendEscaped(b, req.Path)
	if len(req.Query) > 0 {
		b = append(b, '?')
		b = appendEscaped(b, string(req.Query))
	}
	b = append(b, " HTTP/1.1\" "...)
	b = strconv.AppendInt(b, int64(req.Status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, req.Bytes, 10)
	b = append(b, " \"-\" \""...)
	b = appendEscaped(b, orDash(string(req.UserAgent)))
	b = append(b, "\" rt="...)
	b = strconv.AppendFloat(b, req.Duration.Seconds(), 'f', 3, 64)
	b = append(b, " uct="...)
	b = strconv.AppendFloat(b, req.Upstream.Seconds(), 'f', 3, 64)
	b = append(b, " worker="...)
	b = strconv.AppendInt(b, int64(req.WorkerID), 10)
	b = append(b, " index="...)
	b = strconv.AppendInt(b, req.RequestIndex, 10)
	b = append(b, " first="...)
	b = strconv.AppendBool(b, req.FirstRequests)
	b = append(b, '\n')
	c.w.Write(b)
	c.buf = b
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// appendEscaped appends s with quotes, backslashes and control bytes escaped (\xHH), as nginx
// does, so that a client cannot forge a log line.
func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' || c < 0x20 || c >= 0x7f {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}
