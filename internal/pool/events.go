package pool

import (
	"time"

	"warmpool/internal/config"

	"warmpool/internal/warmup"
	"warmpool/internal/worker"
)

// event is what worker goroutines, timers and callers send to the pool's loop: one of the
// types below, and nothing else (the loop's switch handles each).
type event interface{ isEvent() }

func (booted) isEvent()          {}
func (exited) isEvent()          {}
func (due) isEvent()             {}
func (stuck) isEvent()           {}
func (hung) isEvent()            {}
func (refusing) isEvent()        {}
func (configRejected) isEvent()  {}
func (reload) isEvent()          {}
func (scale) isEvent()           {}
func (reconfigure) isEvent()     {}
func (templateChanged) isEvent() {}
func (rebuild) isEvent()         {}
func (rebuilt) isEvent()         {}

// The events.
type (
	booted struct {
		w      *worker.Worker
		result warmup.Result
		err    error
	}
	exited struct{ w *worker.Worker }
	due    struct {
		w      *worker.Worker
		reason string
		stage  dueStage
	}
	stuck struct{ w *worker.Worker }
	hung  struct{ w *worker.Worker }
	// refusing: the front found nothing listening on the worker's socket.
	refusing struct{ w *worker.Worker }
	// configRejected: a reload's configuration was refused, for this reason.
	configRejected struct{ why string }
	reload         struct{}
	// templateChanged: a Python template changed state; the status is published anew.
	templateChanged struct{}
	scale           struct{ delta int }
	// rebuild: the learner has something new for the template.
	rebuild struct{}
	// rebuilt: a rebuild's template of generation gen is ready (err nil) or failed.
	rebuilt struct {
		gen int
		err error
	}
	// reconfigure applies a new configuration and rolls the workers to it.
	reconfigure struct {
		cfg     *config.Config
		summary string
	}
)

// Recycle reasons, as they appear in logs and status.
const (
	ReasonMaxRequests = "max_requests"
	ReasonMaxLifetime = "max_lifetime"
	ReasonMaxRSS      = "max_rss"
	ReasonReload      = "reload"
	ReasonScaleDown   = "scale down"
	ReasonHung        = "hung: a request passed proxy.request_timeout"
	ReasonRefused     = "refused connections: nothing listens on its socket"
	ReasonRebuild     = "template rebuilt with what traffic taught"
)

// dueStage is how far a worker due for recycling is past its limit.
type dueStage int

const (
	// dueEarly: its replacement starts now, so as to be warm by the limit (max_requests' lead).
	dueEarly dueStage = iota
	// dueAtLimit: it reached its limit; its replacement is needed now.
	dueAtLimit
	// dueAtCeiling: it reached max_requests_ceiling and left rotation: it is drained even though
	// its replacement is not ready.
	dueAtCeiling
)

// crashGrace is how long a worker that served no request must have been ready for its crash
// not to count toward the restart backoff (one that served is replaced at once).
const crashGrace = 10 * time.Second
