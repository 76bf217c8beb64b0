package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"warmpool/internal/app"
	"warmpool/internal/demo"
)

type demoCommand struct {
	log    *slog.Logger
	stdout io.Writer
}

func (c *demoCommand) Run(ctx context.Context, args []string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable for the demo workers: %w", err)
	}
	cfg := demo.Config(exe)
	fs := newFlagSet("demo")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "public address")
	fs.StringVar(&cfg.AdminListen, "admin-listen", cfg.AdminListen, "admin address")
	fs.IntVar(&cfg.Worker.MaxRequests, "max-requests", cfg.Worker.MaxRequests, "recycle each worker after this many requests")
	fs.BoolVar(&cfg.Warmup.Enabled, "warmup", true, "warm new workers before admitting them (false shows what other servers do)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !cfg.Warmup.Enabled {
		cfg.Warmup.Requests = nil
	}
	if cfg.Worker.MaxRequestsJitter >= cfg.Worker.MaxRequests {
		cfg.Worker.MaxRequestsJitter = cfg.Worker.MaxRequests / 3
	}
	l := cfg.Loaded()
	if err := l.Validate(); err != nil {
		return usageError{err.Error()}
	}
	// The addresses are tried before the banner: a second demo says why it cannot start
	// instead of printing instructions for the first.
	for _, addr := range []string{cfg.Listen, cfg.AdminListen} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%w (another warmpool demo running? pick free ports with --listen and --admin-listen)", err)
		}
		ln.Close()
	}
	fmt.Fprintf(c.stdout, `warmpool demo: 2 demo workers whose first request burns 300ms of CPU under a lock.
  Try:       curl -si http://%[1]s/
  Load:      for i in $(seq 2000); do curl -s -o /dev/null -w 'X-Cold: %%header{x-cold}\n' http://%[1]s/; done | sort | uniq -c
             (X-Cold: 1 would be a request that met a cold worker; there are none)
  Recycles:  curl -s http://%[2]s/metrics | grep '^warmpool_recycles_total'
  Status:    curl -s http://%[2]s/status     (a page: http://%[2]s/)
Workers recycle every ~%[3]d requests; each replacement is warmed before it gets traffic. Ctrl-C stops.
`, cfg.Listen, cfg.AdminListen, cfg.Worker.MaxRequests)
	return app.Run(ctx, l, nil, c.log)
}

type demoWorkerCommand struct{}

func (c *demoWorkerCommand) Run(_ context.Context, args []string) error {
	fs := newFlagSet("demo-worker")
	socket := fs.String("socket", "", "unix socket to serve on")
	port := fs.String("port", "", "loopback port to serve on")
	cold := fs.Duration("cold", 300*time.Millisecond, "CPU burnt by the first request, under a process-wide lock")
	work := fs.Duration("work", time.Millisecond, "CPU burnt by every request")
	report := fs.Duration("report-cold", 200*time.Millisecond, "CPU burnt by the first request to /report (its own lazy init)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return demo.ServeWorker(*socket, *port, *cold, *work, map[string]time.Duration{"/report": *report})
}
