package proxy

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"warmpool/internal/h1"
	"warmpool/internal/learn"
	"warmpool/internal/telemetry"
	"warmpool/internal/worker"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// The lean path forwards a request parsed in place by h1: the outbound head is written from
// the client's bytes into a pooled worker connection, the worker's head is rebuilt into one
// buffer, and the body is relayed with its framing checked. No http.Request, no header maps,
// no goroutine besides the connection's own.

// Why a parsed request goes to net/http (besides h1's reasons).
const (
	whyLargeHead  = "head over 8 KiB"
	whyLargeBody  = "body over 64 KiB"
	whyUpgrade    = "upgrade"
	whyExpect     = "expect"
	whyConnection = "connection options"
)

// handoffReason says why the lean path leaves a parsed request to net/http, or "" if it takes it.
func handoffReason(r *h1.Request) string {
	switch {
	case r.Upgrade:
		return whyUpgrade
	case r.Expect:
		return whyExpect
	case r.ConnectionOther:
		return whyConnection
	case r.ContentLength > maxBufferedBody:
		return whyLargeBody
	}
	return ""
}

// serveRequest forwards c.req (with body, read whole) and writes the response. It reports
// whether the connection may serve another request.
func (c *clientConn) serveRequest(body []byte) bool {
	f := c.s.front
	opts := f.opts.Load()
	req := &c.req
	c.body, c.opts, c.keep = body, opts, !req.Close && !c.s.shutting.Load()
	obs := opts.Observer
	c.now = c.clock()
	start := c.now
	c.ctx = context.Background()
	var span trace.Span
	if opts.Tracer != nil {
		c.ctx, span = c.startSpan(opts.Tracer)
	}
	c.infoOrNil = nil
	if obs != nil || span != nil {
		c.infoOrNil = &c.info
		c.info = telemetry.Request{Method: methodString(req.Method), Path: string(req.Path()), Start: start, TraceID: traceIDOf(req), Shard: c.seq,
			Client: c.client, Host: req.Host, Query: req.Query(), UserAgent: fieldValue(req, "user-agent"), RequestBytes: int64(len(body))}
		if span != nil && span.SpanContext().IsValid() {
			c.info.TraceID = span.SpanContext().TraceID().String()
		}
	}
	var status int
	var bytes int64
	if opts.AllowedHosts != nil && !hostAllowed(f.log, opts, req.Host, req.Path()) {
		status = http.StatusBadRequest
		bytes, c.keep = c.writeError(status, "host "+strconv.Quote(string(req.Host))+" is not in proxy.allowed_hosts", c.keep)
	} else {
		var err error
		status, bytes, err = f.forward(c, opts)
		c.now = c.clock()
		if err != nil {
			status, bytes = c.failed(f, status, bytes, err)
		}
	}
	if info := c.infoOrNil; info != nil {
		info.Status, info.Bytes, info.Duration = status, bytes, c.now.Sub(start)
		if info.FirstRequests {
			info.Credentials = carriesCredentials(req)
		}
		if span != nil {
			endServerSpan(span, info)
		}
		if obs != nil {
			obs.ObserveRequest(info)
		}
	}
	err := c.bw.Flush()
	if serr := c.out.finishSpill(); err == nil {
		err = serr
	}
	return err == nil && c.keep // an error: the client went away
}

// failed ends a request whose exchange failed: before its response began, with an error page
// (or nothing, when the client went away: 499); after, by closing the connection, the only way
// left to tell the client. It returns the status and body bytes to record.
func (c *clientConn) failed(f *Front, status int, n int64, err error) (int, int64) {
	switch {
	case status != 0:
		c.keep = false
		return status, n
	case clientSide(err):
		c.keep = false
		f.log.Debug("client went away", "path", string(c.req.Path()), "error", err)
		return StatusClientClosedRequest, n
	}
	return c.writeFailure(f, err)
}

// startSpan starts the request's server span, continuing the client's W3C trace context.
func (c *clientConn) startSpan(tracer trace.Tracer) (context.Context, trace.Span) {
	req := &c.req
	ctx := telemetry.Propagator.Extract(context.Background(), requestCarrier{req})
	return tracer.Start(ctx, methodString(req.Method), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", methodString(req.Method)), attribute.String("url.path", string(req.Path())),
			attribute.String("server.address", string(req.Host)), attribute.String("network.protocol.version", "1.1")))
}

// requestCarrier reads a parsed request's fields for the trace propagator.
type requestCarrier struct{ r *h1.Request }

func (rc requestCarrier) Get(key string) string {
	key = strings.ToLower(key)
	for _, fl := range rc.r.Fields {
		if h1.EqualFold(fl.Name, key) {
			return string(fl.Value)
		}
	}
	return ""
}

func (rc requestCarrier) Set(string, string) {}

func (rc requestCarrier) Keys() []string {
	keys := make([]string, len(rc.r.Fields))
	for i, fl := range rc.r.Fields {
		keys[i] = string(fl.Name)
	}
	return keys
}

// The lean path's side of the exchange core (exchange.go): clientConn is its exchanger.

// acquire leases a worker at once, or waits in the queue while watching the client: a request
// whose client hung up while queued is dropped, not sent to a worker. c.now is the time it
// got the worker.
func (c *clientConn) acquire(avoid *worker.Worker) (Lease, error) {
	f := c.s.front
	c.requests++
	if lease, ok := f.bal.TryAcquire(avoid, c.seq+c.requests); ok {
		noteLease(c.ctx, lease, c.now, 0, c.infoOrNil, c.opts.ColdWindow)
		return lease, nil
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	stopWatching := c.watchHangup(cancel)
	lease, err := f.acquire(ctx, avoid, c.infoOrNil, c.opts.ColdWindow)
	stopWatching()
	c.now = c.clock()
	return lease, err
}

func (c *clientConn) writeRequest(bw *bufio.Writer) error {
	var traced context.Context
	if sc := trace.SpanContextFromContext(c.ctx); sc.IsValid() {
		traced = c.ctx
	}
	writeLeanOutbound(bw, &c.req, c.client, c.body, traced, outboundPolicy{
		trusted: trustedAddr(c.opts.TrustedProxies, c.addr), passUnderscored: c.opts.PassUnderscoreHeaders, traced: traced != nil})
	return nil
}

func (c *clientConn) method() string { return methodString(c.req.Method) }
func (c *clientConn) describe() string {
	return methodString(c.req.Method) + " " + string(c.req.Path())
}
func (c *clientConn) upgrade() string                { return "" } // upgrades go to net/http
func (c *clientConn) clientHTTP() (major, minor int) { return 1, 1 }
func (c *clientConn) awaiting() *headWait            { return &c.await }
func (c *clientConn) watchClient(wc *Conn)           { c.beginWatch(wc) }
func (c *clientConn) unwatchClient() bool            { return c.endWatch() }
func (c *clientConn) scratch() *response             { return &c.rsp }

func (c *clientConn) upstreamTook(d time.Duration) {
	if c.infoOrNil != nil {
		c.info.Upstream = d
	}
}

// interim passes an interim response on as it came.
func (c *clientConn) interim(_ int, head []byte) error {
	c.bw.Write(head)
	c.bw.WriteString("\r\n")
	if err := c.bw.Flush(); err != nil {
		return &h1.WriteError{Err: err}
	}
	return nil
}

// relay writes the response head (with a Date, and Connection: close when the connection
// ends) and copies the body with its framing checked; a body that runs until the worker
// closes is re-framed as chunked, so that the client keeps its connection. The last bytes stay
// buffered: serveRequest flushes them once the request is recorded, so that metrics, access log
// and span are complete when the client has the response.
func (c *clientConn) relay(rsp *response) (n int64, err error) {
	head := rsp.head
	if rsp.body == bodyUntilClose {
		head = append(head, "Transfer-Encoding: chunked\r\n"...)
	}
	if !rsp.HasDate {
		head = appendDate(head)
	}
	if !c.keep || c.s.shutting.Load() {
		head = append(head, "Connection: close\r\n"...)
	}
	head = append(head, '\r', '\n')
	rsp.head = head
	c.out.buffering = c.opts.MaxBufferedResponse > 0 // from here on, a slow client does not hold the worker
	if _, err := c.bw.Write(head); err != nil {
		return 0, &h1.WriteError{Err: err}
	}
	switch rsp.body {
	case bodyLength:
		return h1.CopyN(c.bw, rsp.wc.R, rsp.ContentLength)
	case bodyChunked:
		return h1.CopyChunked(c.bw, rsp.wc.R, trailerAllowed)
	case bodyUntilClose:
		return h1.CopyUntilEOF(c.bw, rsp.wc.R)
	}
	return 0, nil
}

func appendContentLength(dst []byte, n int64) []byte {
	dst = append(dst, "Content-Length: "...)
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}

// dateField caches the Date field for the current second.
type dateField struct {
	unix  int64
	field []byte
}

var currentDate atomic.Pointer[dateField]

func appendDate(dst []byte) []byte {
	now := time.Now()
	d := currentDate.Load()
	if d == nil || d.unix != now.Unix() {
		d = &dateField{unix: now.Unix(), field: []byte("Date: " + now.UTC().Format(http.TimeFormat) + "\r\n")}
		currentDate.Store(d)
	}
	return append(dst, d.field...)
}

// methodString returns the method as a string without allocating for the common ones.
func methodString(m []byte) string {
	switch string(m) {
	case "GET":
		return http.MethodGet
	case "POST":
		return http.MethodPost
	case "HEAD":
		return http.MethodHead
	case "PUT":
		return http.MethodPut
	case "DELETE":
		return http.MethodDelete
	case "PATCH":
		return http.MethodPatch
	case "OPTIONS":
		return http.MethodOptions
	}
	return string(m)
}

// fieldValue is the value of the first field named name (lower case), or nil.
func fieldValue(r *h1.Request, name string) []byte {
	for i := range r.Fields {
		if fl := &r.Fields[i]; len(fl.Name) == len(name) && h1.EqualFold(fl.Name, name) {
			return fl.Value
		}
	}
	return nil
}

// carriesCredentials reports whether r has a credential header (learn.IsCredentialHeader).
func carriesCredentials(r *h1.Request) bool {
	for i := range r.Fields {
		if learn.IsCredentialHeader(r.Fields[i].Name) {
			return true
		}
	}
	return false
}

// traceIDOf is the trace id of the client's W3C traceparent, for the access log ("" if none).
func traceIDOf(r *h1.Request) string {
	for _, fl := range r.Fields {
		if len(fl.Name) == 11 && h1.EqualFold(fl.Name, "traceparent") {
			v := fl.Value
			if len(v) == 55 && v[2] == '-' && v[35] == '-' && v[52] == '-' {
				return string(v[3:35])
			}
			return ""
		}
	}
	return ""
}

// writeFailure answers a request that got no response from a worker (503, 502, 504, or
// nothing when the client hung up) and returns what serveRequest records.
func (c *clientConn) writeFailure(f *Front, err error) (int, int64) {
	fl := failureOf(errors.Is(err, context.Canceled), err, f.bal.QueueTimeout())
	fl.report(f.log, methodString(c.req.Method), string(c.req.Path()))
	if fl.status == 0 {
		c.keep = false
		return StatusClientClosedRequest, 0
	}
	var n int64
	n, c.keep = c.writeError(fl.status, fl.text(), c.keep)
	return fl.status, n
}

// writeError writes errorPage on the lean path and returns its body's size, and whether the
// connection may go on (not when it said it closes, or the client is gone).
func (c *clientConn) writeError(status int, reason string, keep bool) (int64, bool) {
	body, retryAfter, closes := errorPage(status, reason)
	keep = keep && !closes
	h := append(c.rsp.head[:0], "HTTP/1.1 "...)
	h = strconv.AppendInt(h, int64(status), 10)
	h = append(h, ' ')
	h = append(h, http.StatusText(status)...)
	h = append(h, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
	h = appendContentLength(h, int64(len(body)))
	h = appendDate(h)
	if retryAfter {
		h = append(h, "Retry-After: 1\r\n"...)
	}
	if !keep {
		h = append(h, "Connection: close\r\n"...)
	}
	h = append(h, '\r', '\n')
	h = append(h, body...)
	c.rsp.head = h
	c.bw.Write(h)
	return int64(len(body)), c.bw.Flush() == nil && keep
}

// watchHangup calls hangup if the client closes its connection before stop is called. Only
// the queue waits long enough for this to matter, so only it pays for the goroutine.
func (c *clientConn) watchHangup(hangup func()) (stop func()) {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return func() {}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		gone := false
		rc.Read(func(fd uintptr) bool {
			var b [1]byte
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EAGAIN {
				return false // nothing yet: wait for the socket to become readable
			}
			gone = err != nil || n == 0 // an error or EOF; data (a pipelined request) means alive
			return true
		})
		if gone {
			hangup()
		}
	}()
	return func() {
		c.nc.SetReadDeadline(time.Unix(1, 0)) // ends the wait in rc.Read
		<-done
		c.nc.SetReadDeadline(c.deadline)
	}
}
