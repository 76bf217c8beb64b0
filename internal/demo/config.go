package demo

import (
	"time"

	"warmpool/internal/config"
)

// Config is the configuration `warmpool demo` runs: two workers of four threads, each
// recycled every few hundred requests, warmed by four concurrent requests to /.
func Config(executable string) config.Config {
	cfg := config.Default()
	cfg.Worker.Command = []string{executable, "demo-worker", "--socket", "{socket}"}
	cfg.Worker.Count = 2
	cfg.Worker.Concurrency = 4
	cfg.Worker.MaxRequests = 300
	cfg.Worker.MaxRequestsJitter = 100
	cfg.Worker.GracefulTimeout = config.Duration{Duration: 10 * time.Second}
	cfg.Warmup.Requests = []config.WarmupRequest{{
		Method: "GET", Path: "/", Headers: map[string]string{"Host": "localhost"}, Expect: []int{200}, Repeat: 4,
	}}
	return cfg
}
