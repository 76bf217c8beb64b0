// Package proxy is warmpool's HTTP front. The Balancer is the rotation: the set of admitted
// workers, least-outstanding selection capped at each worker's concurrency, and a bounded FIFO
// queue for requests when every worker is busy. The Server serves the cleartext listener: each
// connection starts on the lean HTTP/1.1 path (conn.go, lean.go: heads parsed in place by h1, no
// allocation per request) and is handed to net/http, with the bytes already read, at the first
// request that path leaves to it. The Front forwards requests to the worker it was given, on
// either path, and maps failures to 502, 503 and 504 with a plain reason. This package never
// starts or stops processes; the pool decides which workers are in rotation.
package proxy
