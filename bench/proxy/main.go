// Command proxy measures warmpool's own cost as a proxy next to nginx and HAProxy, each in front
// of the same two trivial workers (bench/upstream, a 64-byte body) on loopback, and against
// the workers reached directly:
//
//	go run ./bench/proxy      # needs wrk, nginx and HAProxy: apt-get install wrk nginx-light haproxy
//
// Closed loop: wrk -t2 -c64, median of -runs runs, with the proxy's CPU seconds per request.
// Open loop: -rate requests per second, P50 and P99 measured from each request's schedule.
// Results: bench/results/proxy.md and bench/results/proxy.svg.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"warmpool/bench/benchutil"
	"warmpool/bench/loadgen"
)

type options struct {
	duration time.Duration // per wrk run
	runs     int
	rate     int
	loopFor  time.Duration // open-loop duration
	out      string
}

type result struct {
	name       string
	skipped    string
	rps        float64
	cpuPerReq  time.Duration // proxy CPU per request (0 for direct)
	p50, p99   time.Duration
	openErrors int
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "each closed-loop wrk run")
	flag.IntVar(&o.runs, "runs", 3, "closed-loop runs per target (the median is kept)")
	flag.IntVar(&o.rate, "rate", 2000, "open-loop requests per second")
	flag.DurationVar(&o.loopFor, "open-loop", 5*time.Second, "open-loop duration")
	flag.StringVar(&o.out, "out", "bench/results/proxy", "results path without extension (.md and .svg); empty: none")
	flag.Parse()
	results, err := run(context.Background(), o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy bench:", err)
		os.Exit(1)
	}
	md := renderMarkdown(o, results)
	fmt.Print(md)
	if o.out != "" {
		err := benchutil.WriteResult(o.out+".md", md)
		if err == nil {
			err = benchutil.WriteResult(o.out+".svg", renderSVG(results))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "proxy bench:", err)
			os.Exit(1)
		}
	}
}

func run(ctx context.Context, o options, logw io.Writer) ([]result, error) {
	if _, err := exec.LookPath("wrk"); err != nil {
		return nil, fmt.Errorf("wrk is needed: apt-get install wrk")
	}
	dir, err := os.MkdirTemp("", "warmpool-proxybench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	h := &harness{dir: dir, log: logw, warmpoolBin: filepath.Join(dir, "warmpool"), upstreamBin: filepath.Join(dir, "upstream")}
	defer h.close()
	for bin, pkg := range map[string]string{h.warmpoolBin: "./cmd/warmpool", h.upstreamBin: "./bench/upstream"} {
		if err := benchutil.Build(ctx, bin, pkg); err != nil {
			return nil, err
		}
	}
	for range 2 {
		addr := h.freeAddr()
		_, port, _ := splitPort(addr)
		if _, err := h.spawn("upstream", []string{h.upstreamBin, "--port", port}, ""); err != nil {
			return nil, err
		}
		if err := h.waitListening(addr); err != nil {
			return nil, err
		}
		h.workers = append(h.workers, addr)
	}
	var results []result
	for _, t := range targets {
		r := result{name: t.name}
		if t.needs != "" {
			if _, err := exec.LookPath(t.needs); err != nil {
				r.skipped = t.needs + " is not installed (apt-get install " + map[string]string{"nginx": "nginx-light", "haproxy": "haproxy"}[t.needs] + ")"
				fmt.Fprintf(logw, "proxy bench: %s skipped: %s\n", t.name, r.skipped)
				results = append(results, r)
				continue
			}
		}
		fmt.Fprintf(logw, "proxy bench: %s...\n", t.name)
		addr, p, err := t.start(h)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
		if _, err := runWrk(ctx, addr, time.Second); err != nil { // warm the connections
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
		var rpss []float64
		var cpus []time.Duration
		for range max(o.runs, 1) {
			var before time.Duration
			if p != nil {
				before = benchutil.CPU(p.cmd.Process.Pid, true)
			}
			rps, err := runWrk(ctx, addr, o.duration)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t.name, err)
			}
			rpss = append(rpss, rps)
			if p != nil {
				used := benchutil.CPU(p.cmd.Process.Pid, true) - before
				cpus = append(cpus, time.Duration(float64(used)/(rps*o.duration.Seconds())))
			}
		}
		slices.Sort(rpss)
		r.rps = rpss[len(rpss)/2]
		if len(cpus) > 0 {
			slices.Sort(cpus)
			r.cpuPerReq = cpus[len(cpus)/2]
		}
		lr := loadgen.Run(ctx, "http://"+addr+"/", o.rate, o.loopFor, 10*time.Second)
		r.p50, r.p99, _ = loadgen.Percentiles(lr.Latencies)
		r.openErrors = lr.Errors
		if p != nil {
			p.stop()
		}
		results = append(results, r)
	}
	return results, nil
}

func splitPort(addr string) (string, string, error) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("no port in %q", addr)
}
