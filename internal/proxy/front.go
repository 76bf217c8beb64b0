package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"warmpool/internal/config"
	"warmpool/internal/h1"
	"warmpool/internal/telemetry"
	"warmpool/internal/worker"
)

// Options tune the Front. Zero values mean: no harakiri, nobody told of stuck workers.
type Options struct {
	// RequestTimeout is how long a worker may take to send response headers; past it, 504.
	RequestTimeout time.Duration
	// Harakiri, when above RequestTimeout, keeps the worker's slot after the 504 until it
	// answers or this hard limit passes; then OnStuck is called with the worker.
	Harakiri time.Duration
	// OnStuck is told of a worker that passed the Harakiri limit; nil means nobody is told.
	OnStuck func(w *worker.Worker)
	// AllowedHosts, when not empty, rejects requests for other hosts with 400.
	AllowedHosts []string
	// TrustedProxies are the peers whose forwarding headers pass to the worker as sent; from
	// others they are removed (forwarded.go).
	TrustedProxies []netip.Prefix
	// SendTimeout is how long a write of the response to the client may wait for the client
	// to read; past it, the connection is closed, so that a client that stops reading cannot
	// hold a worker. 0: no limit.
	SendTimeout time.Duration
	// PassUnderscoreHeaders keeps request fields with '_' in the name; by default they are
	// removed (forwarded.go).
	PassUnderscoreHeaders bool
	// OnProtocolError is told of each response a worker got wrong, by reason (reuse.go);
	// nil means nobody is. The front logs each one itself.
	OnProtocolError func(reason string)
	// Observer is told of every finished request; nil means nobody is.
	Observer Observer
	// OnHandoff is told why each connection left the lean path for net/http; nil: nobody.
	OnHandoff func(reason string)
	// ColdWindow is how many first requests of a worker count as its first requests.
	ColdWindow int
	// Tracer makes a server span per request, continuing the client's W3C trace context and
	// passing its own to the worker; nil means no tracing (traceparent passes through as is).
	Tracer trace.Tracer
	Logger *slog.Logger
}

// Observer records requests (metrics, access log, warm-up check).
type Observer interface {
	ObserveRequest(req *telemetry.Request)
}

type requestInfoKey struct{}

// Front forwards client requests to workers leased from a Balancer.
type Front struct {
	bal  *Balancer
	opts atomic.Pointer[Options]
	log  *slog.Logger
	rp   *httputil.ReverseProxy
	wg   sync.WaitGroup // requests detached after a timeout, waiting for harakiri
}

const maxAttempts = 3

// NewFront returns a front over bal. It has no goroutines of its own until it serves.
func NewFront(bal *Balancer, opts Options) *Front {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Front{bal: bal, log: opts.Logger}
	f.opts.Store(&opts)
	f.rp = &httputil.ReverseProxy{
		Rewrite:      f.rewrite,
		Transport:    forwarder{f},
		ErrorHandler: f.writeError,
		ErrorLog:     slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
		BufferPool:   newBufferPool(),
	}
	return f
}

// SetOptions replaces the options (on a config reload); requests in progress keep theirs.
func (f *Front) SetOptions(opts Options) {
	if opts.Logger == nil {
		opts.Logger = f.log
	}
	f.opts.Store(&opts)
}

func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	opts := f.opts.Load()
	obs := opts.Observer
	if obs == nil && opts.Tracer == nil {
		f.serve(w, r, opts)
		return
	}
	ctx := r.Context()
	var span trace.Span
	if opts.Tracer != nil {
		ctx = telemetry.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
		ctx, span = opts.Tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path),
				attribute.String("server.address", r.Host), attribute.String("network.protocol.version", protoVersion(r))))
	}
	start := time.Now()
	info := &telemetry.Request{Method: r.Method, Path: r.URL.Path, Start: start, TraceID: telemetry.TraceID(r.Header),
		Shard: int(start.UnixNano() >> 10)} // the microsecond: concurrent requests seldom share it
	if span != nil && span.SpanContext().IsValid() {
		info.TraceID = span.SpanContext().TraceID().String()
	}
	sw := &statusWriter{ResponseWriter: w}
	f.serve(sw, r.WithContext(context.WithValue(ctx, requestInfoKey{}, info)), opts)
	info.Status, info.Bytes, info.Duration = sw.status, sw.bytes, time.Since(info.Start)
	if info.Status == 0 {
		info.Status = http.StatusOK
	}
	if span != nil {
		endServerSpan(span, info)
	}
	if obs != nil {
		obs.ObserveRequest(info)
	}
}

func endServerSpan(span trace.Span, info *telemetry.Request) {
	span.SetAttributes(attribute.Int("http.response.status_code", info.Status))
	if info.WorkerID != 0 {
		span.SetAttributes(attribute.Int("warmpool.worker.id", info.WorkerID), attribute.Int("warmpool.worker.pid", info.PID),
			attribute.Int("warmpool.worker.generation", info.Generation), attribute.Int64("warmpool.worker.request_index", info.RequestIndex),
			attribute.Bool("warmpool.first_requests", info.FirstRequests), attribute.Float64("warmpool.worker.age_s", info.WorkerAge.Seconds()))
	}
	if info.Status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(info.Status))
	}
	span.End()
}

func protoVersion(r *http.Request) string {
	return strconv.Itoa(r.ProtoMajor) + "." + strconv.Itoa(r.ProtoMinor)
}

func (f *Front) serve(w http.ResponseWriter, r *http.Request, opts *Options) {
	if len(opts.AllowedHosts) > 0 && !config.HostAllowed(opts.AllowedHosts, r.Host) {
		f.log.Warn("request for a host not in proxy.allowed_hosts", "host", r.Host, "path", r.URL.Path)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "warmpool: host %q is not in proxy.allowed_hosts\n", r.Host)
		return
	}
	if opts.SendTimeout > 0 {
		dw := &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: opts.SendTimeout, log: f.log, r: r}
		defer dw.rc.SetWriteDeadline(time.Time{}) // the connection may serve more requests
		w = dw
	}
	if directEligible(r, opts) {
		f.serveDirect(w, r, opts)
		return
	}
	f.rp.ServeHTTP(w, r)
}

// Close waits for requests that were answered 504 but still occupy a worker.
func (f *Front) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rewrite builds the outbound request: the client's Host is kept, forwarding headers follow
// forwarded.go (the client's X-Forwarded-For chain is extended), no client can pose as a warm-up request, and
// with tracing on the worker gets warmpool's span as the parent of its own.
func (f *Front) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = "worker"
	pr.Out.Host = pr.In.Host
	// ReverseProxy has already removed Forwarded and X-Forwarded-For, -Host and -Proto from Out.
	opts := f.opts.Load()
	if trustedPeer(opts.TrustedProxies, pr.In.RemoteAddr) {
		for _, k := range []string{"Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v, ok := pr.In.Header[k]; ok {
				pr.Out.Header[k] = v
			}
		}
	} else {
		dropForwarding(pr.Out.Header)
	}
	if !opts.PassUnderscoreHeaders {
		dropUnderscored(pr.Out.Header)
	}
	pr.Out.Header.Set("X-Forwarded-For", forwardedFor(pr.In.Header["X-Forwarded-For"], pr.In.RemoteAddr))
	if pr.In.TLS != nil && pr.Out.Header.Get("X-Forwarded-Proto") == "" {
		pr.Out.Header.Set("X-Forwarded-Proto", "https")
	}
	pr.Out.Header.Del(worker.WarmupHeader)
	if sc := trace.SpanContextFromContext(pr.Out.Context()); sc.IsValid() {
		telemetry.Propagator.Inject(pr.Out.Context(), propagation.HeaderCarrier(pr.Out.Header))
	}
}

// forwarder is the ReverseProxy's transport: it leases a worker per request.
type forwarder struct{ f *Front }

func (fw forwarder) RoundTrip(req *http.Request) (*http.Response, error) {
	f := fw.f
	var avoid *worker.Worker
	var body *retryableBody
	if req.Body != nil && req.Body != http.NoBody {
		// The transport closes the body even when the dial fails; keep it for a retry.
		body = &retryableBody{ReadCloser: req.Body}
		out := *req
		out.Body = body
		req = &out
	}
	// The transport replays an idempotent request on a fresh connection when a reused one
	// breaks; if that replay then fails to connect, the request did reach the (now dead)
	// worker, and sending it elsewhere could crash the next worker too. So retry elsewhere
	// only when no byte of the request was ever written.
	var written atomic.Bool
	clientTrace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
		if info.Err == nil {
			written.Store(true)
		}
	}}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), clientTrace))
	info, _ := req.Context().Value(requestInfoKey{}).(*telemetry.Request)
	coldWindow := f.opts.Load().ColdWindow
	for attempt := 1; ; attempt++ {
		lease, err := f.acquire(req.Context(), avoid, info, coldWindow)
		if err != nil {
			return nil, err
		}
		resp, err := f.send(lease, req, info) // on error, send already returned the slot
		if f.retryElsewhere(req.Context(), err, attempt, body.consumed() || written.Load()) {
			avoid = lease.Worker()
			continue
		}
		var up *UpstreamError
		if errors.As(err, &up) {
			up.Sent = written.Load()
		}
		return resp, err
	}
}

// acquire leases a worker for one request (avoiding one that just refused a connection), and
// records the queue wait and the worker in info (may be nil) and on the request's span.
func (f *Front) acquire(ctx context.Context, avoid *worker.Worker, info *telemetry.Request, coldWindow int) (Lease, error) {
	queued := time.Now()
	lease, err := f.bal.AcquireAvoiding(ctx, avoid)
	waited := time.Since(queued)
	if err != nil {
		if info != nil {
			info.QueueWait += waited
		}
		return lease, err
	}
	f.noteLease(ctx, lease, queued.Add(waited), waited, info, coldWindow)
	return lease, nil
}

// noteLease records the queue wait and the leased worker (leased at now) in info (may be nil)
// and on the request's span.
func (f *Front) noteLease(ctx context.Context, lease Lease, now time.Time, waited time.Duration, info *telemetry.Request, coldWindow int) {
	w := lease.Worker()
	if info != nil {
		info.QueueWait += waited
		info.WorkerID, info.PID, info.Generation = w.ID(), w.PID(), w.Generation()
		info.RequestIndex = lease.Index
		info.WorkerAge = now.Sub(w.StartedAt())
		info.FirstRequests = lease.Index <= int64(coldWindow)
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("warmpool.queue_wait", trace.WithAttributes(
			attribute.Float64("warmpool.queue_wait_ms", float64(waited.Microseconds())/1000),
			attribute.Int("warmpool.worker.id", w.ID())))
	}
}

// retryElsewhere reports whether a failed request may go to another worker: only when the
// worker refused the connection and no byte of the request reached any worker.
func (f *Front) retryElsewhere(ctx context.Context, err error, attempt int, sent bool) bool {
	var dial *worker.DialError
	if err == nil || sent || attempt >= maxAttempts || ctx.Err() != nil || !errors.As(err, &dial) {
		return false
	}
	f.log.Debug("retrying on another worker", "worker", dial.WorkerID, "error", dial.Err)
	return true
}

// send forwards req to the leased worker; the lease is released when the response body is
// closed, or at once on error. info (may be nil) gets the upstream time.
func (f *Front) send(lease Lease, req *http.Request, info *telemetry.Request) (*http.Response, error) {
	opts := f.opts.Load()
	sent := time.Now()
	if opts.Harakiri > opts.RequestTimeout && opts.RequestTimeout > 0 {
		return f.sendWatched(lease, req, opts, info, sent)
	}
	w := lease.Worker()
	var resp *http.Response
	var err error
	if syncEligible(req) {
		resp, err = f.roundTripSync(w, req)
	} else {
		resp, err = w.Transport().RoundTrip(req)
	}
	if err != nil {
		if info != nil {
			info.Upstream = time.Since(sent)
		}
		f.releaseAfterFailure(lease, err)
		return nil, &UpstreamError{WorkerID: w.ID(), Err: err, Timeout: opts.RequestTimeout}
	}
	resp.Body = wrapBody(resp, func() {
		if info != nil {
			info.Upstream = time.Since(sent)
		}
		lease.Release()
	})
	return resp, nil
}

// failureHold is how long a slot stays taken after its request failed on a broken connection,
// when the worker does not exit meanwhile (a transient error on a live worker).
const failureHold = 2 * time.Second

// releaseAfterFailure returns the slot of a request that failed. A broken or refused connection
// usually means the worker just died: its slot stays taken until the pool has taken the worker
// out of rotation, or failureHold passes (a live worker), so that neither new nor queued
// requests are handed a dying worker.
func (f *Front) releaseAfterFailure(lease Lease, err error) {
	if errors.Is(err, h1.ErrMalformedResponse) {
		f.protocolError(ProtocolMalformedResponse)
	}
	if isTimeout(err) || errors.Is(err, h1.ErrMalformedResponse) || chanClosed(lease.Gone()) {
		lease.Release()
		return
	}
	f.wg.Go(func() {
		t := time.NewTimer(failureHold)
		defer t.Stop()
		select {
		case <-lease.Gone():
		case <-t.C:
		}
		lease.Release()
	})
}

func chanClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

type roundTripResult struct {
	resp *http.Response
	err  error
}

// sendWatched answers 504 at RequestTimeout but keeps the worker's slot, because the worker is
// still busy with the request, until it answers or the Harakiri limit (the transport's
// response-header timeout) passes and the worker is reported stuck.
func (f *Front) sendWatched(lease Lease, req *http.Request, opts *Options, info *telemetry.Request, sent time.Time) (*http.Response, error) {
	w := lease.Worker()
	upCtx, cancel := context.WithCancel(context.WithoutCancel(req.Context()))
	stopFollowing := context.AfterFunc(req.Context(), cancel)
	results := make(chan roundTripResult, 1)
	f.wg.Go(func() {
		resp, err := w.Transport().RoundTrip(req.WithContext(upCtx))
		results <- roundTripResult{resp, err}
	})
	timer := time.NewTimer(opts.RequestTimeout)
	select {
	case r := <-results:
		timer.Stop()
		stopFollowing()
		if r.err != nil {
			cancel()
			f.releaseAfterFailure(lease, r.err)
			return nil, &UpstreamError{WorkerID: w.ID(), Err: r.err, Timeout: opts.RequestTimeout}
		}
		r.resp.Body = wrapBody(r.resp, func() {
			if info != nil {
				info.Upstream = time.Since(sent)
			}
			cancel()
			lease.Release()
		})
		return r.resp, nil
	case <-timer.C:
		if info != nil {
			info.Upstream = time.Since(sent)
		}
	}
	stopFollowing()
	f.wg.Go(func() {
		r := <-results
		if r.err != nil && isTimeout(r.err) && opts.OnStuck != nil {
			f.log.Error("worker passed the harakiri limit; it will be killed and replaced",
				"worker", w.ID(), "pid", w.PID(), "harakiri", opts.Harakiri, "path", req.URL.Path)
			opts.OnStuck(w)
		}
		if r.resp != nil {
			r.resp.Body.Close()
		}
		cancel()
		lease.Release()
	})
	return nil, &UpstreamError{WorkerID: w.ID(), Err: errResponseTimeout, Timeout: opts.RequestTimeout}
}
