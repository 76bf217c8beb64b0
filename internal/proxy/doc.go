// Package proxy is warmpool's HTTP front. The Balancer is the rotation: the set of admitted
// workers, least-outstanding selection capped at each worker's concurrency, a bounded FIFO
// queue for requests when every worker is busy, and each worker's pool of kept-alive
// connections (workerconn.go).
//
// The Server serves the front's listener. On cleartext, each connection starts on the lean
// HTTP/1.1 path (conn.go, lean.go: heads parsed in place by h1, no allocation per request) and
// is handed to net/http, with the bytes already read, at the first request that path leaves
// to it. With TLS, the Server ends TLS and gives HTTP/2 connections to net/http as they are
// and HTTP/1.1 ones through the framing guard (guard.go) that handed-off connections have
// too, so that every HTTP/1.x request net/http parses is held to the lean path's framing
// rules.
//
// The Front forwards requests from both paths through one exchange core (exchange.go): each
// path is an adapter that turns its request into an exchanger (lean.go's clientConn,
// fallback.go's httpExchange), and every policy is decided once: what a request says of its
// body and its size limit (framing.go, spool.go), what of its head reaches the worker
// (outbound.go, forwarded.go), the retry rules, the request timeout, harakiri and a client
// that leaves (exchange.go, watchdog.go), interim responses and trailers (responserules.go),
// a worker connection reused only when nothing is left past the response (reuse.go), the
// response buffered for a slow client (spill.go), and failures mapped to 4xx and 5xx with a
// plain reason and no internal detail (errors.go). A differential test holds every front to
// the same result. This package never starts or stops processes; the pool decides which
// workers are in rotation.
package proxy
