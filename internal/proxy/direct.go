package proxy

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"warmpool/internal/telemetry"
	"warmpool/internal/worker"
)

// The direct path serves a body-less request without httputil.ReverseProxy: the outbound
// request is written straight into the worker connection's buffer from the inbound one (no
// cloned request, no header map copies), and the response is copied back as it arrives.
// ReverseProxy keeps requests with a body, upgrades, "Expect: 100-continue" and harakiri.

// directEligible reports whether an inbound request can take the direct path.
func directEligible(r *http.Request, opts *Options) bool {
	return r.ContentLength == 0 && (r.Body == nil || r.Body == http.NoBody) && r.Method != http.MethodConnect &&
		r.Header.Get("Upgrade") == "" && r.Header.Get("Expect") == "" && opts.Harakiri <= opts.RequestTimeout
}

// hopHeaders are never forwarded (RFC 9110 7.6.1), besides those a Connection header names.
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// ownHeaders are set by warmpool itself on the outbound request.
var ownHeaders = map[string]bool{"X-Forwarded-For": true, worker.WarmupHeader: true}

func (f *Front) serveDirect(rw http.ResponseWriter, r *http.Request, opts *Options) {
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
		resp, reached, err := f.exchangeSync(w, ctx, func(bw *bufio.Writer) error { return writeOutbound(bw, r, span, opts) }, r)
		if err != nil {
			if info != nil {
				info.Upstream = time.Since(sent)
			}
			f.releaseAfterFailure(lease, err)
			if f.retryElsewhere(ctx, err, attempt, reached) {
				avoid = w
				continue
			}
			f.writeError(rw, r, &UpstreamError{WorkerID: w.ID(), Err: err, Timeout: opts.RequestTimeout, Sent: reached})
			return
		}
		defer func() { // also when copyResponse aborts the response
			resp.Body.Close()
			if info != nil {
				info.Upstream = time.Since(sent)
			}
			lease.Release()
		}()
		f.copyResponse(rw, resp)
		return
	}
}

// writeOutbound writes the request line and headers for the worker: the client's headers less
// hop-by-hop ones, forwarding headers as forwarded.go says (X-Forwarded-For extended), and with
// tracing on, warmpool's span as the parent.
func writeOutbound(bw *bufio.Writer, r *http.Request, span trace.Span, opts *Options) error {
	uri := r.RequestURI
	if uri == "" || uri[0] != '/' {
		uri = r.URL.RequestURI()
	}
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	named := connectionNamed(r.Header)
	traced := span.SpanContext().IsValid()
	trustedPeer := trustedPeer(opts.TrustedProxies, r.RemoteAddr)
	for k, vv := range r.Header {
		if hopHeaders[k] || ownHeaders[k] || (named != nil && named[k]) || (traced && (k == "Traceparent" || k == "Tracestate")) ||
			(!trustedPeer && forwardingHeaderSet[k]) || (!opts.PassUnderscoreHeaders && underscored(k)) {
			if k == "Te" && hasToken(vv, "trailers") {
				bw.WriteString("Te: trailers\r\n") // gRPC needs it; the only TE value passed on
			}
			continue
		}
		for _, v := range vv {
			writeHeader(bw, k, v)
		}
	}
	writeHeader(bw, "X-Forwarded-For", forwardedFor(r.Header["X-Forwarded-For"], r.RemoteAddr))
	if r.TLS != nil && !(trustedPeer && len(r.Header["X-Forwarded-Proto"]) > 0) {
		writeHeader(bw, "X-Forwarded-Proto", "https")
	}
	if traced {
		telemetry.Propagator.Inject(trace.ContextWithSpan(r.Context(), span), headerWriter{bw})
	}
	_, err := bw.WriteString("\r\n")
	return err
}

func writeHeader(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// headerWriter lets the trace propagator write its headers straight to the connection.
type headerWriter struct{ bw *bufio.Writer }

func (h headerWriter) Get(string) string { return "" }
func (h headerWriter) Keys() []string    { return nil }
func (h headerWriter) Set(k, v string)   { writeHeader(h.bw, http.CanonicalHeaderKey(k), v) }

// connectionNamed lists the headers a Connection header names (hop-by-hop too); nil if none.
func connectionNamed(h http.Header) map[string]bool {
	vv := h["Connection"]
	if len(vv) == 0 {
		return nil
	}
	named := map[string]bool{}
	for _, v := range vv {
		for _, tok := range strings.Split(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				named[http.CanonicalHeaderKey(tok)] = true
			}
		}
	}
	return named
}

func hasToken(vv []string, token string) bool {
	for _, v := range vv {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), token) {
				return true
			}
		}
	}
	return false
}

// copyResponse sends the worker's response on: headers less hop-by-hop ones, the body as it
// arrives (flushed at once when its length is unknown, so streams stream), then trailers.
func (f *Front) copyResponse(rw http.ResponseWriter, resp *http.Response) {
	h := rw.Header()
	named := connectionNamed(resp.Header)
	for k, vv := range resp.Header {
		if hopHeaders[k] || (named != nil && named[k]) {
			continue
		}
		h[k] = vv
	}
	if len(resp.Trailer) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	rw.WriteHeader(resp.StatusCode)
	buf := f.rp.BufferPool.Get()
	defer f.rp.BufferPool.Put(buf)
	flush := resp.ContentLength < 0
	rc := http.NewResponseController(rw)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := rw.Write(buf[:n]); werr != nil {
				return // the client went away; the body is closed by the caller
			}
			if flush {
				rc.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.log.Warn("worker response ended early", "error", rerr)
			panic(http.ErrAbortHandler) // tell the client the response is incomplete
		}
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
}
