package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"warmpool/internal/h1"
	"warmpool/internal/worker"
)

// The exchange core: one request carried to a worker and its response back, the same on every
// front. The two paths are adapters (lean.go for requests the lean HTTP/1.1 parser took,
// fallback.go for net/http's: TLS, HTTP/2 and what the lean path handed off); each turns its
// request into an exchanger, and the core decides every policy once, in this order:
//
//   - acquire a worker, and retry on another when the first refused the connection before any
//     byte reached it (forward);
//   - a pooled connection, or a fresh one when a kept-alive one broke before any answer to an
//     idempotent request (exchange; reuse.go);
//   - the request written by outbound.go's rules, with its body read whole and its length
//     (framing.go);
//   - the response head awaited within the request timeout, interim responses passed on by
//     responserules.go, and the decision when no head came: the request timeout, harakiri, or
//     the client gone (awaitHead, noResponse);
//   - the response's framing rebuilt (frameResponse), relayed by the adapter to its client;
//   - the worker connection reused only when nothing is left past the response (settle), and
//     the worker's slot released, held for a dying worker, or left to the harakiri watch.
//
// Failures are mapped to answers by errors.go, once for both paths.

// exchanger is one path's side of an exchange: its request, and its client.
type exchanger interface {
	// acquire leases a worker other than avoid (nil: any), waiting in the queue while the
	// client is there.
	acquire(avoid *worker.Worker) (Lease, error)
	// writeRequest writes the request for the worker into bw: the head by outbound.go's rules,
	// then the body read whole, with its length.
	writeRequest(bw *bufio.Writer) error
	// method is the request's method; describe names the request for a log line (it may
	// allocate: it is called on rare paths only).
	method() string
	describe() string
	// upgrade is the protocol the request asks to switch to ("" for none).
	upgrade() string
	// clientHTTP is the client's HTTP version.
	clientHTTP() (major, minor int)
	// awaiting is the wait for the response head, which the watchdog keeps.
	awaiting() *headWait
	// watchClient starts watching for the client leaving, which cuts wc; unwatchClient stops
	// the watch and reports whether the client left.
	watchClient(wc *Conn)
	unwatchClient() (left bool)
	// scratch is where the response head is read (a path reuses it from one request to the
	// next when it can).
	scratch() *response
	// interim passes an interim response on to the client (its status line and fields).
	interim(status int, head []byte) error
	// relay sends the response to the client: rsp.head with its framing rebuilt, then the body
	// read from rsp.wc. It returns the body bytes sent; an error is the worker's (the body
	// ended early or is malformed) or the client's (*h1.WriteError).
	relay(rsp *response) (int64, error)
	// upstreamTook records how long the worker had the request: from the lease until its
	// response body ended, or the exchange failed.
	upstreamTook(d time.Duration)
	// clock is the path's time.Now (the lean path's reads one clock, not two).
	clock() time.Time
}

// response is a worker's response head as the core read it.
type response struct {
	h1.Response
	// head is the head for an HTTP/1.1 client: the status line, the fields less hop-by-hop
	// ones, and the framing (frameResponse); the final empty line is not in it.
	head []byte
	// body is how the worker frames the body: bodyNone, bodyLength, bodyChunked or
	// bodyUntilClose.
	body int
	wc   *Conn
	// readAhead counts bytes a relay read past the response through a reader of its own:
	// bytes the worker sent beyond it (reuse.go).
	readAhead int
}

const (
	bodyNone = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// errHeldForHarakiri is a response timeout whose worker slot stays taken until the worker
// answers or passes the harakiri limit.
var errHeldForHarakiri = fmt.Errorf("%w; the worker keeps its slot until it answers or reaches the harakiri limit", errResponseTimeout)

// errClientLeft: the client closed its connection while its request was with a worker.
var errClientLeft = fmt.Errorf("client went away: %w", context.Canceled)

// errHeldAfterClientLeft: the client left while the worker worked; with harakiri set, the
// worker keeps its slot until it answers or passes the hard limit.
var errHeldAfterClientLeft = fmt.Errorf("%w (%w)", errClientLeft, errHeldForHarakiri)

// errNotSent marks a failure to write the request to the worker.
var errNotSent = errors.New("request not sent")

type notSentError struct{ err error }

func (e *notSentError) Error() string   { return e.err.Error() }
func (e *notSentError) Unwrap() []error { return []error{e.err, errNotSent} }

// clientSide reports an error of the client's making: it went away, or stopped taking the
// response. The worker is fine.
func clientSide(err error) bool {
	var we *h1.WriteError
	return errors.As(err, &we) || errors.Is(err, errClientLeft)
}

// forward leases a worker, exchanges the request with it and relays the response, retrying on
// another worker when the first refused the connection before any byte reached it. status is
// 0 unless the response began to reach the client; an error with status 0 is wrapped in an
// *UpstreamError (or is the queue's), for failureOf.
func (f *Front) forward(x exchanger, opts *Options) (status int, n int64, err error) {
	var avoid *worker.Worker
	for attempt := 1; ; attempt++ {
		lease, err := x.acquire(avoid)
		if err != nil {
			return 0, 0, err
		}
		w := lease.Worker()
		status, n, reached, err := f.exchange(x, lease, opts)
		if err == nil || status != 0 {
			return status, n, err
		}
		if retryElsewhere(f.log, err, attempt, reached, x.method()) {
			avoid = w
			continue
		}
		return 0, 0, &UpstreamError{WorkerID: w.ID(), Err: err, Timeout: opts.RequestTimeout, Sent: reached}
	}
}

// exchange carries the request to the leased worker and its response back, and disposes of
// the lease. reached reports that the request reached the worker.
func (f *Front) exchange(x exchanger, lease Lease, opts *Options) (status int, n int64, reached bool, err error) {
	start := x.clock()
	defer func() { x.upstreamTook(x.clock().Sub(start)) }()
	for try := 1; ; try++ {
		var wc *Conn
		if wc, err = f.getConn(context.Background(), lease, try > 1); err != nil {
			break
		}
		var sent bool
		status, n, sent, err = f.exchangeOn(x, lease, wc, opts)
		reached = reached || sent
		if err == nil || status != 0 || !retryOnFreshConn(f.log, lease.Worker(), wc, try, err, x.method()) {
			break
		}
	}
	switch {
	case err == nil:
		lease.Release()
	case errors.Is(err, errHeldForHarakiri): // the harakiri watch releases the slot
	case clientSide(err):
		lease.Release()
	default:
		if status != 0 {
			f.log.Warn("worker response ended early", "worker", lease.Worker().ID(), "request", x.describe(), "error", err)
		}
		f.releaseAfterFailure(lease, err)
	}
	return status, n, reached, err
}

// exchangeOn is one attempt on one worker connection; it owns wc: pools it, closes it, or
// hands it with the slot to the harakiri watch. sent reports that the request was written.
func (f *Front) exchangeOn(x exchanger, lease Lease, wc *Conn, opts *Options) (status int, n int64, sent bool, err error) {
	if err := x.writeRequest(wc.W); err != nil {
		wc.Close()
		return 0, 0, false, &notSentError{err}
	}
	if err := wc.W.Flush(); err != nil {
		wc.Close()
		return 0, 0, false, &notSentError{err}
	}
	sentAt := x.clock()
	x.watchClient(wc) // through the body too: a worker streaming to a client that left learns it
	rsp := x.scratch()
	rsp.wc, rsp.readAhead = wc, 0
	if err := f.awaitHead(x, rsp, sentAt, opts); err != nil {
		return 0, 0, true, f.noResponse(lease, wc, err, x.unwatchClient(), sentAt, opts, x.describe)
	}
	if rsp.Status == http.StatusSwitchingProtocols && x.upgrade() == "" {
		x.unwatchClient()
		wc.Close()
		return 0, 0, true, fmt.Errorf("%w: 101 Switching Protocols to a request without Upgrade", h1.ErrMalformedResponse)
	}
	frameResponse(x.method(), rsp)
	n, err = x.relay(rsp)
	left := x.unwatchClient()
	if left && err == nil {
		err = errClientLeft
	}
	reusable := err == nil && !rsp.Close && rsp.body != bodyUntilClose && rsp.Status != http.StatusSwitchingProtocols
	f.settle(lease, wc, reusable, rsp.body == bodyNone, rsp.readAhead, x.describe)
	return rsp.Status, n, true, err
}

// awaitHead reads the worker's final response head into rsp within the request timeout (the
// watchdog cuts the wait), passing interim responses on as passInterim says.
func (f *Front) awaitHead(x exchanger, rsp *response, sentAt time.Time, opts *Options) error {
	hw := x.awaiting()
	if opts.RequestTimeout > 0 {
		hw.start(rsp.wc, sentAt.Add(opts.RequestTimeout))
	}
	major, minor := x.clientHTTP()
	for {
		var err error
		rsp.head, err = h1.ReadResponse(rsp.wc.R, &rsp.Response, rsp.head[:0])
		if err == nil && rsp.Status < 200 && rsp.Status != http.StatusSwitchingProtocols {
			if !passInterim(rsp.Status, major, minor) {
				continue
			}
			if err = x.interim(rsp.Status, rsp.head); err == nil {
				continue
			}
		}
		if opts.RequestTimeout > 0 && !hw.stop() {
			return errResponseTimeout // the watchdog cut the wait, whatever the read returned
		}
		return err
	}
}

// noResponse decides the fate of a worker connection that gave no response head, and returns
// the error to report: past the request timeout, or with the client gone, a worker with
// harakiri above the timeout keeps the request, and its slot, until it answers or passes the
// hard limit; otherwise the connection is closed.
func (f *Front) noResponse(lease Lease, wc *Conn, err error, left bool, sentAt time.Time, opts *Options, describe func() string) error {
	if clientSide(err) {
		wc.Close()
		return err
	}
	cut := left || errors.Is(err, errResponseTimeout) || isTimeout(err)
	if cut && opts.Harakiri > opts.RequestTimeout {
		request := describe()
		f.wg.Go(func() { f.watchHarakiri(lease, wc, sentAt.Add(opts.Harakiri), opts, request) })
		if left {
			return errHeldAfterClientLeft
		}
		return errHeldForHarakiri
	}
	wc.Close()
	switch {
	case left:
		return errClientLeft
	case cut:
		return errResponseTimeout
	}
	return err
}

// watchHarakiri waits for the answer of a worker whose client already got a 504 (or left),
// until the harakiri deadline; past it, the worker is reported stuck (killed and replaced).
func (f *Front) watchHarakiri(lease Lease, wc *Conn, deadline time.Time, opts *Options, request string) {
	defer lease.Release()
	defer wc.Close()
	w := lease.Worker()
	wc.SetReadDeadline(deadline)
	var resp h1.Response
	_, err := h1.ReadResponse(wc.R, &resp, nil)
	if err != nil && isTimeout(err) && opts.OnStuck != nil {
		f.log.Error("worker passed the harakiri limit; it will be killed and replaced",
			"worker", w.ID(), "pid", w.PID(), "harakiri", opts.Harakiri, "request", request)
		opts.OnStuck(w)
	}
}

// frameResponse decides how the worker frames the response's body and writes that framing
// into rsp.head, for every path: a response that may not have a body has none (its
// Content-Length passed on, but for a 204); chunked stays chunked and a Content-Length stays;
// without either the body runs until the worker closes, which each path re-frames for its
// client.
func frameResponse(method string, rsp *response) {
	switch {
	case h1.NoBody(method, rsp.Status):
		rsp.body = bodyNone
		if rsp.ContentLength >= 0 && rsp.Status != http.StatusNoContent {
			rsp.head = appendContentLength(rsp.head, rsp.ContentLength)
		}
	case rsp.Chunked:
		rsp.body = bodyChunked
		rsp.head = append(rsp.head, "Transfer-Encoding: chunked\r\n"...)
	case rsp.ContentLength >= 0:
		rsp.body = bodyLength
		rsp.head = appendContentLength(rsp.head, rsp.ContentLength)
	default:
		rsp.body = bodyUntilClose
	}
}
