package testutil

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// Record is one captured log record.
type Record struct {
	Level   slog.Level
	Message string
	Attrs   map[string]string
}

func (r Record) String() string {
	return fmt.Sprintf("%s %q %v", r.Level, r.Message, r.Attrs)
}

// Logs records log records and wakes waiters on each new one.
type Logs struct {
	mu      sync.Mutex
	records []Record
	changed chan struct{}
	t       testing.TB
}

// NewLogs returns a recorder; records are also echoed to t.Log when verbose.
func NewLogs(t testing.TB) *Logs { return &Logs{changed: make(chan struct{}), t: t} }

// Logger returns a logger whose records land in l.
func (l *Logs) Logger() *slog.Logger { return slog.New(&handler{logs: l}) }

// Match is a predicate over records.
type Match func(Record) bool

// Msg matches a message and optionally attribute key/value pairs.
func Msg(msg string, kv ...string) Match {
	return func(r Record) bool { return r.Message == msg && hasAttrs(r, kv) }
}

// MsgPrefix matches messages that start with prefix, and optionally attribute key/value pairs.
func MsgPrefix(prefix string, kv ...string) Match {
	return func(r Record) bool { return strings.HasPrefix(r.Message, prefix) && hasAttrs(r, kv) }
}

func hasAttrs(r Record, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		if r.Attrs[kv[i]] != kv[i+1] {
			return false
		}
	}
	return true
}

// Contains matches records whose message or any attribute contains s.
func Contains(s string) Match {
	return func(r Record) bool {
		if strings.Contains(r.Message, s) {
			return true
		}
		for _, v := range r.Attrs {
			if strings.Contains(v, s) {
				return true
			}
		}
		return false
	}
}

// All returns the records matching m so far.
func (l *Logs) All(m Match) []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Record
	for _, r := range l.records {
		if m(r) {
			out = append(out, r)
		}
	}
	return out
}

// WaitN waits until n records match m and returns them; it fails the test after timeout.
func (l *Logs) WaitN(m Match, n int, timeout time.Duration) []Record {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		l.mu.Lock()
		var found []Record
		for _, r := range l.records {
			if m(r) {
				found = append(found, r)
			}
		}
		changed := l.changed
		l.mu.Unlock()
		if len(found) >= n {
			return found
		}
		select {
		case <-changed:
		case <-ctx.Done():
			l.t.Fatalf("timed out after %s waiting for %d matching log records (have %d); last records:\n%s", timeout, n, len(found), l.tail(15))
			return nil
		}
	}
}

// Wait waits for the first record matching m.
func (l *Logs) Wait(m Match, timeout time.Duration) Record {
	l.t.Helper()
	return l.WaitN(m, 1, timeout)[0]
}

func (l *Logs) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, r := range l.records[max(0, len(l.records)-n):] {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func (l *Logs) add(r Record) {
	l.mu.Lock()
	l.records = append(l.records, r)
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

type handler struct {
	logs  *Logs
	attrs []slog.Attr
}

func (h *handler) Enabled(context.Context, slog.Level) bool { return true }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	rec := Record{Level: r.Level, Message: r.Message, Attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		return true
	})
	h.logs.add(rec)
	return nil
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &handler{logs: h.logs, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h *handler) WithGroup(string) slog.Handler { return h }
