package proxy

import (
	"errors"
	"log/slog"
	"net/http"
	"os"
	"time"
)

// statusWriter notes the status and size of a response for the observer. Unwrap lets
// http.ResponseController reach the connection's Flusher and Hijacker (streaming, upgrades).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// deadlineWriter gives each write to the client SendTimeout to complete (net/http's
// WriteTimeout would bound the whole response, which a long download may rightly exceed).
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	log     *slog.Logger
	r       *http.Request
	logged  bool
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	n, err := w.ResponseWriter.Write(p)
	if err != nil && !w.logged && errors.Is(err, os.ErrDeadlineExceeded) {
		w.logged = true
		w.log.Warn("client stopped reading its response; connection closed", "client", w.r.RemoteAddr,
			"path", w.r.URL.Path, "send_timeout", w.timeout)
	}
	return n, err
}

func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
