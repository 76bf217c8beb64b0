package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"warmpool/internal/h1"
	"warmpool/internal/telemetry"
	"warmpool/internal/worker"
)

// The net/http fallback serves what the lean path hands off (HTTP/1.0, chunked or large
// uploads, "Expect: 100-continue", upgrades, large heads) and everything over TLS and HTTP/2.
// It is one way for every request, with the lean path's policies: the body is read whole
// before a worker is leased (spool.go), the request is written on a pooled worker connection
// (outbound.go), the response head is awaited within the request timeout, with harakiri
// keeping the slot of a worker that overran it or whose client left, and the connection is
// reused only when nothing is left past the response (reuse.go).

// StatusClientClosedRequest is recorded for a request whose client went away before its
// response (nginx's 499): the client's doing, not a failure of warmpool or the worker.
const StatusClientClosedRequest = 499

// serve forwards one request from net/http.
func (f *Front) serve(rw http.ResponseWriter, r *http.Request, opts *Options) {
	switch r.Method {
	case http.MethodConnect:
		f.refuse(rw, r, http.StatusMethodNotAllowed, "CONNECT is not served: warmpool is no forward proxy")
		return
	case "PRI": // the HTTP/2 preface on a cleartext HTTP/1.1 connection
		f.refuse(rw, r, http.StatusHTTPVersionNotSupported, "HTTP/2 is served over TLS only")
		return
	}
	if !f.hostAllowed(opts, []byte(r.Host), []byte(r.URL.Path)) {
		f.refuse(rw, r, http.StatusBadRequest, fmt.Sprintf("host %q is not in proxy.allowed_hosts", r.Host))
		return
	}
	if opts.SendTimeout > 0 {
		dw := &deadlineWriter{ResponseWriter: rw, rc: http.NewResponseController(rw), timeout: opts.SendTimeout, log: f.log, r: r}
		defer dw.rc.SetWriteDeadline(time.Time{}) // the connection may serve more requests
		rw = dw
	}
	fr, bad := netHTTPFraming(r)
	if bad == nil && fr.length >= 0 {
		bad = bodyTooLarge(opts, fr.length)
	}
	if bad != nil {
		f.refuse(rw, r, bad.status, bad.reason)
		return
	}
	upgrade := upgradeOf(r)
	var body *spooledBody
	if upgrade == "" {
		var ok bool
		if body, ok = f.readBody(rw, r, fr, opts); !ok {
			return
		}
		defer body.Close()
		if info, _ := r.Context().Value(requestInfoKey{}).(*telemetry.Request); info != nil {
			info.RequestBytes = body.Len()
		}
	}
	f.forward(rw, r, body, upgrade, opts)
}

// refuse answers a request warmpool itself turns down, with the reason in plain text.
func (f *Front) refuse(rw http.ResponseWriter, r *http.Request, status int, reason string) {
	f.log.Warn("request refused", "status", status, "method", r.Method, "path", r.URL.Path, "client", r.RemoteAddr, "reason", reason)
	if r.ProtoMajor == 1 {
		// The body may be unread: without this, net/http would first read on (up to 256 KiB)
		// from a client that may never send it.
		rw.Header().Set("Connection", "close")
	}
	writePlainError(rw, status, reason)
}

// clientGone records that the request's client went away (nil info: nothing records).
func clientGone(r *http.Request) {
	if info, _ := r.Context().Value(requestInfoKey{}).(*telemetry.Request); info != nil {
		info.Status = StatusClientClosedRequest
	}
}

// upgradeOf is the protocol an HTTP/1.1 request asks to switch to ("" for none).
func upgradeOf(r *http.Request) string {
	if r.ProtoMajor != 1 || r.ProtoMinor != 1 || !hasToken(r.Header["Connection"], "upgrade") {
		return ""
	}
	return r.Header.Get("Upgrade")
}

// upstream is a response head received from a worker, with what its body is read through.
type upstream struct {
	lease Lease
	wc    *Conn
	resp  *http.Response
	// stopWatch ends the watch on the client that cuts the worker's connection if the client
	// leaves; false when the watch already cut it.
	stopWatch func() bool
	bodyless  bool // a response that may have no body: its connection is not reused (reuse.go)
	// br reads the response again, from its rebuilt head on: what it read ahead of the body's
	// end is what the worker sent past the response.
	br      *bufio.Reader
	head101 []byte // a 101's head for the client, whole
}

// forward leases a worker, exchanges the request with it and relays the response, retrying on
// another worker when the first refused the connection.
func (f *Front) forward(rw http.ResponseWriter, r *http.Request, body *spooledBody, upgrade string, opts *Options) {
	ctx := r.Context()
	info, _ := ctx.Value(requestInfoKey{}).(*telemetry.Request)
	span := trace.SpanFromContext(ctx)
	var avoid *worker.Worker
	for attempt := 1; ; attempt++ {
		lease, err := f.acquire(ctx, avoid, info, opts.ColdWindow)
		if err != nil {
			f.writeError(rw, r, err)
			return
		}
		w := lease.Worker()
		sent := time.Now()
		up, reached, err := f.exchange(ctx, lease, r, body, upgrade, span, opts, rw)
		if err != nil {
			if info != nil {
				info.Upstream = time.Since(sent)
			}
			if !errors.Is(err, errHeldForHarakiri) { // else the harakiri watch releases the slot
				f.releaseAfterFailure(lease, err)
				if f.retryElsewhere(ctx, err, attempt, reached) {
					avoid = w
					continue
				}
			}
			f.writeError(rw, r, &UpstreamError{WorkerID: w.ID(), Err: err, Timeout: opts.RequestTimeout, Sent: reached})
			return
		}
		var once sync.Once
		done := func(whole bool) { // the worker is done with the request: the response is read
			once.Do(func() {
				f.finish(up, whole, r)
				if info != nil {
					info.Upstream = time.Since(sent)
				}
				lease.Release()
			})
		}
		defer done(false) // also when the relay aborts the response
		if up.resp.StatusCode == http.StatusSwitchingProtocols {
			f.tunnel(rw, r, up)
			return
		}
		whole := f.relay(rw, r, up, opts, done)
		done(whole)
		if !whole && ctx.Err() == nil {
			panic(http.ErrAbortHandler) // the worker's body ended early: the client must see it cut off
		}
		return
	}
}

// exchange sends the request to the leased worker and reads the response head. A kept-alive
// connection that turns out broken before any answer is replaced once for an idempotent
// request, as http.Transport does. reached reports that the request reached the worker.
func (f *Front) exchange(ctx context.Context, lease Lease, r *http.Request, body *spooledBody, upgrade string, span trace.Span, opts *Options, rw http.ResponseWriter) (up *upstream, reached bool, err error) {
	w := lease.Worker()
	for try := 1; ; try++ {
		wc, err := f.getConn(ctx, lease, try > 1)
		if err != nil {
			return nil, reached, err
		}
		up, sent, err := f.exchangeOn(ctx, lease, wc, r, body, upgrade, span, opts, rw)
		reached = reached || sent
		if err == nil || errors.Is(err, errHeldForHarakiri) {
			return up, true, err
		}
		if ctx.Err() == nil && f.retryOnFreshConn(w, wc, try, err, r.Method) {
			continue
		}
		return nil, reached, err
	}
}

// exchangeOn is one attempt on one connection; on error it has closed wc (or handed it, with
// the slot, to the harakiri watch). sent reports that the request was written. Interim
// responses that go on to the client are written to rw as they come.
func (f *Front) exchangeOn(ctx context.Context, lease Lease, wc *Conn, r *http.Request, body *spooledBody, upgrade string, span trace.Span, opts *Options, rw http.ResponseWriter) (*upstream, bool, error) {
	writeOutbound(wc.W, r, span, opts, body, upgrade)
	if body != nil {
		if _, err := body.WriteTo(wc.W); err != nil {
			wc.Close()
			return nil, false, err
		}
	}
	if err := wc.W.Flush(); err != nil {
		wc.Close()
		return nil, false, err
	}
	sent := time.Now()
	// The wait for the head ends at the request timeout or when the client leaves; the watch on
	// the client goes on through the body, so that a worker streaming to a client that left
	// learns it at once (its connection is closed).
	var left atomic.Bool
	stopWatch := context.AfterFunc(ctx, func() {
		left.Store(true)
		wc.SetReadDeadline(time.Unix(1, 0))
	})
	var hw *headWait // the request timeout, kept by the watchdog as on the lean path
	if opts.RequestTimeout > 0 {
		hw = &headWait{}
		hw.start(wc, sent.Add(opts.RequestTimeout))
		f.watchdog.track(hw)
	}
	// The head is read by h1, as on the lean path (one policy for what passes: hop-by-hop
	// fields go), then read again by net/http with its framing fields, followed by the body on
	// wc: net/http's readers frame the body and parse trailers.
	var hr h1.Response
	var head []byte
	var err error
	for {
		head, err = h1.ReadResponse(wc.R, &hr, head[:0])
		if err != nil || hr.Status >= 200 || hr.Status == http.StatusSwitchingProtocols {
			break
		}
		if passInterim(hr.Status, r.ProtoMajor, r.ProtoMinor) {
			writeInterim(rw, hr.Status, head)
		}
	}
	timedOut := false
	if hw != nil {
		timedOut = !hw.stop()
		f.watchdog.untrack(hw)
	}
	if timedOut && err == nil {
		// The watchdog cut the wait as the head came: the connection's read deadline is past.
		err = errResponseTimeout
	}
	if err != nil {
		cut := timedOut || isTimeout(err) || left.Load()
		if cut && opts.Harakiri > opts.RequestTimeout {
			// The worker is still busy with the request (its client has a 504, or left): it
			// keeps its slot until it answers or passes the hard limit.
			stopWatch()
			f.wg.Go(func() { f.watchHarakiri(lease, wc, sent.Add(opts.Harakiri), opts, r.URL.Path) })
			return nil, true, errHeldForHarakiri
		}
		stopWatch()
		wc.Close()
		if left.Load() {
			return nil, true, context.Canceled
		}
		if timedOut || isTimeout(err) {
			err = errResponseTimeout
		}
		return nil, true, err
	}
	if !left.Load() {
		wc.SetReadDeadline(time.Time{})
	}
	up := &upstream{lease: lease, wc: wc, stopWatch: stopWatch,
		bodyless: r.Method == http.MethodHead || hr.Status == http.StatusNoContent || hr.Status == http.StatusNotModified}
	if hr.Status == http.StatusSwitchingProtocols {
		if upgrade == "" {
			stopWatch()
			wc.Close()
			return nil, true, fmt.Errorf("%w: 101 Switching Protocols to a request without Upgrade", h1.ErrMalformedResponse)
		}
		up.head101 = append(head, "Connection: Upgrade\r\nUpgrade: "+upgrade+"\r\n\r\n"...)
		up.resp = &http.Response{StatusCode: http.StatusSwitchingProtocols}
		return up, true, nil
	}
	switch {
	case h1.NoBody([]byte(r.Method), hr.Status):
		if hr.ContentLength >= 0 && hr.Status != http.StatusNoContent { // passed on, as the lean path does
			head = appendContentLength(head, hr.ContentLength)
		}
	case hr.Chunked:
		head = append(head, "Transfer-Encoding: chunked\r\n"...)
	case hr.ContentLength >= 0:
		head = appendContentLength(head, hr.ContentLength)
	}
	if hr.Close {
		head = append(head, "Connection: close\r\n"...)
	}
	head = append(head, '\r', '\n')
	up.br = bufio.NewReader(io.MultiReader(bytes.NewReader(head), wc.R))
	if up.resp, err = http.ReadResponse(up.br, r); err != nil { // h1 accepted this head: not expected
		stopWatch()
		wc.Close()
		return nil, true, fmt.Errorf("%w: %w", h1.ErrMalformedResponse, err)
	}
	return up, true, nil
}

// finish decides the fate of the worker connection once the response is relayed.
func (f *Front) finish(up *upstream, complete bool, r *http.Request) {
	watching := up.stopWatch()
	readAhead := 0
	if up.br != nil { // nil after a 101: the tunnel read the connection itself
		readAhead = up.br.Buffered()
	}
	f.settle(up.lease, up.wc, complete && watching && !up.resp.Close, up.bodyless, readAhead,
		func() string { return r.Method + " " + r.URL.Path })
}

// relay sends the worker's response on: fields less hop-by-hop ones, the body as it arrives
// (flushed at once when its length is unknown, so streams stream), then trailers. With
// MaxBufferedResponse set, a goroutine reads the worker's body into a spill while this one
// writes it to the client, so that the worker is done (done is called) when it has sent it,
// however slow the client. It reports whether the worker's body arrived whole; a client that
// went away reads as whole.
func (f *Front) relay(rw http.ResponseWriter, r *http.Request, up *upstream, opts *Options, done func(whole bool)) (whole bool) {
	resp := up.resp
	h := rw.Header()
	named := connectionNamed(resp.Header)
	for k, vv := range resp.Header {
		if hopHeaders[k] || (named != nil && named[k]) {
			continue
		}
		h[k] = vv
	}
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // net/http would guess one; the worker sent none
	}
	if len(allowedTrailers(resp.Trailer)) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	rw.WriteHeader(resp.StatusCode)
	src := io.Reader(resp.Body)
	var sp *spill
	var fromWorker chan error
	if opts.MaxBufferedResponse > 0 && !up.bodyless {
		sp = newSpill(opts.MaxBufferedResponse)
		defer sp.Release()
		fromWorker = make(chan error, 1)
		f.wg.Go(func() {
			_, err := io.Copy(sp, resp.Body)
			sp.CloseWrite()
			done(err == nil)
			fromWorker <- err
		})
		src = sp
	}
	bp := bodyPool.Get().(*[]byte)
	defer bodyPool.Put(bp)
	buf := (*bp)[:cap(*bp)]
	flush := resp.ContentLength < 0
	rc := http.NewResponseController(rw)
	var rerr error
	for {
		var n int
		n, rerr = src.Read(buf)
		if n > 0 {
			if _, werr := rw.Write(buf[:n]); werr != nil {
				clientGone(r)
				if sp != nil {
					sp.Fail(werr)
					<-fromWorker
				}
				return false
			}
			if flush {
				rc.Flush()
			}
		}
		if rerr != nil {
			break
		}
	}
	if fromWorker != nil && rerr != io.EOF {
		sp.Fail(rerr) // the spill itself failed: stop the worker's side too
		<-fromWorker
	} else if fromWorker != nil {
		rerr = <-fromWorker // the worker's side: io.Copy reports no io.EOF
		if rerr == nil {
			rerr = io.EOF
		}
	}
	if rerr != io.EOF {
		if r.Context().Err() != nil {
			clientGone(r) // the watch cut the worker's connection because the client left
			return false
		}
		f.log.Warn("worker response ended early", "path", r.URL.Path, "error", rerr)
		return false
	}
	for k, vv := range allowedTrailers(resp.Trailer) {
		h[http.TrailerPrefix+k] = vv
	}
	return true
}

// writeInterim sends an interim response (head: its status line and fields, as h1 read them)
// through net/http, whose header map carries its fields for that one write only.
func writeInterim(rw http.ResponseWriter, status int, head []byte) {
	h := rw.Header()
	_, fields, _ := bytes.Cut(head, []byte("\r\n"))
	var names []string
	for len(fields) > 0 {
		var line []byte
		line, fields, _ = bytes.Cut(fields, []byte("\r\n"))
		if name, value, ok := bytes.Cut(line, []byte(":")); ok {
			k := http.CanonicalHeaderKey(string(name))
			h.Add(k, string(bytes.Trim(value, " \t")))
			names = append(names, k)
		}
	}
	rw.WriteHeader(status)
	for _, k := range names {
		delete(h, k)
	}
}

// tunnel joins the client's connection and the worker's after a 101 Switching Protocols
// (WebSocket): the worker's slot is held until both sides are done.
func (f *Front) tunnel(rw http.ResponseWriter, r *http.Request, up *upstream) {
	up.stopWatch()
	wc := up.wc
	defer wc.Close()
	wc.SetReadDeadline(time.Time{})
	cc, brw, err := http.NewResponseController(rw).Hijack()
	if err != nil {
		f.log.Warn("upgrade failed: the client connection cannot be taken over", "path", r.URL.Path, "error", err)
		return
	}
	defer cc.Close()
	cc.SetDeadline(time.Time{}) // the tunnel lives as long as its two sides
	brw.Write(up.head101)
	if err := brw.Flush(); err != nil {
		return
	}
	stop := f.trackTunnel(cc, wc)
	defer stop()
	toWorker := make(chan struct{})
	f.wg.Go(func() {
		defer close(toWorker)
		io.Copy(wc, brw.Reader) // what the client sends, the bytes net/http had buffered first
		wc.SetReadDeadline(time.Unix(1, 0))
	})
	io.Copy(cc, wc.R)
	cc.SetReadDeadline(time.Unix(1, 0)) // ends the other direction
	<-toWorker
}

// trackTunnel notes an open tunnel, so that Close can end it; stop forgets it.
func (f *Front) trackTunnel(cc io.Closer, wc *Conn) (stop func()) {
	t := &tunnelConns{client: cc, worker: wc}
	f.tunnelsMu.Lock()
	if f.tunnels == nil {
		f.tunnels = map[*tunnelConns]struct{}{}
	}
	f.tunnels[t] = struct{}{}
	closed := f.closed
	f.tunnelsMu.Unlock()
	if closed {
		t.close()
	}
	return func() {
		f.tunnelsMu.Lock()
		delete(f.tunnels, t)
		f.tunnelsMu.Unlock()
	}
}

type tunnelConns struct {
	client io.Closer
	worker *Conn
}

func (t *tunnelConns) close() {
	t.client.Close()
	t.worker.Close()
}
