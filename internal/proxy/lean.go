package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"warmpool/internal/h1"
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

// serveLean forwards c.req (with body, read whole) and writes the response. It reports whether
// the connection may serve another request.
func (f *Front) serveLean(c *clientConn, body []byte) bool {
	opts := f.opts.Load()
	req := &c.req
	keep := !req.Close && !c.s.shutting.Load()
	obs := opts.Observer
	c.now = c.clock()
	start := c.now
	c.ctx = context.Background()
	var span trace.Span
	if opts.Tracer != nil {
		c.ctx, span = f.startLeanSpan(c, opts.Tracer)
	}
	var info *telemetry.Request
	if obs != nil || span != nil {
		info = &c.info
		*info = telemetry.Request{Method: methodString(req.Method), Path: string(req.Path()), Start: start, TraceID: traceIDOf(req), Shard: c.seq,
			Client: c.client, Host: req.Host, Query: req.Query(), UserAgent: fieldValue(req, "user-agent"), RequestBytes: int64(len(body))}
		if span != nil && span.SpanContext().IsValid() {
			info.TraceID = span.SpanContext().TraceID().String()
		}
	}
	var status int
	var bytes int64
	if opts.AllowedHosts != nil && !f.hostAllowed(opts, req.Host, req.Path()) {
		var ok bool
		status = http.StatusBadRequest
		bytes, ok = c.writeError(status, "host "+strconv.Quote(string(req.Host))+" is not in proxy.allowed_hosts", keep)
		keep = keep && ok
	} else {
		status, bytes, keep = f.forwardLean(c, body, opts, info, keep)
	}
	if info != nil {
		info.Status, info.Bytes, info.Duration = status, bytes, c.now.Sub(start)
	}
	if span != nil {
		endServerSpan(span, info)
	}
	if obs != nil {
		obs.ObserveRequest(info)
	}
	err := c.bw.Flush()
	if serr := c.out.finishSpill(); err == nil {
		err = serr
	}
	if err != nil {
		return false // the client went away
	}
	return keep
}

// startLeanSpan starts the request's server span, continuing the client's W3C trace context.
func (f *Front) startLeanSpan(c *clientConn, tracer trace.Tracer) (context.Context, trace.Span) {
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

// forwardLean leases a worker, exchanges the request with it and relays the response, retrying
// on another worker as the net/http path does. It returns the status recorded, the body bytes
// sent to the client, and whether the client connection may go on.
func (f *Front) forwardLean(c *clientConn, body []byte, opts *Options, info *telemetry.Request, keep bool) (int, int64, bool) {
	var avoid *worker.Worker
	for attempt := 1; ; attempt++ {
		lease, err := f.acquireLean(c, avoid, info, opts.ColdWindow)
		if err != nil {
			return c.writeFailure(f, err, keep)
		}
		w := lease.Worker()
		sent := c.now
		status, n, reached, err := f.exchangeLean(c, lease, body, opts, keep)
		c.now = c.clock()
		if info != nil {
			info.Upstream = c.now.Sub(sent)
		}
		if err == nil {
			lease.Release()
			return status, n, keep
		}
		if errors.Is(err, errHeldForHarakiri) { // the slot is released by the harakiri watch
			return c.writeFailure(f, &UpstreamError{WorkerID: w.ID(), Err: err, Timeout: opts.RequestTimeout, Sent: true}, keep)
		}
		var we *h1.WriteError
		if errors.As(err, &we) || errors.Is(err, errClientLeft) {
			lease.Release() // the client went away; the worker is fine
			f.log.Debug("client went away", "path", string(c.req.Path()), "error", err)
			if status == 0 {
				status = StatusClientClosedRequest
			}
			return status, n, false
		}
		f.releaseAfterFailure(lease, err)
		if status != 0 {
			// The response had begun: the client can only be told by closing the connection.
			f.log.Warn("worker response ended early", "worker", w.ID(), "path", string(c.req.Path()), "error", err)
			return status, n, false
		}
		if f.retryElsewhere(context.Background(), err, attempt, reached) {
			avoid = w
			continue
		}
		return c.writeFailure(f, &UpstreamError{WorkerID: w.ID(), Err: err, Timeout: opts.RequestTimeout, Sent: reached}, keep)
	}
}

// acquireLean leases a worker at once, or waits in the queue while watching the client: a
// request whose client hung up while queued is dropped, not sent to a worker. c.now is the
// time it got the worker.
func (f *Front) acquireLean(c *clientConn, avoid *worker.Worker, info *telemetry.Request, coldWindow int) (Lease, error) {
	c.requests++
	if lease, ok := f.bal.TryAcquire(avoid, c.seq+c.requests); ok {
		f.noteLease(c.ctx, lease, c.now, 0, info, coldWindow)
		return lease, nil
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	stopWatching := c.watchHangup(cancel)
	lease, err := f.acquire(ctx, avoid, info, coldWindow)
	stopWatching()
	c.now = c.clock()
	return lease, err
}

// exchangeLean sends c.req to w and relays the response to the client. status is 0 until the
// response head went to the client; reached reports that the request reached the worker.
func (f *Front) exchangeLean(c *clientConn, lease Lease, body []byte, opts *Options, keep bool) (status int, n int64, reached bool, err error) {
	w := lease.Worker()
	for attempt := 1; ; attempt++ {
		var wc *Conn
		wc, err = f.getConn(context.Background(), lease, attempt > 1)
		if err != nil {
			return 0, 0, reached, err
		}
		status, n, err = f.exchangeOnConn(c, lease, wc, body, opts, keep)
		reached = reached || err == nil || status != 0 || !errors.Is(err, errNotSent)
		if err == nil {
			return status, n, true, nil
		}
		if status == 0 && f.retryOnFreshConn(w, wc, attempt, err, methodString(c.req.Method)) {
			continue
		}
		return status, n, reached, err
	}
}

// errHeldForHarakiri is a response timeout whose worker slot stays taken until the worker
// answers or passes the harakiri limit.
var errHeldForHarakiri = fmt.Errorf("%w; the worker keeps its slot until it answers or reaches the harakiri limit", errResponseTimeout)

// errClientLeft: the client closed its connection while its request was with a worker.
var errClientLeft = fmt.Errorf("client went away: %w", context.Canceled)

// errHeldAfterClientLeft: the client left while the worker worked; with harakiri set, the
// worker keeps its slot until it answers or passes the hard limit.
var errHeldAfterClientLeft = fmt.Errorf("%w (%w)", errClientLeft, errHeldForHarakiri)

// watchHarakiri waits for the answer of a worker whose client already got a 504, until the
// harakiri deadline; past it, the worker is reported stuck (killed and replaced).
func (f *Front) watchHarakiri(lease Lease, wc *Conn, deadline time.Time, opts *Options, path string) {
	defer lease.Release()
	defer wc.Close()
	w := lease.Worker()
	wc.SetReadDeadline(deadline)
	var resp h1.Response
	_, err := h1.ReadResponse(wc.R, &resp, nil)
	if err != nil && isTimeout(err) && opts.OnStuck != nil {
		f.log.Error("worker passed the harakiri limit; it will be killed and replaced",
			"worker", w.ID(), "pid", w.PID(), "harakiri", opts.Harakiri, "path", path)
		opts.OnStuck(w)
	}
}

// errNotSent marks a failure to write the request to the worker.
var errNotSent = errors.New("request not sent")

type notSentError struct{ err error }

func (e *notSentError) Error() string   { return e.err.Error() }
func (e *notSentError) Unwrap() []error { return []error{e.err, errNotSent} }

// exchangeOnConn is one attempt on one worker connection; it owns wc (pools or closes it, or
// hands it with the slot to the harakiri watch).
func (f *Front) exchangeOnConn(c *clientConn, lease Lease, wc *Conn, body []byte, opts *Options, keep bool) (status int, n int64, err error) {
	req := &c.req
	var traced context.Context
	if sc := trace.SpanContextFromContext(c.ctx); sc.IsValid() {
		traced = c.ctx
	}
	writeLeanOutbound(wc.W, req, c.client, body, traced, outboundPolicy{
		trusted: trustedAddr(opts.TrustedProxies, c.addr), passUnderscored: opts.PassUnderscoreHeaders})
	if err := wc.W.Flush(); err != nil {
		wc.Close()
		return 0, 0, &notSentError{err}
	}
	c.beginWatch(wc)
	status, n, fate, err := f.relayLean(c, wc, opts, keep)
	left := c.endWatch()
	// The last bytes stay buffered: serveLean flushes them once the request is recorded, so
	// that metrics, access log and span are complete when the client has the response.
	switch {
	case status == 0 && (errors.Is(err, errResponseTimeout) || left):
		// No head came: the request timeout passed, or the client left meanwhile.
		if opts.Harakiri > opts.RequestTimeout {
			// The worker keeps the request, and its slot, until it answers or passes the hard
			// limit; a client still there gets its 504 now.
			sent, path := c.now, string(req.Path())
			f.wg.Go(func() { f.watchHarakiri(lease, wc, sent.Add(opts.Harakiri), opts, path) })
			if left {
				return 0, 0, errHeldAfterClientLeft
			}
			return 0, 0, errHeldForHarakiri
		}
		wc.Close()
		if left {
			return 0, 0, errClientLeft
		}
		return 0, 0, errResponseTimeout
	case left:
		wc.Close() // the worker learns that its client is gone
		return status, n, errClientLeft
	}
	f.settle(lease, wc, err == nil && fate != fateClose, fate == fateBodyless, 0,
		func() string { return methodString(req.Method) + " " + string(req.Path()) })
	return status, n, err
}

// What becomes of a worker connection after its response.
const (
	fateReuse    = iota
	fateClose    // the response ended with the connection, or said so
	fateBodyless // a response that may have no body (reuse.go)
)

// relayLean reads the response head from wc, within the request timeout kept by the watchdog,
// and relays the response to the client. status is 0 until the head went to the client. It
// leaves wc to its caller.
func (f *Front) relayLean(c *clientConn, wc *Conn, opts *Options, keep bool) (status int, n int64, fate int, err error) {
	req := &c.req
	// The response-header timeout is kept by the server's watchdog (no timer per request).
	timeout := opts.RequestTimeout
	if timeout > 0 {
		c.awaiting.start(wc, c.now.Add(timeout))
	}
	resp := &c.resp
	for {
		c.head, err = h1.ReadResponse(wc.R, resp, c.head[:0])
		if timeout > 0 && (err != nil || resp.Status >= 200) && !c.awaiting.stop() {
			return 0, 0, fateClose, errResponseTimeout // the watchdog cut the wait, whatever the read returned
		}
		if err != nil {
			if isTimeout(err) && !c.clientLeft() {
				err = errResponseTimeout
			}
			return 0, 0, fateClose, err
		}
		if resp.Status >= 200 {
			break
		}
		if resp.Status == http.StatusSwitchingProtocols {
			return 0, 0, fateClose, fmt.Errorf("%w: 101 Switching Protocols to a request without Upgrade", h1.ErrMalformedResponse)
		}
		if !passInterim(resp.Status, 1, 1) {
			continue
		}
		c.bw.Write(append(c.head, '\r', '\n')) // 103 Early Hints and the like: as it came
		if err := c.bw.Flush(); err != nil {
			return 0, 0, fateClose, &h1.WriteError{Err: err}
		}
	}
	status = resp.Status
	mode := bodyNone
	head := c.head
	switch {
	case h1.NoBody(req.Method, status):
		if resp.ContentLength >= 0 && status != http.StatusNoContent {
			head = appendContentLength(head, resp.ContentLength)
		}
	case resp.Chunked:
		mode = bodyChunked
		head = append(head, "Transfer-Encoding: chunked\r\n"...)
	case resp.ContentLength >= 0:
		mode = bodyLength
		head = appendContentLength(head, resp.ContentLength)
	default:
		mode = bodyUntilClose // re-framed as chunked for the client
		head = append(head, "Transfer-Encoding: chunked\r\n"...)
	}
	if !resp.HasDate {
		head = appendDate(head)
	}
	if !keep || c.s.shutting.Load() {
		head = append(head, "Connection: close\r\n"...)
	}
	head = append(head, '\r', '\n')
	c.head = head
	c.out.buffering = opts.MaxBufferedResponse > 0 // from here on, a slow client does not hold the worker
	if _, err := c.bw.Write(head); err != nil {
		return status, 0, fateClose, &h1.WriteError{Err: err}
	}
	switch mode {
	case bodyLength:
		n, err = h1.CopyN(c.bw, wc.R, resp.ContentLength)
	case bodyChunked:
		n, err = h1.CopyChunked(c.bw, wc.R, trailerAllowed)
	case bodyUntilClose:
		n, err = h1.CopyUntilEOF(c.bw, wc.R)
	}
	switch {
	case mode == bodyUntilClose || resp.Close:
		fate = fateClose
	case mode == bodyNone:
		fate = fateBodyless
	}
	return status, n, fate, err
}

const (
	bodyNone = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// writeLeanOutbound writes the request for the worker: the client's fields less hop-by-hop
// ones and warmpool's own, forwarding headers only from a trusted peer, X-Forwarded-For
// extended (forwarded.go). With a traced context, warmpool's span replaces the client's trace
// context as the worker's parent.
func writeLeanOutbound(bw *bufio.Writer, r *h1.Request, client, body []byte, traced context.Context, policy outboundPolicy) {
	bw.Write(r.Method)
	bw.WriteByte(' ')
	bw.Write(r.Target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.Write(r.Host)
	bw.WriteString("\r\n")
	priorXFF := false
	// Kept fields go out as the client sent them, each run of consecutive ones in one copy.
	var run []byte
	for i := range r.Fields {
		fl := &r.Fields[i]
		rule := outboundRule(fl)
		if fl.Underscore && !policy.passUnderscored {
			rule = fieldDrop
		}
		if rule == fieldKeep || rule == fieldTrace && traced == nil || rule == fieldForwarding && policy.trusted {
			if run == nil {
				run = fl.Line
			} else {
				run = run[:len(run)+len(fl.Line)] // the next line follows in the same buffer
			}
			continue
		}
		bw.Write(run)
		run = nil
		switch rule {
		case fieldTE:
			if h1.HasToken(fl.Value, "trailers") {
				bw.WriteString("Te: trailers\r\n") // gRPC needs it; the only TE value passed on
			}
		case fieldXFF:
			priorXFF = true
		}
	}
	bw.Write(run)
	if traced != nil {
		telemetry.Propagator.Inject(traced, headerWriter{bw})
	}
	bw.WriteString("X-Forwarded-For: ")
	if priorXFF {
		for i := range r.Fields {
			if fl := &r.Fields[i]; outboundRule(fl) == fieldXFF {
				bw.Write(fl.Value)
				bw.WriteString(", ")
			}
		}
	}
	bw.Write(client)
	bw.WriteString("\r\n\r\n") // cleartext: no X-Forwarded-Proto, and Host is the client's
	bw.Write(body)
}

// outboundPolicy is what the options and the peer decide for a request's fields.
type outboundPolicy struct {
	trusted         bool // the peer is in TrustedProxies: its forwarding headers pass
	passUnderscored bool // fields with '_' in the name pass
}

const (
	fieldKeep = iota
	fieldDrop
	fieldTE
	fieldXFF
	fieldTrace      // traceparent and tracestate: replaced when warmpool traces
	fieldForwarding // forwarded.go's headers: kept from a trusted peer only
)

// outboundRule says what happens to a client's field on its way to the worker.
func outboundRule(fl *h1.Field) int {
	switch fl.Known {
	case h1.NameTE:
		return fieldTE
	case h1.NameHost: // written first
		return fieldDrop
	case h1.NameTrailer, h1.NameUpgrade, h1.NameConnection, h1.NameKeepAlive, h1.NameProxyConnection,
		h1.NameTransferEncoding, h1.NameProxyAuthenticate, h1.NameProxyAuthorization: // hop-by-hop
		return fieldDrop
	case h1.NameOther:
		return ownRule(fl.Name)
	}
	return fieldKeep
}

// ownRule is outboundRule for the fields warmpool itself sets or replaces.
func ownRule(name []byte) int {
	switch len(name) {
	case 10:
		if h1.EqualFold(name, "tracestate") {
			return fieldTrace
		}
	case 11:
		if h1.EqualFold(name, "traceparent") {
			return fieldTrace
		}
	case 15:
		if h1.EqualFold(name, "x-forwarded-for") {
			return fieldXFF
		}
	case 17:
		if h1.EqualFold(name, warmupHeaderLower) {
			return fieldDrop
		}
	}
	if isForwardingHeader(name) {
		return fieldForwarding
	}
	return fieldKeep
}

var warmupHeaderLower = strings.ToLower(worker.WarmupHeader)

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
// nothing when the client hung up) and returns what serveLean reports.
func (c *clientConn) writeFailure(f *Front, err error, keep bool) (int, int64, bool) {
	fl := failureOf(errors.Is(err, context.Canceled), err, f.bal.QueueTimeout())
	f.report(&fl, methodString(c.req.Method), string(c.req.Path()))
	if fl.status == 0 {
		return StatusClientClosedRequest, 0, false
	}
	n, keep := c.writeError(fl.status, fl.text(), keep)
	return fl.status, n, keep
}

// writeError writes errorPage on the lean path and returns its body's size, and whether the
// connection may go on (not when it said it closes, or the client is gone).
func (c *clientConn) writeError(status int, reason string, keep bool) (int64, bool) {
	body, retryAfter, closes := errorPage(status, reason)
	keep = keep && !closes
	h := append(c.head[:0], "HTTP/1.1 "...)
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
	c.head = h
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
