package proxy

import (
	"net/http"

	"warmpool/internal/h1"
)

// What of a worker's response reaches the client besides its final head and body is decided
// here, for every front: interim responses (1xx) and trailer fields.

// passInterim reports whether a worker's interim response goes on to the client: 103 Early
// Hints and other 1xx do, to HTTP/1.1 and HTTP/2 clients (HTTP/1.0 knows none); 100 Continue
// does not (warmpool read the body already, and answered the client's Expect itself), and 101
// ends the exchange instead.
func passInterim(status, clientMajor, clientMinor int) bool {
	return status >= 102 && status < 200 && (clientMajor > 1 || clientMinor >= 1)
}

// notTrailers are the fields a trailer may not carry (RFC 9110 6.5.1: framing, routing,
// authentication, response control, how to process the content) and cookies: a client that
// took them from a trailer could be misled about the response, so they are dropped.
var notTrailers = []string{
	"age", "authorization", "cache-control", "connection", "content-encoding", "content-length",
	"content-location", "content-range", "content-type", "cookie", "date", "expect", "expires",
	"host", "keep-alive", "location", "max-forwards", "pragma", "proxy-authenticate",
	"proxy-authorization", "proxy-connection", "range", "retry-after", "set-cookie", "te",
	"trailer", "transfer-encoding", "upgrade", "vary", "www-authenticate",
}

// trailerAllowed reports whether a trailer field named name (any case) goes to the client.
func trailerAllowed(name []byte) bool {
	for _, n := range notTrailers {
		if len(n) == len(name) && h1.EqualFold(name, n) {
			return false
		}
	}
	return true
}

// allowedTrailers is trailer less the fields trailerAllowed refuses (net/http's shape).
func allowedTrailers(trailer http.Header) http.Header {
	for k := range trailer {
		if !trailerAllowed([]byte(k)) {
			delete(trailer, k)
		}
	}
	return trailer
}
