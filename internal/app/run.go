package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"warmpool/internal/guard"

	"warmpool/internal/config"
	"warmpool/internal/sdnotify"
)

// Reloader re-reads and validates the configuration for SIGHUP.
type Reloader func() (*config.Loaded, error)

// Run serves l until SIGTERM or SIGINT (or ctx ends), then shuts down gracefully. SIGHUP
// re-reads the configuration with reload (when not nil) and rolls the workers to a new
// generation; an invalid configuration is logged with all its errors and changes nothing.
// SIGTTIN and SIGTTOU add and remove a worker. READY=1 goes to NOTIFY_SOCKET once the pool is
// ready.
func Run(ctx context.Context, l *config.Loaded, reload Reloader, log *slog.Logger) error {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU)
	defer signal.Stop(signals)

	for _, w := range l.Warnings() {
		log.Warn("configuration: " + w)
	}
	// No process of a worker outlives warmpool (internal/guard): every worker, and what it
	// starts, carries this instance's mark, which a keeper process kills once warmpool ends
	// however it ends; and orphans reparented to warmpool are reaped.
	instance := guard.NewInstance()
	keeper := guard.New(instance)
	if err := keeper.Start(); err != nil {
		log.Warn("no keeper process: a worker's descendants could outlive warmpool if it is killed", "error", err)
	}
	defer keeper.Close()
	reaper := guard.NewReaper()
	if err := reaper.Start(); err != nil {
		log.Warn("not a child subreaper: orphans of workers are reaped by init, not warmpool", "error", err)
	} else {
		defer reaper.Close()
	}
	s := New(l, log, withWorkerEnv(guard.EnvInstance+"="+instance))
	if err := s.Start(); err != nil {
		return err
	}
	if dir, owned := s.SocketDir(); owned {
		if err := keeper.RemoveAtEnd(dir); err != nil {
			log.Warn("the keeper process cannot be told of the socket directory", "error", err)
		}
	}
	firstReady := s.Pool().FirstReady()
	var runErr error
loop:
	for {
		select {
		case <-firstReady:
			firstReady = nil
			if err := sdnotify.Notify(sdnotify.Ready); err != nil {
				log.Warn("could not tell systemd we are ready", "error", err)
			}
		case sig := <-signals:
			switch sig {
			case syscall.SIGHUP:
				onHangup(s, reload, log)
				continue
			case syscall.SIGTTIN:
				s.Pool().Scale(+1)
				continue
			case syscall.SIGTTOU:
				s.Pool().Scale(-1)
				continue
			}
			log.Info("shutting down", "signal", sig.String())
			s.delayShutdown(signals, log)
			break loop
		case err := <-s.Errors():
			runErr = err
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	_ = sdnotify.Notify(sdnotify.Stopping)
	// In-flight requests get the graceful timeout; a little more lets workers exit cleanly.
	grace := s.cfg.Worker.GracefulTimeout.Duration + 5*time.Second
	closeCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := s.Close(closeCtx); err != nil && runErr == nil {
		runErr = fmt.Errorf("shutdown: %w", err)
	}
	log.Info("warmpool stopped")
	return runErr
}

// onHangup re-reads the configuration and applies it, or keeps the running one when the new
// one is invalid; either way it says so.
func onHangup(s *Server, reload Reloader, log *slog.Logger) {
	if reload == nil {
		log.Info("SIGHUP: rolling every worker to a new generation")
		s.Reload()
		return
	}
	l, err := reload()
	if err == nil {
		err = s.Apply(l)
	}
	if err != nil {
		log.Error("SIGHUP: the new configuration is rejected; the running one stays in force and no worker is replaced",
			"errors", err.Error())
		s.Pool().ReportConfigRejected("SIGHUP at " + time.Now().Format(time.TimeOnly) + ": the new configuration is rejected, the running one stays in force: " +
			strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	log.Info("SIGHUP: configuration re-read; rolling every worker to it, warm-first", "warmup", l.WarmupSummary())
}

// delayShutdown keeps serving for shutdown_delay after the stop signal, with /readyz already
// answering 503, so that load balancers and Kubernetes endpoints stop sending before warmpool
// stops accepting (no preStop sleep needed). A second SIGTERM or SIGINT ends the wait.
func (s *Server) delayShutdown(signals <-chan os.Signal, log *slog.Logger) {
	d := s.cfg.ShutdownDelay.Duration
	if d <= 0 {
		return
	}
	s.admin.SetDraining()
	log.Info("shutdown: /readyz answers 503 now; serving on for shutdown_delay before stopping", "shutdown_delay", d)
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case sig := <-signals:
			if sig == syscall.SIGTERM || sig == syscall.SIGINT {
				log.Info("shutdown: a second signal ends shutdown_delay", "signal", sig.String())
				return
			}
		}
	}
}
