// Package h1 reads the HTTP/1.1 wire format for warmpool's lean front path: request heads
// parsed in place (no copies, no maps), response heads, and the framing of bodies (Content-Length,
// chunked). It is strict on purpose: anything it does not fully understand is reported as
// Unsupported, and the caller hands the connection to net/http, which serves (or rejects) it.
// It knows the syntax only; what a proxy keeps or drops is the caller's policy.
package h1
