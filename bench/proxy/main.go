// Command proxy measures warmpool's own cost as a proxy next to nginx and HAProxy, each in front
// of the same two trivial workers (bench/upstream, a 64-byte body) on loopback, against the
// workers reached directly, and against two relay floors (bench/gorelay, a goroutine per
// connection; bench/eprelay, an epoll loop per CPU as nginx):
//
//	go run ./bench/proxy      # needs wrk, nginx and HAProxy: apt-get install wrk nginx-light haproxy
//
// Closed loop: wrk -t2 -c64, median of -runs rounds, with the proxy's CPU seconds per request
// and the machine's idle share of CPU.
// Open loop: -rate requests per second, P50 and P99 measured from each request's schedule,
// median of the rounds. Each round measures every target in turn.
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
	"strings"
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
	// connClose sends "Connection: close" with every closed-loop request: each request pays
	// for a new connection. The open loop is skipped.
	connClose bool
	// only, when set, names the targets to run (the others are reported as skipped).
	only []string
}

type result struct {
	name      string
	skipped   string
	rps       float64
	cpuPerReq time.Duration // proxy CPU per request (0 for direct)
	// workerCPUPerReq is the two workers' CPU per request: a proxy changes it by how it
	// spreads and paces their requests.
	workerCPUPerReq time.Duration
	rounds          []float64 // req/s of each round, in round order
	idle            float64   // the machine's idle share of CPU during the closed loop
	p50, p99        time.Duration
	openErrors      int
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "each closed-loop wrk run")
	flag.IntVar(&o.runs, "runs", 3, "closed-loop runs per target (the median is kept)")
	flag.IntVar(&o.rate, "rate", 2000, "open-loop requests per second")
	flag.DurationVar(&o.loopFor, "open-loop", 5*time.Second, "open-loop duration")
	flag.StringVar(&o.out, "out", "", "results path without extension (.md and .svg); default bench/results/proxy, or proxy-close with -connection-close; - for none")
	flag.BoolVar(&o.connClose, "connection-close", false, "a new connection per request (wrk -H 'Connection: close'); no open loop")
	only := flag.String("targets", "", "comma-separated targets to run (default all): direct, gorelay, eprelay, warmpool, nginx, haproxy, warmpool-unix, nginx-unix, baseline")
	baseline := flag.String("baseline", "", "a warmpool binary built from another commit, measured as one more target (key baseline) against the same TCP workers")
	flag.Parse()
	if *baseline != "" {
		targets = append(targets, baselineTarget(*baseline))
	}
	if *only != "" {
		o.only = strings.Split(*only, ",")
	}
	switch {
	case o.out == "-":
		o.out = ""
	case o.out == "" && o.connClose:
		o.out = "bench/results/proxy-close"
	case o.out == "":
		o.out = "bench/results/proxy"
	}
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
			err = benchutil.WriteResult(o.out+".svg", renderSVG(o, results))
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
	h := &harness{dir: dir, log: logw, warmpoolBin: filepath.Join(dir, "warmpool"), upstreamBin: filepath.Join(dir, "upstream"),
		relayBin: filepath.Join(dir, "gorelay"), loopRelayBin: filepath.Join(dir, "eprelay")}
	defer h.close()
	for bin, pkg := range map[string]string{h.warmpoolBin: "./cmd/warmpool", h.upstreamBin: "./bench/upstream", h.relayBin: "./bench/gorelay", h.loopRelayBin: "./bench/eprelay"} {
		if err := benchutil.Build(ctx, bin, pkg); err != nil {
			return nil, err
		}
	}
	for i := range 2 {
		addr := h.freeAddr()
		_, port, _ := splitPort(addr)
		tcpProc, err := h.spawn("upstream", []string{h.upstreamBin, "--port", port}, "")
		if err != nil {
			return nil, err
		}
		sock := filepath.Join(dir, fmt.Sprintf("w%d.sock", i+1))
		unixProc, err := h.spawn("upstream", []string{h.upstreamBin, "--socket", sock}, "")
		if err != nil {
			return nil, err
		}
		h.tcpWorkerPids = append(h.tcpWorkerPids, tcpProc.cmd.Process.Pid)
		h.unixWorkerPids = append(h.unixWorkerPids, unixProc.cmd.Process.Pid)
		if err := h.waitListening("tcp", addr); err != nil {
			return nil, err
		}
		if err := h.waitListening("unix", sock); err != nil {
			return nil, err
		}
		h.workers = append(h.workers, addr)
		h.sockets = append(h.sockets, sock)
	}
	// Every target runs for the whole benchmark and each round measures them one after the
	// other, so that a slow spell of this shared machine hits all of them alike.
	results := make([]result, len(targets))
	addrs := make([]string, len(targets))
	procs := make([]*proc, len(targets))
	for i, t := range targets {
		results[i].name = t.name
		if len(o.only) > 0 && !slices.Contains(o.only, t.key) {
			results[i].skipped = "not in -targets"
			continue
		}
		if t.keepAliveOnly && o.connClose {
			results[i].skipped = "a keep-alive floor only"
			continue
		}
		if t.needs != "" {
			if _, err := exec.LookPath(t.needs); err != nil {
				results[i].skipped = t.needs + " is not installed (apt-get install " + map[string]string{"nginx": "nginx-light", "haproxy": "haproxy"}[t.needs] + ")"
				fmt.Fprintf(logw, "proxy bench: %s skipped: %s\n", t.name, results[i].skipped)
				continue
			}
		}
		if addrs[i], procs[i], err = t.start(h); err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
		if _, err := runWrk(ctx, addrs[i], time.Second, o.connClose); err != nil { // warm the connections
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
	}
	rpss := make([][]float64, len(targets))
	cpus := make([][]time.Duration, len(targets))
	idles := make([][]float64, len(targets))
	workerCPUs := make([][]time.Duration, len(targets))
	p50s := make([][]time.Duration, len(targets))
	p99s := make([][]time.Duration, len(targets))
	for round := range max(o.runs, 1) {
		for i := range targets {
			if results[i].skipped != "" {
				continue
			}
			fmt.Fprintf(logw, "proxy bench: round %d, %s\n", round+1, targets[i].name)
			var before time.Duration
			if procs[i] != nil {
				before = benchutil.CPU(procs[i].cmd.Process.Pid, true)
			}
			workersBefore := h.workersCPU(targets[i], procs[i])
			idle0, total0 := benchutil.MachineTicks()
			rps, err := runWrk(ctx, addrs[i], o.duration, o.connClose)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", targets[i].name, err)
			}
			if idle1, total1 := benchutil.MachineTicks(); total1 > total0 {
				idles[i] = append(idles[i], (idle1-idle0)/(total1-total0))
			}
			rpss[i] = append(rpss[i], rps)
			workerCPUs[i] = append(workerCPUs[i], time.Duration(float64(h.workersCPU(targets[i], procs[i])-workersBefore)/(rps*o.duration.Seconds())))
			if procs[i] != nil {
				used := benchutil.CPU(procs[i].cmd.Process.Pid, true) - before
				cpus[i] = append(cpus[i], time.Duration(float64(used)/(rps*o.duration.Seconds())))
			}
		}
		for i := range targets {
			if results[i].skipped != "" || o.connClose {
				continue
			}
			lr := loadgen.Run(ctx, "http://"+addrs[i]+"/", o.rate, o.loopFor, 10*time.Second)
			p50, p99, _ := loadgen.Percentiles(lr.Latencies)
			p50s[i], p99s[i] = append(p50s[i], p50), append(p99s[i], p99)
			results[i].openErrors += lr.Errors
		}
	}
	for i := range results {
		if results[i].skipped != "" {
			continue
		}
		results[i].rps = median(rpss[i])
		results[i].rounds = rpss[i]
		results[i].cpuPerReq = median(cpus[i])
		results[i].workerCPUPerReq = median(workerCPUs[i])
		results[i].idle = median(idles[i])
		results[i].p50, results[i].p99 = median(p50s[i]), median(p99s[i])
	}
	return results, nil
}

func median[T float64 | time.Duration](v []T) T {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func splitPort(addr string) (string, string, error) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("no port in %q", addr)
}
