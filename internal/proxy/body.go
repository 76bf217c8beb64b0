package proxy

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// wrapBody makes release run once when the response body is closed. A 101 response keeps its
// body writable, as ReverseProxy needs for upgraded connections.
func wrapBody(resp *http.Response, release func()) io.ReadCloser {
	b := &releasingBody{ReadCloser: resp.Body, release: release}
	if rw, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		return &releasingRWBody{releasingBody: b, w: rw}
	}
	return b
}

type releasingBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

type releasingRWBody struct {
	*releasingBody
	w io.Writer
}

func (b *releasingRWBody) Write(p []byte) (int, error) { return b.w.Write(p) }

// bufferPool recycles the 32 KiB copy buffers of ReverseProxy.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (bp *bufferPool) Get() []byte  { return *(bp.p.Get().(*[]byte)) }
func (bp *bufferPool) Put(b []byte) { bp.p.Put(&b) }

// retryableBody is a request body that survives the transport's Close after a failed dial, so
// the request can go to another worker as long as nothing was read from it.
type retryableBody struct {
	io.ReadCloser
	read atomic.Bool // set by the transport's writing goroutine, read by RoundTrip
}

func (b *retryableBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.ReadCloser.Read(p)
}

// Close passes through once anything was read; an untouched body stays open for a retry, and
// the HTTP server closes it when the handler returns.
func (b *retryableBody) Close() error {
	if b.read.Load() {
		return b.ReadCloser.Close()
	}
	return nil
}

func (b *retryableBody) consumed() bool { return b != nil && b.read.Load() }

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
