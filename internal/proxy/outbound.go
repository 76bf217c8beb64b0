package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"go.opentelemetry.io/otel/trace"

	"warmpool/internal/h1"
	"warmpool/internal/telemetry"
	"warmpool/internal/worker"
)

// The request head a worker gets, on both paths: the client's fields by one rule (fieldRule),
// then warmpool's own (X-Forwarded-For extended, X-Forwarded-Proto when warmpool ended TLS,
// the trace context of its span) and the body's length (framing.go). The lean path writes the
// kept fields from the client's bytes, in runs; net/http's path from its header map.

// What becomes of a client's field on its way to the worker.
const (
	fieldKeep       = iota
	fieldDrop       // hop-by-hop (RFC 9110 7.6.1), or answered by warmpool (Expect), or its own
	fieldFraming    // Content-Length, Transfer-Encoding: written from the body read
	fieldTE         // only "TE: trailers" passes (gRPC needs it)
	fieldXFF        // X-Forwarded-For: extended with the client's address
	fieldTrace      // traceparent and tracestate: replaced when warmpool traces
	fieldForwarding // forwarded.go's headers: kept from a trusted peer only
)

// fieldRule is the one table of what happens to a client's field, by name; known is
// h1.FieldName(name).
func fieldRule(name []byte, known h1.Name) int {
	switch {
	case known == h1.NameTE:
		return fieldTE
	case known == h1.NameContentLength || known == h1.NameTransferEncoding:
		return fieldFraming
	case known == h1.NameHost || known == h1.NameExpect || known.HopByHop():
		return fieldDrop // Host is written first; an upgrade's Connection and Upgrade by its path
	case known == h1.NameOther:
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
		case len(warmupHeaderLower):
			if h1.EqualFold(name, warmupHeaderLower) {
				return fieldDrop // only warmpool's warm-up sends it
			}
		}
		if isForwardingHeader(name) {
			return fieldForwarding
		}
	}
	return fieldKeep
}

var warmupHeaderLower = strings.ToLower(worker.WarmupHeader)

// outboundPolicy is what the options and the peer decide for a request's fields.
type outboundPolicy struct {
	trusted bool // the peer is in TrustedProxies: its forwarding headers pass
	// passUnderscored: fields with '_' in the name pass. By default they are dropped: CGI and
	// WSGI turn '-' and '_' into the same variable, so X_Forwarded_Proto would reach the app as
	// X-Forwarded-Proto.
	passUnderscored bool
	traced          bool // warmpool's span replaces the client's trace context
}

// keeps reports whether a field under rule passes as the client sent it.
func (p outboundPolicy) keeps(rule int, underscore bool) bool {
	if underscore && !p.passUnderscored {
		return false
	}
	return rule == fieldKeep || rule == fieldTrace && !p.traced || rule == fieldForwarding && p.trusted
}

// writeLeanOutbound writes the request for the worker from the lean path's parsed head: kept
// fields go out as the client sent them, each run of consecutive ones in one copy.
func writeLeanOutbound(bw *bufio.Writer, r *h1.Request, client, body []byte, traced context.Context, policy outboundPolicy) {
	bw.Write(r.Method)
	bw.WriteByte(' ')
	bw.Write(r.Target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.Write(r.Host)
	bw.WriteString("\r\n")
	priorXFF := false
	var run []byte
	for i := range r.Fields {
		fl := &r.Fields[i]
		rule := fieldRule(fl.Name, fl.Known)
		if policy.keeps(rule, fl.Underscore) {
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
			writeTE(bw, h1.HasToken(fl.Value, "trailers"))
		case fieldXFF:
			priorXFF = true
		}
	}
	bw.Write(run)
	bw.WriteString("X-Forwarded-For: ")
	if priorXFF {
		for i := range r.Fields {
			if fl := &r.Fields[i]; fl.Known == h1.NameOther && fieldRule(fl.Name, fl.Known) == fieldXFF {
				bw.Write(fl.Value)
				bw.WriteString(", ")
			}
		}
	}
	bw.Write(client)
	bw.WriteString("\r\n") // cleartext: no X-Forwarded-Proto, and Host is the client's
	writeOwnTail(bw, traced, leanFraming(r).sendsLength(int64(len(body))), int64(len(body)))
	bw.Write(body)
}

// writeOutbound writes the request line and head for the worker from net/http's request; an
// upgrade keeps its Upgrade and Connection.
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
	policy := outboundPolicy{trusted: trustedPeer(opts.TrustedProxies, r.RemoteAddr), passUnderscored: opts.PassUnderscoreHeaders,
		traced: span.SpanContext().IsValid()}
	for k, vv := range r.Header {
		name := unsafe.Slice(unsafe.StringData(k), len(k)) // read only
		rule := fieldRule(name, h1.FieldName(name))
		if rule == fieldTE {
			writeTE(bw, hasToken(vv, "trailers"))
		}
		if !policy.keeps(rule, strings.IndexByte(k, '_') >= 0) || named[k] {
			continue
		}
		for _, v := range vv {
			writeHeader(bw, k, v)
		}
	}
	writeHeader(bw, "X-Forwarded-For", forwardedFor(r.Header["X-Forwarded-For"], r.RemoteAddr))
	if tlsState(r) != nil && !(policy.trusted && len(r.Header["X-Forwarded-Proto"]) > 0) {
		writeHeader(bw, "X-Forwarded-Proto", "https")
	}
	if upgrade != "" {
		writeHeader(bw, "Connection", "Upgrade")
		writeHeader(bw, "Upgrade", upgrade)
	}
	var traced context.Context
	if policy.traced {
		traced = trace.ContextWithSpan(r.Context(), span)
	}
	var length int64
	if body != nil {
		length = body.Len()
	}
	writeOwnTail(bw, traced, body != nil && body.framing.sendsLength(length), length)
}

// writeTE passes the one TE value a worker may need.
func writeTE(bw *bufio.Writer, trailers bool) {
	if trailers {
		bw.WriteString("Te: trailers\r\n")
	}
}

// writeOwnTail ends the head, on both paths: warmpool's trace context (with traced, the
// context of its span), the body's length, the empty line.
func writeOwnTail(bw *bufio.Writer, traced context.Context, sendLength bool, length int64) {
	if traced != nil {
		telemetry.Propagator.Inject(traced, headerWriter{bw})
	}
	if sendLength {
		bw.WriteString("Content-Length: ")
		var buf [20]byte
		bw.Write(strconv.AppendInt(buf[:0], length, 10))
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

// hasToken reports whether a comma-separated field lists token, ignoring case.
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
