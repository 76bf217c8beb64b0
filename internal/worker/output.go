package worker

import (
	"bytes"
	"log/slog"
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
