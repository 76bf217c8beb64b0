package diagnose

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"warmpool/internal/config"
	"warmpool/internal/pool"
	"warmpool/internal/pyfork"
	"warmpool/internal/warmup"
	"warmpool/internal/worker"
)

// Options of a diagnosis.
type Options struct {
	Config *config.Config
	// Paths are measured too (GET), besides the warm-up plan's requests.
	Paths []string
	// Host is the Host header of Paths; empty means the plan's first Host, else "localhost".
	Host string
	// SteadySamples per path for the steady latency (median); 0 means 7.
	SteadySamples int
	// Env is the workers' base environment; nil means this process's.
	Env    []string
	Logger *slog.Logger
}

// Probe is one request that is measured.
type Probe struct {
	Method, Path, Host string
	Header             http.Header
	Body               string
	FromPlan           bool
}

func (p Probe) String() string { return p.Method + " " + p.Path + " (Host " + p.Host + ")" }

// Measure is one timed request.
type Measure struct {
	Took   time.Duration
	Status int
	Err    string
}

// Row is the verdict for one probe.
type Row struct {
	Probe
	Cold, Warmed Measure
	Steady       time.Duration
	Covered      bool
}

// Report is the outcome.
type Report struct {
	Rows          []Row
	WarmupEnabled bool
	WarmupErr     error
	Warmup        warmup.Result
	Factor        float64
	Floor         time.Duration
}

// Uncovered counts the paths the warm-up plan leaves cold.
func (r *Report) Uncovered() int {
	n := 0
	for _, row := range r.Rows {
		if !row.Covered {
			n++
		}
	}
	return n
}

// Run performs the diagnosis with two real workers, one after the other.
func Run(ctx context.Context, o Options) (*Report, error) {
	cfg := o.Config
	if o.Env == nil {
		o.Env = config.ChildEnv(os.Environ())
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	samples := o.SteadySamples
	if samples <= 0 {
		samples = 7
	}
	dir, err := os.MkdirTemp("", "warmpool-diagnose-")
	if err != nil {
		return nil, fmt.Errorf("diagnose: %w", err)
	}
	defer os.RemoveAll(dir)
	if cfg.Worker.IsPython() {
		// A Python app's workers are measured as fresh processes of the helper: what a cold
		// worker costs is the question, and a fork would hide it.
		if _, err := pyfork.WriteHelper(dir); err != nil {
			return nil, fmt.Errorf("diagnose: %w", err)
		}
	}

	plan := warmup.NewPlan(cfg)
	probes := probesOf(plan, o.Paths, o.Host)
	rep := &Report{WarmupEnabled: cfg.Warmup.Enabled, Factor: cfg.Telemetry.WarmupCheckFactor, Floor: cfg.Telemetry.WarmupCheckFloor.Duration}

	// Worker 1: no warm-up. Its first requests are cold; later ones give the steady latency.
	cold, err := boot(ctx, cfg, 1, dir, o)
	if err != nil {
		return nil, err
	}
	colds := make([]Measure, len(probes))
	for i, p := range probes {
		colds[i] = measure(ctx, cold, p)
	}
	steady := make([]time.Duration, len(probes))
	for i, p := range probes {
		var took []time.Duration
		for range samples {
			took = append(took, measure(ctx, cold, p).Took)
		}
		slices.Sort(took)
		steady[i] = took[len(took)/2]
	}
	stop(cold)

	// Worker 2: the warm-up plan as warmpool runs it, then the same first requests.
	warm, err := boot(ctx, cfg, 2, dir, o)
	if err != nil {
		return nil, err
	}
	if cfg.Warmup.Enabled {
		tctx, cancel := context.WithTimeout(ctx, cfg.Warmup.Timeout.Duration)
		rep.Warmup, rep.WarmupErr = plan.Run(tctx, warm.Transport())
		cancel()
	}
	for i, p := range probes {
		w := measure(ctx, warm, p)
		row := Row{Probe: p, Cold: colds[i], Warmed: w, Steady: steady[i]}
		row.Covered = !(float64(w.Took) > rep.Factor*float64(steady[i]) && w.Took-steady[i] > rep.Floor)
		rep.Rows = append(rep.Rows, row)
	}
	stop(warm)
	return rep, nil
}

// probesOf lists the plan's distinct requests, then the extra paths.
func probesOf(plan *warmup.Plan, paths []string, host string) []Probe {
	var out []Probe
	seen := map[string]bool{}
	for _, r := range plan.Requests {
		p := Probe{Method: r.Method, Path: r.Path, Host: r.Host, Header: r.Header, Body: r.Body, FromPlan: true}
		if p.Host == "" {
			p.Host = "localhost"
		}
		if !seen[p.String()] {
			seen[p.String()] = true
			out = append(out, p)
		}
		if host == "" {
			host = p.Host
		}
	}
	if host == "" {
		host = "localhost"
	}
	for _, path := range paths {
		p := Probe{Method: http.MethodGet, Path: path, Host: host, Header: http.Header{}}
		if !seen[p.String()] {
			seen[p.String()] = true
			out = append(out, p)
		}
	}
	return out
}

func boot(ctx context.Context, cfg *config.Config, id int, dir string, o Options) (*worker.Worker, error) {
	w := worker.New(pool.WorkerSpec(cfg, id, 1, dir, o.Env, o.Logger))
	if err := w.Start(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Warmup.Timeout.Duration)
	defer cancel()
	if ready := w.NotifyReady(); ready != nil {
		select {
		case <-ready:
		case <-w.Done():
		case <-ctx.Done():
		}
	}
	if err := w.WaitListening(ctx); err != nil {
		stop(w)
		return nil, fmt.Errorf("worker %d: %w", id, err)
	}
	return w, nil
}

func stop(w *worker.Worker) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.Stop(ctx)
	w.Wait()
}

func measure(ctx context.Context, w *worker.Worker, p Probe) Measure {
	var body io.Reader
	if p.Body != "" {
		body = strings.NewReader(p.Body)
	}
	req, err := http.NewRequestWithContext(ctx, p.Method, "http://worker"+p.Path, body)
	if err != nil {
		return Measure{Err: err.Error()}
	}
	for k, v := range p.Header {
		req.Header[k] = v
	}
	req.Host = p.Host
	start := time.Now()
	resp, err := w.Transport().RoundTrip(req)
	if err != nil {
		return Measure{Took: time.Since(start), Err: err.Error()}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return Measure{Took: time.Since(start), Status: resp.StatusCode}
}
