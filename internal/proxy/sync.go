package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"syscall"
	"time"

	"warmpool/internal/worker"
)

// The synchronous path: for body-less requests (the bulk of traffic), the handler's goroutine
// writes the request on a kept-alive connection and reads the response itself, with no
// hand-off to per-connection goroutines as in http.Transport. Requests with a body, upgrades
// and "Expect: 100-continue" keep http.Transport, which handles their corner cases.

// syncEligible reports whether req can take the synchronous path.
func syncEligible(req *http.Request) bool {
	return (req.Body == nil || req.Body == http.NoBody) && req.ContentLength == 0 &&
		req.Method != http.MethodConnect && req.Header.Get("Upgrade") == "" && req.Header.Get("Expect") == ""
}

// roundTripSync sends req (built by ReverseProxy) to w on a pooled connection and returns the
// response, whose body hands the connection back to the pool once read to the end.
func (f *Front) roundTripSync(w *worker.Worker, req *http.Request) (*http.Response, error) {
	resp, sent, err := f.exchangeSync(w, req.Context(), func(bw *bufio.Writer) error { return req.Write(bw) }, req)
	if sent {
		if tr := httptrace.ContextClientTrace(req.Context()); tr != nil && tr.WroteRequest != nil {
			tr.WroteRequest(httptrace.WroteRequestInfo{})
		}
	}
	return resp, err
}

// exchangeSync writes a request with write on a pooled connection to w, flushes it and reads the
// response to forRead (its method decides whether a body follows). sent reports that the
// request reached the worker.
func (f *Front) exchangeSync(w *worker.Worker, ctx context.Context, write func(*bufio.Writer) error, forRead *http.Request) (*http.Response, bool, error) {
	everSent := false
	for attempt := 1; ; attempt++ {
		resp, sent, reused, err := f.exchangeOnce(w, ctx, write, forRead, attempt > 1)
		everSent = everSent || sent
		// Some workers (uWSGI's http-socket) close a connection after a response without
		// saying "Connection: close". A reused connection that breaks before any byte of the
		// response came most likely never served this request: an idempotent one is sent
		// once more, to the same worker on a fresh connection, as http.Transport does. If it
		// did reach the worker (which then died), everSent keeps it from going elsewhere.
		if reused && attempt == 1 && brokenConn(err) && idempotent(forRead.Method) && ctx.Err() == nil {
			f.log.Debug("kept-alive connection broke before the worker answered; retrying on a fresh one", "worker", w.ID(), "error", err)
			continue
		}
		return resp, everSent, err
	}
}

// brokenConn is a connection that ended without a response: closed or reset by the peer.
func brokenConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// exchangeOnce does one attempt; fresh skips the pool's idle connections.
func (f *Front) exchangeOnce(w *worker.Worker, ctx context.Context, write func(*bufio.Writer) error, forRead *http.Request, fresh bool) (resp *http.Response, sent, reused bool, err error) {
	c, err := f.getConn(ctx, w, fresh)
	if err != nil {
		return nil, false, false, err
	}
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	}
	if err := write(c.W); err != nil {
		return nil, false, c.Reused, failSync(c, stop, err)
	}
	if err := c.W.Flush(); err != nil {
		return nil, false, c.Reused, failSync(c, stop, err)
	}
	if d := w.ResponseHeaderTimeout(); d > 0 {
		c.SetReadDeadline(time.Now().Add(d))
	}
	for {
		if resp, err = http.ReadResponse(c.R, forRead); err != nil {
			return nil, true, c.Reused, failSync(c, stop, err)
		}
		// Skip interim responses (100 Continue, 103 Early Hints); 101 never comes here.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	c.SetReadDeadline(time.Time{})
	// Only the worker's "Connection: close" ends the connection: a client's never reaches it.
	b := &syncBody{f: f, w: w, body: resp.Body, c: c, stop: stop, keep: !resp.Close, method: forRead.Method, path: forRead.URL.Path,
		bodyless: forRead.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified}
	if resp.Body == http.NoBody {
		b.finish(true)
	}
	resp.Body = b
	return resp, true, c.Reused, nil
}

func failSync(c *worker.Conn, stop func() bool, err error) error {
	stop()
	c.Close()
	return err
}

// syncBody returns the connection to the pool once the response was read to its end.
type syncBody struct {
	f            *Front
	w            *worker.Worker
	body         io.ReadCloser
	c            *worker.Conn
	method, path string
	bodyless     bool // a response that may not have a body: the connection is not reused (reuse.go)
	stop         func() bool
	keep         bool
	done         bool
}

func (b *syncBody) Read(p []byte) (int, error) {
	if b.done && b.body == http.NoBody {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *syncBody) Close() error {
	err := b.body.Close()
	if !b.done {
		b.finish(false) // not read to the end: the stream cannot be reused
	}
	return err
}

func (b *syncBody) finish(reusable bool) {
	if b.done {
		return
	}
	b.done = true
	switch {
	case !b.stop() || !reusable || !b.keep:
		b.c.Close()
	case b.bodyless:
		if b.c.R.Buffered() > 0 {
			b.f.bytesAfterResponse(b.w, b.c, b.method+" "+b.path)
		} else {
			b.c.Close()
		}
	case !reuse(b.w, b.c):
		b.f.bytesAfterResponse(b.w, b.c, b.method+" "+b.path)
	}
}
