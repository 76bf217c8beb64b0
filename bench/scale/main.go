// Command scale measures warmpool itself with 1, 8, 32 and 64 trivial workers (bench/upstream):
// its RSS and CPU idle and under load, the time to first ready, and the cost of recycling every
// worker once (SIGHUP) under light load: failed requests and warmpool's CPU per recycle.
//
//	go run ./bench/scale      # needs wrk: apt-get install wrk
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"warmpool/bench/benchutil"
	"warmpool/bench/loadgen"
)

type result struct {
	workers          int
	firstReady       time.Duration
	idleRSS, loadRSS int64
	idleCPU          float64 // CPU seconds per second
	loadRPS          float64
	loadCPUPerReq    time.Duration
	// recycleCPU is warmpool's own CPU per recycle, from an idle roll (no traffic to serve);
	// workerWarmupCPU is the median CPU a replacement used from its spawn to its admission.
	recycleCPU, workerWarmupCPU time.Duration
	recycleErrors, recycled     int
}

func main() {
	sizes := flag.String("workers", "1,8,32,64", "pool sizes")
	out := flag.String("out", "bench/results/scale.md", "markdown results (empty: none)")
	flag.Parse()
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale: bad -workers:", err)
			os.Exit(2)
		}
		ns = append(ns, n)
	}
	results, err := run(context.Background(), ns, 3*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
	md := render(results)
	fmt.Print(md)
	err = benchutil.WriteResult(*out, md)
	if err == nil && *out != "" {
		err = benchutil.WriteResult(strings.TrimSuffix(*out, ".md")+".svg", renderSVG(results))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, sizes []int, phase time.Duration) ([]result, error) {
	if _, err := exec.LookPath("wrk"); err != nil {
		return nil, fmt.Errorf("wrk is needed: apt-get install wrk")
	}
	dir, err := os.MkdirTemp("", "warmpool-scale-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	wp, up := filepath.Join(dir, "warmpool"), filepath.Join(dir, "upstream")
	for bin, pkg := range map[string]string{wp: "./cmd/warmpool", up: "./bench/upstream"} {
		if err := benchutil.Build(ctx, bin, pkg); err != nil {
			return nil, err
		}
	}
	var results []result
	for _, n := range sizes {
		fmt.Fprintf(os.Stderr, "scale: %d workers...\n", n)
		r, err := measure(ctx, wp, up, dir, n, phase)
		if err != nil {
			return nil, fmt.Errorf("%d workers: %w", n, err)
		}
		results = append(results, r)
	}
	return results, nil
}

func measure(ctx context.Context, wp, up, dir string, n int, phase time.Duration) (result, error) {
	r := result{workers: n}
	listen, admin := benchutil.FreeAddr(), benchutil.FreeAddr()
	cfg := fmt.Sprintf(`listen = %q
admin_listen = %q
[worker]
command = [%q, "--port", "{port}"]
count = %d
concurrency = 64
surge = %d
[proxy]
queue_size = 4096
[[warmup.request]]
path = "/"
`, listen, admin, up, n, max(1, n/4))
	path := filepath.Join(dir, fmt.Sprintf("scale-%d.toml", n))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return r, err
	}
	cmd := exec.CommandContext(ctx, wp, "run", "--config", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, _ := cmd.StderrPipe()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody waits for this line
			}
		}
		close(lines)
	}()
	// eachLine hands warmpool's log lines to fn until it reports done.
	eachLine := func(timeout time.Duration, fn func(line string) (done bool)) error {
		deadline := time.After(timeout)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return fmt.Errorf("warmpool exited")
				}
				if fn(l) {
					return nil
				}
			case <-deadline:
				return fmt.Errorf("not done within %s", timeout)
			}
		}
	}
	waitLine := func(part string, count int, timeout time.Duration) error {
		seen := 0
		err := eachLine(timeout, func(l string) bool {
			if strings.Contains(l, part) {
				seen++
			}
			return seen >= count
		})
		if err != nil {
			return fmt.Errorf("%d of %d %q: %w", seen, count, part, err)
		}
		return nil
	}
	if err := waitLine(`msg="pool ready"`, 1, 2*time.Minute); err != nil {
		return r, err
	}
	r.firstReady = time.Since(start)
	pid := cmd.Process.Pid

	// Idle.
	cpu0 := benchutil.CPU(pid, false)
	time.Sleep(phase) // measuring idle means letting time pass
	r.idleCPU = (benchutil.CPU(pid, false) - cpu0).Seconds() / phase.Seconds()
	r.idleRSS = benchutil.RSS(pid)

	// Under load.
	cpu0 = benchutil.CPU(pid, false)
	out, err := exec.CommandContext(ctx, "wrk", "-t2", "-c64", "-d"+strconv.Itoa(int(phase.Seconds()))+"s", "http://"+listen+"/").CombinedOutput()
	if err != nil {
		return r, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Requests/sec:\s+([\d.]+)`).FindSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk: %s", out)
	}
	r.loadRPS, _ = strconv.ParseFloat(string(m[1]), 64)
	r.loadCPUPerReq = time.Duration(float64(benchutil.CPU(pid, false)-cpu0) / (r.loadRPS * phase.Seconds()))
	r.loadRSS = benchutil.RSS(pid)

	// Roll every worker once with no traffic: warmpool's own CPU per recycle, and each
	// replacement's CPU from its spawn to its admission (its boot and warm-up), read from /proc
	// as its admission is logged.
	cpu0 = benchutil.ThreadCPU(pid)
	cmd.Process.Signal(syscall.SIGHUP)
	var warmups []time.Duration
	recycled := 0
	pidRe := regexp.MustCompile(` pid=(\d+)`)
	err = eachLine(2*time.Minute, func(l string) bool {
		if strings.Contains(l, `msg="worker admitted into rotation"`) {
			if m := pidRe.FindStringSubmatch(l); m != nil {
				wpid, _ := strconv.Atoi(m[1])
				warmups = append(warmups, benchutil.ThreadCPU(wpid))
			}
		}
		if strings.Contains(l, `reason="recycled: reload"`) {
			recycled++
		}
		return recycled == n
	})
	if err != nil {
		return r, fmt.Errorf("idle roll: %w", err)
	}
	r.recycleCPU = (benchutil.ThreadCPU(pid) - cpu0) / time.Duration(n)
	slices.Sort(warmups)
	if len(warmups) > 0 {
		r.workerWarmupCPU = warmups[len(warmups)/2]
	}

	// Roll again under light open-loop load: no request may fail.
	var wg sync.WaitGroup
	var lr loadgen.Result
	wg.Go(func() { lr = loadgen.Run(ctx, "http://"+listen+"/", 200, phase+2*time.Second, 10*time.Second) })
	cmd.Process.Signal(syscall.SIGHUP)
	if err := waitLine(`reason="recycled: reload"`, n, 2*time.Minute); err != nil {
		return r, err
	}
	wg.Wait()
	r.recycled = n
	r.recycleErrors = lr.Errors
	return r, nil
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func render(results []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# warmpool at scale\n\nwarmpool's own process (not its workers), with N trivial workers (bench/upstream). Idle and load phases 3 s; load is `wrk -t2 -c64`.\n")
	fmt.Fprintf(&b, "Recycling: every worker is rolled once with no traffic (SIGHUP, surge N/4) to measure warmpool's own CPU per recycle next to the CPU the replacement itself spent from spawn to admission (its boot and warm-up, median); ")
	fmt.Fprintf(&b, "then rolled once more under 200 req/s of open-loop load, counting failed requests.\n\n")
	fmt.Fprintf(&b, "Machine: %d CPUs, %s. Run: %s. Command: `go run ./bench/scale`\n\n", runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "| workers | first ready | idle RSS | idle CPU | RSS under load | req/s | CPU/request | warmpool CPU per recycle | replacement's own boot+warm-up CPU | ratio | failed requests during the loaded roll |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		ratio := "–"
		if r.workerWarmupCPU > 0 {
			ratio = fmt.Sprintf("%.2fx", float64(r.recycleCPU)/float64(r.workerWarmupCPU))
		}
		fmt.Fprintf(&b, "| %d | %.2f s | %s | %.1f%% | %s | %.0f | %.1f us | %.1f ms | %.1f ms | %s | %d |\n", r.workers, r.firstReady.Seconds(), mib(r.idleRSS), r.idleCPU*100,
			mib(r.loadRSS), r.loadRPS, float64(r.loadCPUPerReq.Nanoseconds())/1000, msf(r.recycleCPU), msf(r.workerWarmupCPU), ratio, r.recycleErrors)
	}
	b.WriteString("\n![CPU per recycle](scale.svg)\n")
	return b.String()
}

// renderSVG charts, per pool size, warmpool's CPU per recycle next to the replacement's own.
func renderSVG(results []result) string {
	var bars []benchutil.Bar
	for _, r := range results {
		bars = append(bars,
			benchutil.Bar{Label: fmt.Sprintf("%d workers: warmpool", r.workers), Value: msf(r.recycleCPU), Text: fmt.Sprintf("%.1f ms", msf(r.recycleCPU)), Highlight: true},
			benchutil.Bar{Label: fmt.Sprintf("%d workers: the replacement", r.workers), Value: msf(r.workerWarmupCPU), Text: fmt.Sprintf("%.1f ms", msf(r.workerWarmupCPU))})
	}
	return benchutil.BarChart("CPU per recycle: warmpool's own vs the replacement's boot and warm-up", bars, false)
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
