package main

import (
	"context"
	"time"

	"warmpool/bench/benchutil"
	"warmpool/internal/worker"
)

// instance is one running warmpool.
type instance struct{ *benchutil.Instance }

func startInstance(ctx context.Context, wp, tmp, config, addr, admin string) (*instance, error) {
	in, err := benchutil.StartInstance(ctx, wp, tmp, config, addr, admin)
	if err != nil {
		return nil, err
	}
	return &instance{in}, nil
}

// status is what the bench reads of /status.
type status struct {
	Workers []struct {
		ID        int       `json:"id"`
		PID       int       `json:"pid"`
		State     string    `json:"state"`
		Served    int64     `json:"requests_served"`
		Origin    string    `json:"origin"`
		StartedAt time.Time `json:"started_at"`
	} `json:"workers"`
	Templates []struct {
		PID   int    `json:"pid"`
		State string `json:"state"`
	} `json:"templates"`
}

func (in *instance) status() (status, error) {
	var st status
	err := benchutil.Status(in.Admin, &st)
	return st, err
}

// templatePID is the ready template's pid; 0 when there is none.
func (st status) templatePID() int {
	for _, t := range st.Templates {
		if t.State == "ready" {
			return t.PID
		}
	}
	return 0
}

// treePSS is the proportional memory of pid and its descendants (a gunicorn worker's arbiter and
// its worker process), from /proc/PID/smaps_rollup.
func treePSS(pid int) int64 {
	total := pss(pid)
	for _, kid := range benchutil.Children(pid) {
		total += treePSS(kid)
	}
	return total
}

func pss(pid int) int64 {
	_, p, _ := worker.ProcessMemory(pid)
	return p
}
