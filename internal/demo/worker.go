package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"warmpool/internal/worker"
)

// ServeWorker runs the demo app on the socket or port warmpool gave it, until SIGTERM.
func ServeWorker(socket, port string, coldCost, workCost time.Duration, coldPaths map[string]time.Duration) error {
	var ln net.Listener
	var err error
	switch {
	case socket != "":
		_ = os.Remove(socket)
		ln, err = net.Listen("unix", socket)
	case port != "":
		ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	default:
		ln, err = worker.ListenFromEnv()
	}
	if err != nil {
		return fmt.Errorf("demo worker: %w", err)
	}
	srv := &http.Server{Handler: NewApp(coldCost, workCost, coldPaths), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(ln) }()
	select {
	case err := <-errs:
		return fmt.Errorf("demo worker: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("demo worker shutdown: %w", err)
	}
	if err := <-errs; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("demo worker: %w", err)
	}
	return nil
}
