// Command seed is the seed-scenario benchmark: the demo app's cold start (300 ms of CPU under a
// process-wide lock on each worker's first request), 2 workers x 4 threads, max_requests 100,
// under open-loop constant-rate load. It runs warmpool three ways in one go: warm-up on, warm-up
// off (what today's servers give: a fresh worker takes traffic as soon as it listens), and no
// recycling (the floor), and prints P50, P99, max, errors and requests that met a cold worker.
//
//	go run ./bench/seed                      # 30 s per scenario, results in bench/results/seed.md
//	go run ./bench/seed -duration 5s -rate 100
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"warmpool/bench/benchutil"
	"warmpool/bench/loadgen"
)

type options struct {
	duration    time.Duration
	rounds      int
	rate        int
	maxRequests int
	out         string
	scenarios   []string
}

type scenario struct {
	name, note  string
	warmup      bool
	maxRequests int
}

type result struct {
	scenario
	sent, errors, cold int
	p50, p99, max      time.Duration
	roundP99           []time.Duration
	recycles           int
	firstError         string
	latencies          []time.Duration
}

// merge adds one round's result to the scenario's total.
func (r *result) merge(round result) {
	r.sent += round.sent
	r.errors += round.errors
	r.cold += round.cold
	r.recycles += round.recycles
	if r.firstError == "" {
		r.firstError = round.firstError
	}
	r.roundP99 = append(r.roundP99, round.p99)
	r.latencies = append(r.latencies, round.latencies...)
	r.p50, r.p99, r.max = loadgen.Percentiles(r.latencies)
}

func main() {
	var o options
	var only string
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "load duration per scenario, split over the rounds")
	flag.IntVar(&o.rounds, "rounds", 6, "rounds; each runs every scenario once, interleaved, so noise hits all alike")
	flag.IntVar(&o.rate, "rate", 200, "requests per second (open loop)")
	flag.IntVar(&o.maxRequests, "max-requests", 100, "worker.max_requests for the recycling scenarios")
	flag.StringVar(&o.out, "out", "bench/results/seed.md", "markdown results file (empty: none)")
	flag.StringVar(&only, "scenarios", "warmup-on,warmup-off,no-recycling", "scenarios to run, comma-separated")
	flag.Parse()
	o.scenarios = strings.Split(only, ",")
	results, err := run(context.Background(), o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
	table := render(o, results)
	fmt.Print(table)
	if err := benchutil.WriteResult(o.out, table); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func scenarios(o options) []scenario {
	all := []scenario{
		{"warmup-on", "warmpool: replacement warmed privately, then admitted", true, o.maxRequests},
		{"warmup-off", "fresh worker admitted as soon as it listens (today's servers)", false, o.maxRequests},
		{"no-recycling", "floor: the same pool, never recycled", true, 0},
	}
	var out []scenario
	for _, s := range all {
		if slices.Contains(o.scenarios, s.name) {
			out = append(out, s)
		}
	}
	return out
}

func run(ctx context.Context, o options, logw io.Writer) ([]result, error) {
	dir, err := os.MkdirTemp("", "warmpool-seed-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "warmpool")
	if err := benchutil.Build(ctx, bin, "./cmd/warmpool"); err != nil {
		return nil, err
	}
	list := scenarios(o)
	results := make([]result, len(list))
	rounds := max(o.rounds, 1)
	per := o.duration / time.Duration(rounds)
	for round := 1; round <= rounds; round++ {
		for i, s := range list {
			fmt.Fprintf(logw, "seed: round %d/%d: %s for %s at %d req/s...\n", round, rounds, s.name, per, o.rate)
			r, err := runScenario(ctx, bin, dir, s, o, per)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			results[i].scenario = s
			results[i].merge(r)
		}
	}
	return results, nil
}

func writeConfig(path, bin, listen, admin string, s scenario) error {
	jitter := s.maxRequests / 10
	warmup := `enabled = true
timeout = "30s"
[[warmup.request]]
path = "/"
headers = { Host = "localhost" }
expect = [200]
repeat = 4`
	if !s.warmup {
		warmup = "enabled = false"
	}
	cfg := fmt.Sprintf(`listen = %q
admin_listen = %q

[worker]
command = [%q, "demo-worker", "--socket", "{socket}"]
count = 2
concurrency = 4
max_requests = %d
max_requests_jitter = %d
graceful_timeout = "10s"

[proxy]
queue_timeout = "30s"

[warmup]
%s
`, listen, admin, bin, s.maxRequests, jitter, warmup)
	return os.WriteFile(path, []byte(cfg), 0o644)
}

func runScenario(ctx context.Context, bin, dir string, s scenario, o options, d time.Duration) (result, error) {
	res := result{scenario: s}
	listen, admin := benchutil.FreeAddr(), benchutil.FreeAddr()
	cfgPath := filepath.Join(dir, s.name+".toml")
	if err := writeConfig(cfgPath, bin, listen, admin, s); err != nil {
		return res, err
	}
	cmd := exec.CommandContext(ctx, bin, "run", "--config", cfgPath)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return res, err
	}
	if err := cmd.Start(); err != nil {
		return res, err
	}
	defer cmd.Process.Kill()
	ready := make(chan struct{})
	var output []string
	var recycles int
	var mu sync.Mutex
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			if len(output) < 50 {
				output = append(output, line)
			}
			mu.Unlock()
			if strings.Contains(line, `msg="pool ready"`) {
				once.Do(func() { close(ready) })
			}
			if strings.Contains(line, `msg="worker stopped"`) && strings.Contains(line, "recycled") {
				mu.Lock()
				recycles++
				mu.Unlock()
			}
		}
	}()
	select {
	case <-ready:
	case <-logDone: // warmpool exited
		mu.Lock()
		defer mu.Unlock()
		return res, fmt.Errorf("warmpool exited before it was ready:\n%s", strings.Join(output, "\n"))
	case <-time.After(30 * time.Second):
		return res, errors.New("warmpool not ready within 30s")
	}

	lr := loadgen.Run(ctx, "http://"+listen+"/", o.rate, d, 30*time.Second)
	res.sent, res.cold, res.errors, res.firstError = len(lr.Latencies), lr.Cold, lr.Errors, lr.FirstErr
	res.latencies = lr.Latencies
	res.p50, res.p99, res.max = loadgen.Percentiles(lr.Latencies)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return res, err
	}
	<-logDone
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("warmpool exit: %w", err)
	}
	mu.Lock()
	res.recycles = recycles
	mu.Unlock()
	return res, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func render(o options, results []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Seed scenario: cold starts under recycling\n\n")
	fmt.Fprintf(&b, "Demo app: 300 ms of CPU under a process-wide lock on each process's first request, 1 ms per request after.\n")
	fmt.Fprintf(&b, "2 workers x 4 threads, max_requests %d (+10%% jitter), open-loop %d req/s for %s per scenario,\n", o.maxRequests, o.rate, o.duration)
	fmt.Fprintf(&b, "in %d interleaved rounds (each round runs every scenario once) so machine noise hits all scenarios alike.\n\n", max(o.rounds, 1))
	fmt.Fprintf(&b, "Machine: %s, %d CPUs, %s/%s, %s. Run: %s. Command: `go run ./bench/seed -duration %s -rate %d -rounds %d`\n\n",
		benchutil.CPUModel(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 MST"), o.duration, o.rate, max(o.rounds, 1))
	fmt.Fprintf(&b, "| scenario | requests | errors | met a cold worker | recycles | P50 | P99 | max | P99 per round |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	var floor time.Duration
	for _, r := range results {
		if r.name == "no-recycling" {
			floor = r.p99
		}
	}
	for _, r := range results {
		var rounds []string
		for _, p := range r.roundP99 {
			rounds = append(rounds, ms(p))
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %s | %s | %s | %s |\n", r.name, r.sent, r.errors, r.cold, r.recycles, ms(r.p50), ms(r.p99), ms(r.max), strings.Join(rounds, ", "))
	}
	b.WriteString("\n")
	for _, r := range results {
		fmt.Fprintf(&b, "- %s: %s", r.name, r.note)
		if floor > 0 && r.name != "no-recycling" {
			fmt.Fprintf(&b, "; P99 = %.2fx the no-recycling P99", float64(r.p99)/float64(floor))
		}
		if r.firstError != "" {
			fmt.Fprintf(&b, "; first error: %s", r.firstError)
		}
		b.WriteString("\n")
	}
	return b.String()
}
