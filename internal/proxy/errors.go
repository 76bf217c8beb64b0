package proxy

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"warmpool/internal/worker"
)

// Errors are answered the same way on every path: failureOf decides the status, what a public
// client is told and what the operator is told; errorPage renders the answer. A client learns
// what happened (busy, no worker ready, the app timed out or failed) and a request id it can
// quote; never a worker's output, a socket path or an internal error text, which go to the log
// line that carries the same id (and, for a pool that cannot start workers, to /status).

var errResponseTimeout = errors.New("no response headers within the request timeout")

// UnavailableError: no worker is ready, and none will be soon.
type UnavailableError struct{ Why string }

func (e *UnavailableError) Error() string { return "no worker is ready: " + e.Why }

// UpstreamError is a failure of the exchange with one worker.
type UpstreamError struct {
	WorkerID int
	Err      error
	Timeout  time.Duration // the request timeout in force, for the message
	// Sent reports that the request reached the worker before the exchange failed.
	Sent bool
}

func (e *UpstreamError) Error() string { return fmt.Sprintf("worker %d: %v", e.WorkerID, e.Err) }
func (e *UpstreamError) Unwrap() error { return e.Err }

func isTimeout(err error) bool {
	if errors.Is(err, errResponseTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// failure is a request that got no response from a worker.
type failure struct {
	status int    // 0: the client went away, nothing is said
	public string // for the client: what happened, in general terms
	detail string // for the log
	id     string // quoted in both
}

// failureOf maps a forwarding error to what the client and the operator are told.
func failureOf(clientGone bool, err error, queueTimeout time.Duration) failure {
	var up *UpstreamError
	var dial *worker.DialError
	var unavailable *UnavailableError
	fl := failure{status: http.StatusBadGateway, detail: err.Error()}
	switch {
	case clientGone:
		return failure{detail: err.Error()}
	case errors.Is(err, ErrQueueFull):
		fl.status, fl.public = http.StatusServiceUnavailable, "all workers are busy and the wait queue is full; retry later"
	case errors.As(err, &unavailable):
		fl.status, fl.public = http.StatusServiceUnavailable, "no worker is ready; retry later"
	case errors.Is(err, ErrQueueTimeout):
		fl.status, fl.public = http.StatusServiceUnavailable, "no worker became free within "+queueTimeout.String()+"; retry later"
	case errors.As(err, &up) && isTimeout(err):
		fl.status, fl.public = http.StatusGatewayTimeout, "the app sent no response within "+up.Timeout.String()
	case errors.As(err, &dial) && (up == nil || !up.Sent):
		fl.public = "could not reach a worker"
	case errors.As(err, &dial):
		fl.public = "the worker exited with this request in flight"
	default:
		fl.public = "the worker failed before answering"
	}
	fl.id = newRequestID()
	return fl
}

// newRequestID is a short random id that ties a client's error page to its log line.
func newRequestID() string {
	var b [8]byte
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return hex.EncodeToString(b[:])
}

// text is the failure's plain-text reason for the client.
func (fl *failure) text() string { return fl.public + " (request id " + fl.id + ")" }

// report logs a failure once, with its detail; a client that went away is a debug line.
func (fl *failure) report(log *slog.Logger, method, path string) {
	if fl.status == 0 {
		log.Debug("client went away", "path", path, "error", fl.detail)
		return
	}
	log.Warn("request failed", "status", fl.status, "method", method, "path", path, "request_id", fl.id, "reason", fl.detail)
}

// errorPage is the body of every answer warmpool writes itself (refusals and failures), and
// what its head says besides the status: Retry-After for a 503, and that a 504's connection
// closes (the worker may still answer on it).
func errorPage(status int, reason string) (body string, retryAfter, closes bool) {
	return "warmpool: " + reason + "\n", status == http.StatusServiceUnavailable, status == http.StatusGatewayTimeout
}

// writePlainError writes errorPage through net/http.
func writePlainError(rw http.ResponseWriter, status int, reason string) {
	body, retryAfter, closes := errorPage(status, reason)
	h := rw.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	if retryAfter {
		h.Set("Retry-After", "1")
	}
	if closes {
		h.Set("Connection", "close")
	}
	rw.WriteHeader(status)
	rw.Write([]byte(body))
}
