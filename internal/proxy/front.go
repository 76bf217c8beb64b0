package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"warmpool/internal/config"
	"warmpool/internal/h1"
	"warmpool/internal/learn"
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
	// OnHung is told of a worker that let a request pass RequestTimeout while no Harakiri
	// above it waits longer (so it is taken out of rotation and replaced); nil: nobody is told.
	OnHung func(w *worker.Worker)
	// OnRefusing is told of a worker that refused a connection (nothing listens on its socket,
	// or the socket is gone: it died or is closing). It leaves rotation at once; nil: nobody is told.
	OnRefusing func(w *worker.Worker)
	// AllowedHosts, when not nil, rejects requests for other hosts with 400.
	AllowedHosts *config.Hosts
	// TrustedProxies are the peers whose forwarding headers pass to the worker as sent; from
	// others they are removed (forwarded.go).
	TrustedProxies []netip.Prefix
	// SendTimeout is how long a write of the response to the client may wait for the client
	// to read; past it, the connection is closed, so that a client that stops reading cannot
	// hold a worker. 0: no limit.
	SendTimeout time.Duration
	// MaxBufferedResponse bounds how much of a response waits for a slow client, so that the
	// worker is released when it has sent it (spill.go); past it, the worker waits for the
	// client. 0: no buffering.
	MaxBufferedResponse int64
	// ClientBodyTimeout bounds the wait for each read of a request body; past it, 408. 0: none.
	ClientBodyTimeout time.Duration
	// MaxBodySize is the largest request body accepted; past it, 413. 0: no limit.
	MaxBodySize int64
	// PassUnderscoreHeaders keeps request fields with '_' in the name; by default they are
	// removed (forwarded.go).
	PassUnderscoreHeaders bool
	// Unavailable says why no worker is ready, when none will be soon (warm-ups keep
	// failing): with no worker in rotation, a request is then answered 503 at once, with the
	// reason, instead of waiting in the queue. nil: requests always queue.
	Unavailable func() string
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
	wg   sync.WaitGroup // requests detached after a timeout, waiting for harakiri; tunnels

	watchdog watchdog // the time limits of both paths (watchdog.go)

	tunnels tunnelSet // upgraded connections, ended by Close
}

const maxAttempts = 3

// NewFront returns a front over bal. It has no goroutines of its own until it serves.
func NewFront(bal *Balancer, opts Options) *Front {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Front{bal: bal, log: opts.Logger}
	f.opts.Store(&opts)
	return f
}

// Start launches the watchdog that keeps the time limits of both paths.
func (f *Front) Start() {
	f.watchdog.stop = make(chan struct{})
	f.wg.Go(func() { f.watchdog.run(f.opts.Load) })
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
		serveNetHTTP(f, w, r, opts)
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
		Shard:  int(start.UnixNano() >> 10), // the microsecond: concurrent requests seldom share it
		Client: []byte(clientIP(r.RemoteAddr)), Host: []byte(r.Host), Query: []byte(r.URL.RawQuery), UserAgent: []byte(r.UserAgent()),
		RequestBytes: max(r.ContentLength, 0)}
	if span != nil && span.SpanContext().IsValid() {
		info.TraceID = span.SpanContext().TraceID().String()
	}
	sw := &statusWriter{ResponseWriter: w}
	serveNetHTTP(f, sw, r.WithContext(context.WithValue(ctx, requestInfoKey{}, info)), opts)
	info.Bytes, info.Duration = sw.bytes, time.Since(info.Start)
	if info.Status == 0 { // else set while serving: the client left (499)
		info.Status = sw.status
	}
	if info.Status == 0 {
		info.Status = http.StatusOK
	}
	if span != nil {
		endServerSpan(span, info)
	}
	if info.FirstRequests {
		info.Credentials = learn.CarriesCredentials(r.Header)
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

// clientIP is the address part of a RemoteAddr.
func clientIP(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	return remoteAddr
}

func protoVersion(r *http.Request) string {
	return strconv.Itoa(r.ProtoMajor) + "." + strconv.Itoa(r.ProtoMinor)
}

// hostAllowed applies proxy.allowed_hosts (on both paths), logging a refusal.
func hostAllowed(log *slog.Logger, opts *Options, host, path []byte) bool {
	if opts.AllowedHosts.Allowed(host) {
		return true
	}
	log.Warn("request for a host not in proxy.allowed_hosts", "host", string(host), "path", string(path))
	return false
}

// Close ends upgraded connections (WebSockets), and waits for them and for requests that were
// answered 504 but still occupy a worker.
func (f *Front) Close(ctx context.Context) error {
	if f.watchdog.stop != nil {
		f.watchdog.once.Do(func() { close(f.watchdog.stop) })
	}
	f.tunnels.closeAll()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// acquire leases a worker for one request (avoiding one that just refused a connection), and
// records the queue wait and the worker in info (may be nil) and on the request's span.
func (f *Front) acquire(ctx context.Context, avoid *worker.Worker, info *telemetry.Request, coldWindow int) (Lease, error) {
	if fn := f.opts.Load().Unavailable; fn != nil && f.bal.Len() == 0 {
		if why := fn(); why != "" {
			return Lease{}, &UnavailableError{Why: why}
		}
	}
	queued := time.Now()
	lease, err := f.bal.AcquireAvoiding(ctx, avoid)
	waited := time.Since(queued)
	if err != nil {
		if info != nil {
			info.QueueWait += waited
		}
		return lease, err
	}
	noteLease(ctx, lease, queued.Add(waited), waited, info, coldWindow)
	return lease, nil
}

// noteLease records the queue wait and the leased worker (leased at now) in info (may be nil)
// and on the request's span.
func noteLease(ctx context.Context, lease Lease, now time.Time, waited time.Duration, info *telemetry.Request, coldWindow int) {
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
// worker refused the connection, and no byte of the request reached any worker, or only an
// idempotent request's bytes reached one whose kept-alive connection broke before any answer
// and which then refused a fresh connection (it died: http.Transport retries such a request
// too).
func retryElsewhere(log *slog.Logger, err error, attempt int, sent bool, method string) bool {
	var dial *worker.DialError
	if err == nil || (sent && !idempotent(method)) || attempt >= maxAttempts || !errors.As(err, &dial) {
		return false
	}
	log.Debug("retrying on another worker", "worker", dial.WorkerID, "error", dial.Err)
	return true
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
	if errors.Is(err, errResponseTimeout) {
		f.reportHung(lease.Worker())
	}
	var dial *worker.DialError
	if errors.As(err, &dial) && (errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)) {
		f.reportRefusing(lease.Worker())
	}
	if isTimeout(err) || errors.Is(err, h1.ErrMalformedResponse) || errors.Is(err, context.Canceled) || chanClosed(lease.Gone()) {
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

// reportHung tells the pool of a worker that let a request pass the request timeout: stopped
// (SIGSTOP), deadlocked or stuck in a call, it would otherwise stay in rotation and take one
// request after another into the same wait.
func (f *Front) reportHung(w *worker.Worker) {
	opts := f.opts.Load()
	if opts.OnHung == nil {
		return
	}
	// Out of rotation now, not when the pool gets to it: no request may reach it after this.
	f.bal.Remove(w)
	f.log.Error("worker let a request pass the request timeout; it leaves rotation, a warm replacement follows, and it is stopped after graceful_timeout",
		"worker", w.ID(), "pid", w.PID(), "request_timeout", opts.RequestTimeout)
	opts.OnHung(w)
}

// reportRefusing takes a worker whose socket refused a connection out of rotation at once, so
// that no retry or queued request is handed to it again while the pool learns of its exit, and
// tells the pool (a worker that closed its socket and lives on is replaced too).
func (f *Front) reportRefusing(w *worker.Worker) {
	f.bal.Remove(w)
	if fn := f.opts.Load().OnRefusing; fn != nil {
		fn(w)
	}
}

func chanClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
