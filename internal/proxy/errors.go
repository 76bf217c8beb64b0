package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"warmpool/internal/worker"
)

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

// classify maps a forwarding error to the status and the plain reason the client gets.
// Status 0 means the client itself went away and nothing needs to be said.
func classify(clientGone bool, err error, queueTimeout time.Duration) (int, string) {
	var up *UpstreamError
	var dial *worker.DialError
	var unavailable *UnavailableError
	switch {
	case clientGone:
		return 0, "client went away"
	case errors.Is(err, ErrQueueFull):
		return http.StatusServiceUnavailable, "all workers are busy and the wait queue is full; retry later"
	case errors.As(err, &unavailable):
		return http.StatusServiceUnavailable, "no worker is ready: " + unavailable.Why + "; retry later"
	case errors.Is(err, ErrQueueTimeout):
		return http.StatusServiceUnavailable, "no worker became free within " + queueTimeout.String() + "; retry later"
	case errors.As(err, &up) && isTimeout(err):
		return http.StatusGatewayTimeout, fmt.Sprintf("worker %d sent no response within %s", up.WorkerID, up.Timeout)
	case errors.As(err, &dial) && (up == nil || !up.Sent):
		return http.StatusBadGateway, fmt.Sprintf("could not connect to worker %d (it may have exited)", dial.WorkerID)
	case errors.As(err, &dial):
		return http.StatusBadGateway, fmt.Sprintf("worker %d exited with this request in flight", dial.WorkerID)
	case errors.As(err, &up):
		return http.StatusBadGateway, fmt.Sprintf("worker %d failed before answering: %v (it may have exited or crashed)", up.WorkerID, up.Err)
	default:
		return http.StatusBadGateway, err.Error()
	}
}

func (f *Front) writeError(rw http.ResponseWriter, r *http.Request, err error) {
	status, reason := classify(r.Context().Err() != nil, err, f.bal.QueueTimeout())
	if status == 0 {
		f.log.Debug("client went away", "path", r.URL.Path, "error", err)
		clientGone(r)
		return
	}
	f.log.Warn("request failed", "status", status, "method", r.Method, "path", r.URL.Path, "reason", reason)
	h := rw.Header()
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", strconv.Itoa(1))
	}
	if status == http.StatusGatewayTimeout {
		h.Set("Connection", "close")
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	rw.WriteHeader(status)
	fmt.Fprintf(rw, "warmpool: %s\n", reason)
}
