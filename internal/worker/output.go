package worker

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
)

// lineLogger turns a worker's stdout or stderr into one log record per line, tagged with the
// worker id. exec.Cmd calls Write from a single goroutine per stream.
type lineLogger struct {
	log    *slog.Logger
	stream string
	buf    []byte
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

func (l *lineLogger) emit(line []byte) {
	l.log.Info(string(bytes.TrimRight(line, "\r")), "stream", l.stream)
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
			if err != io.EOF && !errors.Is(err, os.ErrClosed) {
				l.log.Debug("worker output ended", "stream", l.stream, "error", err)
			}
			return
		}
	}
}
