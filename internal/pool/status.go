package pool

import (
	"time"

	"warmpool/internal/learn"
	"warmpool/internal/pyfork"
	"warmpool/internal/worker"
)

// WorkerStatus is one worker as the status endpoint shows it.
type WorkerStatus struct {
	ID         int          `json:"id"`
	PID        int          `json:"pid"`
	State      worker.State `json:"state"`
	Generation int          `json:"generation"`
	StartedAt  time.Time    `json:"started_at"`
	AdmittedAt *time.Time   `json:"admitted_at,omitempty"`
	Served     int64        `json:"requests_served"`
	// MaxRequests is its max_requests with jitter (0: none): a worker due for recycling serves
	// on until its replacement is warm, so Served may pass it.
	MaxRequests int64   `json:"max_requests,omitempty"`
	InFlight    int64   `json:"in_flight"`
	Recycle     string  `json:"recycle_pending,omitempty"`
	WarmupTime  float64 `json:"warmup_seconds,omitempty"`
	// BootCPU is the CPU time its processes used from spawn (or fork) to admission.
	BootCPU float64 `json:"boot_cpu_seconds,omitempty"`
	// Origin says how its process was made: "exec" (worker.command), "fork" (from a Python
	// template) or "fresh" (a Python worker started fresh because no template could fork).
	Origin string `json:"origin,omitempty"`
}

// ExitRecord is a worker that is gone, and why.
type ExitRecord struct {
	ID     int       `json:"id"`
	PID    int       `json:"pid"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
	Served int64     `json:"requests_served"`
	// MaxRequests is set for a worker recycled at max_requests: Served minus it is how far
	// past its limit it served while its replacement warmed.
	MaxRequests int64 `json:"max_requests,omitempty"`
}

// Status is a snapshot of the pool.
type Status struct {
	Generation    int            `json:"generation"`
	Desired       int            `json:"desired"`
	Ready         int            `json:"ready"`
	FirstReady    bool           `json:"first_ready"`
	ShuttingDown  bool           `json:"shutting_down"`
	WarmupEnabled bool           `json:"warmup_enabled"`
	WarmupPlan    string         `json:"warmup_plan,omitempty"`
	Workers       []WorkerStatus `json:"workers"`
	// Problem says why replacements are failing, empty when they are not.
	Problem  string `json:"problem,omitempty"`
	Failures int    `json:"consecutive_failures"`
	// NextTry is when the next worker starts, while starts are backed off after failures.
	NextTry     *time.Time   `json:"next_try,omitempty"`
	RecentExits []ExitRecord `json:"recent_exits"`
	// Python is set for a [worker.python] app; Templates are its template processes.
	Python    bool                    `json:"python,omitempty"`
	Templates []pyfork.TemplateStatus `json:"templates,omitempty"`
	Learning  bool                    `json:"learning"`
	// Learned is what traffic taught the warm-up (warmup.learn); nil when it is off.
	Learned *learn.Status `json:"learned,omitempty"`
}

const recentExits = 20
