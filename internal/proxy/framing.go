package proxy

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"warmpool/internal/h1"
)

// What a request says of its body is decided here, once for every front: the lean path's
// parsed head and net/http's request (HTTP/1.x over TLS or handed off, and HTTP/2, where a
// body may come without any length) are each turned into a requestFraming, and the rules
// below read only that. Every body is read whole before a worker is leased, so the worker
// always gets it with its exact Content-Length, and never body bytes without one: bytes left
// unframed on a kept-alive worker connection would be read as the start of the next client's
// request.

// requestFraming is what a request's head said of its body.
type requestFraming struct {
	// declared: a Content-Length field, a chunked encoding, or an HTTP/2 stream its headers
	// left open.
	declared bool
	// length is the declared length; -1 when it is known only at the body's end (chunked,
	// HTTP/2 without content-length).
	length int64
}

// leanFraming is the framing of a head the lean path took: Content-Length or no body (the
// parser hands chunked bodies to net/http and refuses Content-Length with Transfer-Encoding).
func leanFraming(r *h1.Request) requestFraming {
	return requestFraming{declared: r.ContentLength >= 0, length: r.ContentLength}
}

// netHTTPFraming is the framing of a request net/http parsed. For HTTP/1.x it has already
// refused conflicting lengths (and the framing guard the rest); HTTP/2 passes every
// content-length field on, so their agreement is checked here.
func netHTTPFraming(r *http.Request) (requestFraming, *refusal) {
	lengths := r.Header["Content-Length"]
	fr := requestFraming{declared: len(lengths) > 0 || len(r.TransferEncoding) > 0 || r.ContentLength != 0, length: -1}
	for i, v := range lengths {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 || (i > 0 && n != fr.length) {
			return fr, &refusal{http.StatusBadRequest, fmt.Sprintf("conflicting or malformed Content-Length %q", lengths)}
		}
		fr.length = n
	}
	if len(r.TransferEncoding) > 0 {
		fr.length = -1
	}
	return fr, nil
}

// refusal is a request warmpool answers itself, without a worker: the client's own mistake.
type refusal struct {
	status int
	reason string
}

// bodyTooLarge is the refusal of a body of n bytes (declared, or read so far) over
// proxy.max_body_size; nil when it is within it.
func bodyTooLarge(opts *Options, n int64) *refusal {
	if opts.MaxBodySize <= 0 || n <= opts.MaxBodySize {
		return nil
	}
	return &refusal{http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is over proxy.max_body_size (%d bytes)", opts.MaxBodySize)}
}

// sendsLength reports whether the worker's request carries Content-Length for a body of n
// bytes read whole: whenever the client's had a body, or declared one (an empty one too).
func (fr requestFraming) sendsLength(n int64) bool { return fr.declared || n > 0 }
