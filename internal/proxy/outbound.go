package proxy

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"

	"go.opentelemetry.io/otel/trace"

	"warmpool/internal/telemetry"
	"warmpool/internal/worker"
)

// outbound.go: the request head the net/http fallback writes for the worker. The lean path
// writes its own from the client's bytes (lean.go); both follow forwarded.go's rules.

// hopHeaders are never forwarded (RFC 9110 7.6.1), besides those a Connection header names.
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// ownHeaders are set by warmpool itself on the outbound request.
// Content-Length is written from the body read, and Expect was answered by net/http itself.
var ownHeaders = map[string]bool{"X-Forwarded-For": true, worker.WarmupHeader: true, "Content-Length": true, "Expect": true}

// writeOutbound writes the request line and headers for the worker: the client's headers less
// hop-by-hop ones, forwarding headers as forwarded.go says (X-Forwarded-For extended), with
// tracing on warmpool's span as the parent, and the body's framing: the body is read whole, so
// it goes with its length (a chunked upload too). An upgrade keeps its Upgrade and Connection.
func writeOutbound(bw *bufio.Writer, r *http.Request, span trace.Span, opts *Options, body *spooledBody, upgrade string) {
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
	if tlsState(r) != nil && !(trustedPeer && len(r.Header["X-Forwarded-Proto"]) > 0) {
		writeHeader(bw, "X-Forwarded-Proto", "https")
	}
	if traced {
		telemetry.Propagator.Inject(trace.ContextWithSpan(r.Context(), span), headerWriter{bw})
	}
	switch {
	case upgrade != "":
		writeHeader(bw, "Connection", "Upgrade")
		writeHeader(bw, "Upgrade", upgrade)
	case body != nil && body.framing.sendsLength(body.Len()):
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(body.Len(), 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
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
