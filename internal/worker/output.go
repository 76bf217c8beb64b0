package worker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
)

// lineLogger turns a worker's stdout or stderr into one log record per line, tagged with the
// worker id. exec.Cmd calls Write from a single goroutine per stream.
//
// Until the worker is admitted (served reports false) its lines are logged at debug level
// only, and kept: a boot that fails is reported once, at ERROR, with its last lines (the pool
// and the templates do that), so a crash loop does not log every attempt's traceback at INFO.
type lineLogger struct {
	recent *recentLines // the worker's last lines, both streams; nil: not kept
	log    *slog.Logger
	stream string
	level  slog.Level
	served func() bool // the worker was admitted; nil: always
	off    bool        // worker.log_output = "off": read and dropped
	buf    []byte
	// trace gathers a Python traceback's lines, to be logged as one record: its header, the
	// indented frames, and the exception line that ends it.
	trace []byte
}

// newLineLogger logs a stream at level ("info" or "debug") once served, or drops it ("off").
func newLineLogger(log *slog.Logger, stream, level string, recent *recentLines, served func() bool) *lineLogger {
	l := &lineLogger{log: log, stream: stream, level: slog.LevelInfo, recent: recent, served: served}
	switch level {
	case "debug":
		l.level = slog.LevelDebug
	case "off":
		l.off = true
	}
	return l
}

const maxLine = 8 << 10

func (l *lineLogger) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.emit(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > maxLine {
		l.emit(l.buf)
		l.buf = l.buf[:0]
	}
	if len(l.buf) == 0 {
		l.buf = nil // let a large one-off buffer go
	}
	return len(p), nil
}

var tracebackHeader = []byte("Traceback (most recent call last):")

func (l *lineLogger) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	l.recent.add(line)
	if l.off {
		return
	}
	switch {
	case l.trace != nil && len(line) > 0 && (line[0] == ' ' || line[0] == '\t'):
		l.trace = append(append(l.trace, '\n'), line...) // a frame
		if len(l.trace) > 4*maxLine {
			l.flushTrace()
		}
		return
	case l.trace != nil:
		l.trace = append(append(l.trace, '\n'), line...) // the exception that ends it
		l.flushTrace()
		return
	case bytes.HasSuffix(line, tracebackHeader):
		l.trace = append([]byte(nil), line...)
		return
	}
	l.log.Log(context.Background(), l.levelNow(), string(line), "stream", l.stream)
}

// levelNow is the level of a record now: debug until the worker was admitted.
func (l *lineLogger) levelNow() slog.Level {
	if l.served != nil && !l.served() {
		return slog.LevelDebug
	}
	return l.level
}

// flushTrace logs a gathered traceback as one record.
func (l *lineLogger) flushTrace() {
	if l.trace != nil {
		l.log.Log(context.Background(), l.levelNow(), string(l.trace), "stream", l.stream)
		l.trace = nil
	}
}

// pumpLines copies a worker's output pipe into its line logger until every writer closed it
// (the worker and any child it left behind), then closes the pipe.
func pumpLines(r *os.File, l *lineLogger) {
	buf := make([]byte, 2048)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			l.Write(buf[:n])
		}
		if err != nil {
			if len(l.buf) > 0 {
				l.emit(l.buf)
			}
			l.flushTrace()
			if err != io.EOF && !errors.Is(err, os.ErrClosed) {
				l.log.Debug("worker output ended", "stream", l.stream, "error", err)
			}
			return
		}
	}
}

// recentLines keeps a worker's last output lines, whatever log_output says, so that a failed
// warm-up can be explained by what the worker itself said (Django's "Invalid HTTP_HOST
// header", a traceback).
type recentLines struct {
	mu    sync.Mutex
	lines []string // at most recentKept, oldest first
}

const recentKept = 20

func (r *recentLines) add(line []byte) {
	if r == nil || len(line) == 0 {
		return
	}
	r.mu.Lock()
	if len(r.lines) == recentKept {
		r.lines = append(r.lines[:0], r.lines[1:]...)
	}
	r.lines = append(r.lines, string(line))
	r.mu.Unlock()
}

func (r *recentLines) last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines[max(0, len(r.lines)-n):]...)
}
