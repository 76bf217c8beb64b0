package worker

import (
	"errors"
	"net"
	"os"
)

// Environment variables a worker process receives.
const (
	EnvWorkerID   = "WARMPOOL_WORKER_ID"
	EnvGeneration = "WARMPOOL_GENERATION"
	EnvSocket     = "WARMPOOL_SOCKET"
	EnvPort       = "PORT"
	EnvNotify     = "NOTIFY_SOCKET"
)

// WarmupHeader marks the private warm-up requests, so an app can tell them apart.
const WarmupHeader = "X-Warmpool-Warmup"

// ListenFromEnv opens the listener warmpool assigned to this process: the unix socket in
// WARMPOOL_SOCKET, else 127.0.0.1:$PORT. It is for worker programs written in Go.
func ListenFromEnv() (net.Listener, error) {
	if path := os.Getenv(EnvSocket); path != "" {
		_ = os.Remove(path)
		return net.Listen("unix", path)
	}
	if port := os.Getenv(EnvPort); port != "" {
		return net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	}
	return nil, errors.New("neither " + EnvSocket + " nor " + EnvPort + " is set: not started by warmpool?")
}
