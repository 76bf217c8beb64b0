package telemetry

import (
	"time"
)

// Request is what the front knows about one finished client request.
type Request struct {
	Method, Path string
	Status       int
	Bytes        int64
	Start        time.Time
	Duration     time.Duration
	QueueWait    time.Duration
	Upstream     time.Duration // from sending to the worker until its response body ended
	// Worker fields are zero when no worker was leased (503 from the queue, 400 for the host).
	WorkerID     int
	PID          int
	Generation   int
	RequestIndex int64         // 1-based among the worker's client requests
	WorkerAge    time.Duration // since the worker was spawned
	// FirstRequests is true among the first cold_window requests of the worker.
	FirstRequests bool
	// Credentials: the request carried Cookie, Authorization or another credential header
	// (learn.IsCredentialHeader). Set for FirstRequests only: nothing else reads it.
	Credentials bool
	TraceID     string
	// The client's side, for the access log. They are views into the front's buffers, valid
	// only while ObserveRequest runs: an observer that keeps one copies it.
	Client, Host, Query, UserAgent []byte
	RequestBytes                   int64 // the request body's size
	// Shard spreads the bookkeeping of concurrent requests over separate locks: requests that
	// differ in it rarely contend. Any value will do; the front uses its connection's number.
	Shard int
}

// Observer is told of every finished client request.
type Observer interface {
	ObserveRequest(req *Request)
}
