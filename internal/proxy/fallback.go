package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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
// It is the exchange core's other adapter (exchange.go): the body is read whole before a
// worker is leased (spool.go), and the response is relayed through net/http, buffered for a
// slow client (spill.go) so that the worker is released when it has sent it.

// StatusClientClosedRequest is recorded for a request whose client went away before its
// response (nginx's 499): the client's doing, not a failure of warmpool or the worker.
const StatusClientClosedRequest = 499

// serveNetHTTP forwards one request from net/http: the fallback's entry from Front.ServeHTTP.
func serveNetHTTP(f *Front, rw http.ResponseWriter, r *http.Request, opts *Options) {
	if status, reason := refusedMethod(r.Method); status != 0 {
		refuse(f.log, rw, r, status, reason)
		return
	}
	if !hostAllowed(f.log, opts, []byte(r.Host), []byte(r.URL.Path)) {
		refuse(f.log, rw, r, http.StatusBadRequest, fmt.Sprintf("host %q is not in proxy.allowed_hosts", r.Host))
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
		refuse(f.log, rw, r, bad.status, bad.reason)
		return
	}
	x := &httpExchange{f: f, rw: rw, r: r, opts: opts, upgradeTo: upgradeOf(r)}
	x.info, _ = r.Context().Value(requestInfoKey{}).(*telemetry.Request)
	if x.upgradeTo == "" {
		var ok bool
		if x.body, ok = readBody(f.log, rw, r, fr, opts); !ok {
			return
		}
		defer x.body.Close()
		if x.info != nil {
			x.info.RequestBytes = x.body.Len()
		}
	}
	if opts.RequestTimeout > 0 {
		f.watchdog.track(&x.await)
		defer f.watchdog.untrack(&x.await)
	}
	status, _, err := f.forward(x, opts)
	x.finish(status, err)
}

// refusedMethod answers the methods warmpool serves to no worker (0: served).
func refusedMethod(method string) (int, string) {
	switch method {
	case http.MethodConnect:
		return http.StatusMethodNotAllowed, "CONNECT is not served: warmpool is no forward proxy"
	case "PRI": // the HTTP/2 preface on a cleartext HTTP/1.1 connection
		return http.StatusHTTPVersionNotSupported, "HTTP/2 is served over TLS only"
	}
	return 0, ""
}

// refuse answers a request warmpool itself turns down, with the reason in plain text.
func refuse(log *slog.Logger, rw http.ResponseWriter, r *http.Request, status int, reason string) {
	log.Warn("request refused", "status", status, "method", r.Method, "path", r.URL.Path, "client", r.RemoteAddr, "reason", reason)
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

// httpExchange is the fallback's exchanger: one request from net/http.
type httpExchange struct {
	f         *Front
	rw        http.ResponseWriter
	r         *http.Request
	opts      *Options
	info      *telemetry.Request // nil when nothing records
	body      *spooledBody       // nil for an upgrade
	upgradeTo string

	await     headWait
	left      atomic.Bool
	stopWatch func() bool

	rsp     response
	trailer http.Header // the response's trailers, set once the body is out
	// drain waits until the response buffered for a slow client reached it (nil: nothing
	// buffered) and reports a failure to write it.
	drain func() error
}

func (x *httpExchange) acquire(avoid *worker.Worker) (Lease, error) {
	return x.f.acquire(x.r.Context(), avoid, x.info, x.opts.ColdWindow)
}

func (x *httpExchange) clock() time.Time { return time.Now() }

func (x *httpExchange) upstreamTook(d time.Duration) {
	if x.info != nil {
		x.info.Upstream = d
	}
}

func (x *httpExchange) writeRequest(bw *bufio.Writer) error {
	writeOutbound(bw, x.r, trace.SpanFromContext(x.r.Context()), x.opts, x.body, x.upgradeTo)
	if x.body == nil {
		return nil
	}
	_, err := x.body.WriteTo(bw)
	return err
}

func (x *httpExchange) method() string                 { return x.r.Method }
func (x *httpExchange) describe() string               { return x.r.Method + " " + x.r.URL.Path }
func (x *httpExchange) upgrade() string                { return x.upgradeTo }
func (x *httpExchange) clientHTTP() (major, minor int) { return x.r.ProtoMajor, x.r.ProtoMinor }
func (x *httpExchange) awaiting() *headWait            { return &x.await }
func (x *httpExchange) scratch() *response             { return &x.rsp }

func (x *httpExchange) watchClient(wc *Conn) {
	x.left.Store(false)
	x.stopWatch = context.AfterFunc(x.r.Context(), func() {
		x.left.Store(true)
		wc.SetReadDeadline(time.Unix(1, 0))
	})
}

func (x *httpExchange) unwatchClient() bool {
	if x.stopWatch != nil {
		x.stopWatch()
		x.stopWatch = nil
	}
	return x.left.Load()
}

// interim sends an interim response (its status line and fields, as h1 read them) through
// net/http, whose header map carries its fields for that one write only.
func (x *httpExchange) interim(status int, head []byte) error {
	h := x.rw.Header()
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
	x.rw.WriteHeader(status)
	for _, k := range names {
		delete(h, k)
	}
	return nil
}

// relay sends the response on through net/http: its fields (h1 dropped the hop-by-hop ones),
// the body as it arrives (flushed at once when its length is unknown, so streams stream), and
// its trailers once the body is out. With MaxBufferedResponse set, what the client cannot take
// at once waits in a spill that a goroutine writes out, so that the worker is done when it
// has sent the body, however slow the client.
func (x *httpExchange) relay(rsp *response) (int64, error) {
	if rsp.Status == http.StatusSwitchingProtocols {
		x.tunnel(rsp)
		return 0, nil
	}
	br := bufio.NewReader(io.MultiReader(bytes.NewReader(append(rsp.head, '\r', '\n')), rsp.wc.R))
	resp, err := http.ReadResponse(br, x.r) // net/http frames the body and reads its trailers
	if err != nil {                         // h1 accepted this head: not expected
		return 0, fmt.Errorf("%w: %w", h1.ErrMalformedResponse, err)
	}
	defer func() { rsp.readAhead = br.Buffered() }() // what it read past the body's end
	h := x.rw.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // net/http would guess one; the worker sent none
	}
	if x.upgradeTo != "" && x.r.ProtoMajor == 1 {
		h.Set("Connection", "close") // the framing guard stepped aside for the upgrade (guard.go)
	}
	x.rw.WriteHeader(resp.StatusCode)
	var n int64
	if x.opts.MaxBufferedResponse > 0 && rsp.body != bodyNone {
		n, err = x.copyBuffered(resp)
	} else {
		n, err = x.copyTo(x.rw, resp.Body, resp.ContentLength < 0)
	}
	if err == nil {
		x.trailer = allowedTrailers(resp.Trailer)
	}
	return n, err
}

// copyTo copies the worker's body to w, flushing after each write when stream is set. A
// failed write is the client's (*h1.WriteError).
func (x *httpExchange) copyTo(w io.Writer, body io.Reader, stream bool) (int64, error) {
	bp := bodyPool.Get().(*[]byte)
	defer bodyPool.Put(bp)
	buf := (*bp)[:cap(*bp)]
	rc := http.NewResponseController(x.rw)
	var n int64
	for {
		k, rerr := body.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, &h1.WriteError{Err: werr}
			}
			n += int64(k)
			if stream {
				rc.Flush()
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// copyBuffered copies the worker's body into a spill that a goroutine writes to the client;
// finish waits for that goroutine.
func (x *httpExchange) copyBuffered(resp *http.Response) (int64, error) {
	sp := newSpill(x.opts.MaxBufferedResponse)
	drained := make(chan error, 1)
	stream := resp.ContentLength < 0
	x.f.wg.Go(func() {
		_, err := x.copyTo(x.rw, sp, stream)
		if err != nil {
			sp.Fail(err) // the worker's side stops too
		}
		drained <- err
	})
	x.drain = func() error {
		err := <-drained
		sp.Release()
		return err
	}
	n, err := io.Copy(sp, resp.Body)
	sp.CloseWrite()
	return n, err
}

// finish completes the answer once the exchange is over: the buffered response written out,
// the trailers set, a failure answered, or a response that broke off cut for the client.
func (x *httpExchange) finish(status int, err error) {
	if x.drain != nil {
		if derr := x.drain(); derr != nil && err == nil {
			err = &h1.WriteError{Err: derr}
		}
	}
	switch {
	case err == nil:
		for k, vv := range x.trailer {
			x.rw.Header()[http.TrailerPrefix+k] = vv
		}
	case status == 0:
		x.writeFailure(err)
	case clientSide(err) || x.r.Context().Err() != nil:
		clientGone(x.r)
	default:
		panic(http.ErrAbortHandler) // the worker's body ended early: the client must see it cut off
	}
}

// writeFailure answers a request that got no response from a worker.
func (x *httpExchange) writeFailure(err error) {
	fl := failureOf(x.r.Context().Err() != nil, err, x.f.bal.QueueTimeout())
	fl.report(x.f.log, x.r.Method, x.r.URL.Path)
	if fl.status == 0 {
		clientGone(x.r)
		return
	}
	writePlainError(x.rw, fl.status, fl.text())
}

// tunnel joins the client's connection and the worker's after a 101 Switching Protocols
// (WebSocket): the worker's slot is held until both sides are done.
func (x *httpExchange) tunnel(rsp *response) {
	x.unwatchClient()
	wc := rsp.wc
	defer wc.Close()
	wc.SetReadDeadline(time.Time{})
	cc, brw, err := http.NewResponseController(x.rw).Hijack()
	if err != nil {
		x.f.log.Warn("upgrade failed: the client connection cannot be taken over", "path", x.r.URL.Path, "error", err)
		return
	}
	defer cc.Close()
	cc.SetDeadline(time.Time{}) // the tunnel lives as long as its two sides
	brw.Write(rsp.head)
	brw.WriteString("Connection: Upgrade\r\nUpgrade: " + x.upgradeTo + "\r\n\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	stop := x.f.tunnels.track(cc, wc)
	defer stop()
	toWorker := make(chan struct{})
	x.f.wg.Go(func() {
		defer close(toWorker)
		io.Copy(wc, brw.Reader) // what the client sends, the bytes net/http had buffered first
		wc.SetReadDeadline(time.Unix(1, 0))
	})
	io.Copy(cc, wc.R)
	cc.SetReadDeadline(time.Unix(1, 0)) // ends the other direction
	<-toWorker
}

// tunnelSet is the Front's open tunnels, which Close ends.
type tunnelSet struct {
	mu     sync.Mutex
	open   map[*tunnelConns]struct{}
	closed bool
}

// track notes an open tunnel; stop forgets it.
func (ts *tunnelSet) track(cc io.Closer, wc *Conn) (stop func()) {
	t := &tunnelConns{client: cc, worker: wc}
	ts.mu.Lock()
	if ts.open == nil {
		ts.open = map[*tunnelConns]struct{}{}
	}
	ts.open[t] = struct{}{}
	closed := ts.closed
	ts.mu.Unlock()
	if closed {
		t.close()
	}
	return func() {
		ts.mu.Lock()
		delete(ts.open, t)
		ts.mu.Unlock()
	}
}

// closeAll ends every open tunnel, and any opened later.
func (ts *tunnelSet) closeAll() {
	ts.mu.Lock()
	ts.closed = true
	for t := range ts.open {
		t.close()
	}
	ts.mu.Unlock()
}

type tunnelConns struct {
	client io.Closer
	worker *Conn
}

func (t *tunnelConns) close() {
	t.client.Close()
	t.worker.Close()
}
