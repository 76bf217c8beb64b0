// Package proxy is warmpool's HTTP front. The Balancer is the rotation: the set of admitted
// workers, least-outstanding selection capped at each worker's concurrency, a bounded FIFO
// queue for requests when every worker is busy, and each worker's pool of kept-alive
// connections (workerconn.go). The Server serves the cleartext listener: each connection starts
// on the lean HTTP/1.1 path (conn.go, lean.go: heads parsed in place by h1, no allocation per
// request) and is handed to net/http, with the bytes already read, at the first request that
// path leaves to it. net/http serves those, and TLS and HTTP/2, through one fallback
// (fallback.go). The Front forwards requests on either path, with one set of policies: the
// request body read whole before a worker is leased (spool.go on the fallback), the outbound
// fields (forwarded.go), a connection reused only when nothing is left past the response
// (reuse.go), the response buffered for a slow client (spill.go), a worker that passes the
// request timeout reported hung, and failures mapped to 4xx and 5xx with a plain reason
// (errors.go). A differential test holds the two paths to the same result. This package never
// starts or stops processes; the pool decides which workers are in rotation.
package proxy
