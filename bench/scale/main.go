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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"warmpool/bench/benchutil"
	"warmpool/bench/loadgen"
)

type result struct {
	workers                 int
	firstReady              time.Duration
	idleRSS, loadRSS        int64
	idleCPU                 float64 // CPU seconds per second
	loadRPS                 float64
	loadCPUPerReq           time.Duration
	recycleCPUPerWorker     time.Duration
	recycleErrors, recycled int
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
	if err := benchutil.WriteResult(*out, md); err != nil {
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
	waitLine := func(part string, count int, timeout time.Duration) error {
		deadline := time.After(timeout)
		for seen := 0; seen < count; {
			select {
			case l, ok := <-lines:
				if !ok {
					return fmt.Errorf("warmpool exited")
				}
				if strings.Contains(l, part) {
					seen++
				}
			case <-deadline:
				return fmt.Errorf("no %q within %s", part, timeout)
			}
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

	// Recycle every worker once under light open-loop load; warmpool's own CPU per recycle.
	var wg sync.WaitGroup
	var lr loadgen.Result
	cpu0 = benchutil.CPU(pid, false)
	rollStart := time.Now()
	wg.Go(func() { lr = loadgen.Run(ctx, "http://"+listen+"/", 200, phase+2*time.Second, 10*time.Second) })
	cmd.Process.Signal(syscall.SIGHUP)
	if err := waitLine(`reason="recycled: reload"`, n, 2*time.Minute); err != nil {
		return r, err
	}
	rollCPU := benchutil.CPU(pid, false) - cpu0
	wg.Wait()
	_ = rollStart
	r.recycled = n
	r.recycleCPUPerWorker = rollCPU / time.Duration(n)
	r.recycleErrors = lr.Errors
	return r, nil
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func render(results []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# warmpool at scale\n\nwarmpool's own process (not its workers), with N trivial workers (bench/upstream). Idle and load phases 3 s; load is `wrk -t2 -c64`;\n")
	fmt.Fprintf(&b, "the recycle phase rolls every worker once (SIGHUP, surge N/4) under 200 req/s of open-loop load.\n\n")
	fmt.Fprintf(&b, "Machine: %d CPUs, %s. Run: %s. Command: `go run ./bench/scale`\n\n", runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "| workers | first ready | idle RSS | idle CPU | RSS under load | req/s | CPU/request | warmpool CPU per recycle | failed requests during the roll |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %d | %.2f s | %s | %.1f%% | %s | %.0f | %.1f us | %.1f ms | %d |\n", r.workers, r.firstReady.Seconds(), mib(r.idleRSS), r.idleCPU*100,
			mib(r.loadRSS), r.loadRPS, float64(r.loadCPUPerReq.Nanoseconds())/1000, float64(r.recycleCPUPerWorker.Microseconds())/1000, r.recycleErrors)
	}
	return b.String()
}
