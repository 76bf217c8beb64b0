// Package proxy is warmpool's HTTP front. The Balancer is the rotation: the set of admitted
// workers, least-outstanding selection capped at each worker's concurrency, and a bounded FIFO
// queue for requests when every worker is busy. The Front forwards requests to the worker it was
// given and maps failures to 502, 503 and 504 with a plain reason. This package never starts or
// stops processes; the pool decides which workers are in rotation.
package proxy
