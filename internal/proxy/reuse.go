package proxy

import (
	"context"
	"log/slog"
	"strconv"

	"warmpool/internal/worker"
)

// A worker connection is reused only when nothing is left on it past the response's framing.
// Bytes left over (a body sent to a HEAD request or with a 204 or 304, a body longer than its
// Content-Length, anything sent between responses) would otherwise be read as the response
// to the next request on that connection: another client's. So the connection is checked
// twice: when the response ends (what is already buffered), and before its next use (what
// arrived since); either way such a connection is closed, the bytes dropped, the worker named.

// A connection is never reused after a response that may not have a body (to HEAD, a 204, a
// 304): that is where sloppy workers send one anyway (Python's http.server with do_HEAD =
// do_GET), often in a write of its own that may not have arrived when the response ends, so no
// check could tell it from the next response. Such responses are a small share of traffic; a
// new connection costs far less than another client's response.

// Reasons for warmpool_worker_protocol_errors_total.
const (
	// ProtocolBytesAfterResponse: the worker sent bytes past the end of a response.
	ProtocolBytesAfterResponse = "bytes_after_response"
	// ProtocolMalformedResponse: a response head or body framing that does not parse.
	ProtocolMalformedResponse = "malformed_response"
)

// settle decides, on both paths, what becomes of a worker connection once its response has
// been relayed: closed when it may not be reused (the response failed, said Connection: close
// or ran until close, or may not have a body: reuse.go's rule for HEAD, 204 and 304); closed
// and reported when the worker sent more than the response (readAhead bytes already taken by
// a reader of the response, or bytes still buffered); else back to the pool. request names
// the request for the report; it is called only then, so the request path builds no string.
func (f *Front) settle(lease Lease, wc *Conn, reusable, bodyless bool, readAhead int, request func() string) {
	switch {
	case !reusable:
		wc.Close()
	case readAhead > 0 || wc.R.Buffered() > 0:
		f.bytesAfterResponse(lease.Worker(), wc, request(), readAhead)
	case bodyless:
		wc.Close()
	default:
		wc.Reused = true
		lease.Conns().Put(wc)
	}
}

// bytesAfterResponse closes a connection on which the worker sent bytes nobody asked for
// (after the response to the request after names), and reports it. readAhead counts such
// bytes already taken from wc by a reader of the response (net/http's fallback).
func (f *Front) bytesAfterResponse(w *worker.Worker, wc *Conn, after string, readAhead int) {
	n := readAhead + wc.R.Buffered()
	start, _ := wc.R.Peek(min(wc.R.Buffered(), 48))
	f.log.Warn("worker sent bytes past the end of its response; they were dropped and its connection closed",
		"worker", w.ID(), "pid", w.PID(), "after", after, "buffered", n, "start", strconv.Quote(string(start)))
	wc.Close()
	f.protocolError(ProtocolBytesAfterResponse)
}

func (f *Front) protocolError(reason string) {
	if fn := f.opts.Load().OnProtocolError; fn != nil {
		fn(reason)
	}
}

// getConn returns a connection to w: a pooled one that nothing arrived on while it was idle,
// or a fresh one (fresh skips the pool).
func (f *Front) getConn(ctx context.Context, lease Lease, fresh bool) (*Conn, error) {
	w, pool := lease.Worker(), lease.Conns()
	for {
		var c *Conn
		var err error
		if fresh {
			c, err = pool.Dial(ctx)
		} else {
			c, err = pool.Get(ctx)
		}
		if err != nil || !c.Reused {
			return c, err
		}
		switch c.Idle() {
		case IdleUsable:
			return c, nil
		case IdleUnread:
			c.R.Peek(1) // the peek saw a byte: read what is there, for the log line
			f.bytesAfterResponse(w, c, "an earlier request (the bytes came while the connection was idle)", 0)
		default:
			c.Close() // closed by the worker while idle: nothing was sent
			f.log.Debug("worker closed an idle connection; using another", "worker", w.ID())
		}
	}
}

// retryOnFreshConn is the rule, on both paths, for a request whose kept-alive connection broke
// before any answer: some workers (uWSGI's http-socket) close a connection after a response
// without saying "Connection: close", and the check before reuse can miss a close that is
// under way. An idempotent request is sent once more, to the same worker on a fresh
// connection, as http.Transport does; a request that may have reached the worker (which then
// died) never goes elsewhere.
func retryOnFreshConn(log *slog.Logger, w *worker.Worker, wc *Conn, try int, err error, method string) bool {
	if !wc.Reused || try != 1 || !brokenConn(err) || !idempotent(method) {
		return false
	}
	log.Debug("kept-alive connection broke before the worker answered; retrying on a fresh one", "worker", w.ID(), "error", err)
	return true
}
