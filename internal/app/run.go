package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"warmpool/internal/config"
	"warmpool/internal/sdnotify"
)

// Run serves cfg until SIGTERM or SIGINT (or ctx ends), then shuts down gracefully. SIGHUP
// rolls the workers to a new generation; SIGTTIN and SIGTTOU add and remove a worker. READY=1 goes to NOTIFY_SOCKET once the pool is ready.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU)
	defer signal.Stop(signals)

	s := New(cfg, log)
	if err := s.Start(); err != nil {
		return err
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
				log.Info("SIGHUP: reloading workers")
				s.Reload()
				continue
			case syscall.SIGTTIN:
				s.Pool().Scale(+1)
				continue
			case syscall.SIGTTOU:
				s.Pool().Scale(-1)
				continue
			}
			log.Info("shutting down", "signal", sig.String())
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
	grace := cfg.Worker.GracefulTimeout.Duration + 5*time.Second
	closeCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := s.Close(closeCtx); err != nil && runErr == nil {
		runErr = fmt.Errorf("shutdown: %w", err)
	}
	log.Info("warmpool stopped")
	return runErr
}
