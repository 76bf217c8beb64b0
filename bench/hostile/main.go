// Command hostile measures what slow and idle clients cost warmpool: its RSS while N clients
// each trickle a request head that never ends (up to 1 MiB, in 16 KiB pieces), and while N
// clients hold connections open without sending a byte; and whether a plain request is still
// served meanwhile. With -baseline, the same for a warmpool binary from another commit.
//
//	go run ./bench/hostile -conns 1000
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"warmpool/bench/benchutil"
)

type options struct {
	conns    int
	duration time.Duration
	baseline string
}

// result is one build under one attack.
type result struct {
	build, attack   string
	idleRSS, peak   int64
	answered        map[int]int // status -> clients that got it
	closed, pending int         // clients whose connection ended without an answer, or still open
	plainOK         int         // plain requests served while the attack ran
	plainFailed     int
	plainWorst      time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.conns, "conns", 1000, "hostile client connections at once")
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "how long each attack runs")
	flag.StringVar(&o.baseline, "baseline", "", "a warmpool binary from another commit, measured the same way")
	out := flag.String("out", "bench/results/hostile.md", "markdown results (- for none)")
	flag.Parse()
	results, err := run(context.Background(), o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
	md := render(o, results)
	fmt.Print(md)
	if *out != "-" {
		if err := benchutil.WriteResult(*out, md); err != nil {
			fmt.Fprintln(os.Stderr, "hostile:", err)
			os.Exit(1)
		}
	}
}

func run(ctx context.Context, o options, logw io.Writer) ([]result, error) {
	dir, err := os.MkdirTemp("", "warmpool-hostile-")
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
	builds := [][2]string{{"this build", wp}}
	if o.baseline != "" {
		builds = append(builds, [2]string{"baseline", o.baseline})
	}
	var results []result
	for _, b := range builds {
		for _, attack := range []string{"slow endless heads", "idle connections"} {
			fmt.Fprintf(logw, "hostile: %s, %s\n", b[0], attack)
			r, err := measure(ctx, o, b[1], up, dir, attack)
			if err != nil {
				return nil, fmt.Errorf("%s, %s: %w", b[0], attack, err)
			}
			r.build = b[0]
			results = append(results, r)
		}
	}
	return results, nil
}

// measure starts warmpool with two trivial workers, runs one attack and samples its RSS.
func measure(ctx context.Context, o options, wp, up, dir, attack string) (result, error) {
	r := result{attack: attack, answered: map[int]int{}}
	addr, admin := benchutil.FreeAddr(), benchutil.FreeAddr()
	cfg := filepath.Join(dir, "hostile.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listen = %q
admin_listen = %q
[worker]
command = [%q, "--socket", "{socket}"]
count = 2
concurrency = 64
[[warmup.request]]
path = "/"
`, addr, admin, up)), 0o644)
	cmd := exec.CommandContext(ctx, wp, "run", "--config", cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			if strings.Contains(sc.Text(), "pool ready") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		return r, errors.New("warmpool not ready within 30s")
	}
	pid := cmd.Process.Pid
	runtime.GC()
	r.idleRSS = benchutil.RSS(pid)

	actx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var wg sync.WaitGroup
	var closed, pending atomic.Int64
	var mu sync.Mutex
	for range o.conns {
		wg.Go(func() {
			status, err := hostileClient(actx, addr, attack)
			switch {
			case status > 0:
				mu.Lock()
				r.answered[status]++
				mu.Unlock()
			case err != nil && actx.Err() != nil:
				pending.Add(1)
			default:
				closed.Add(1)
			}
		})
	}
	// Plain requests meanwhile, one at a time, and RSS samples.
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for actx.Err() == nil {
		r.peak = max(r.peak, benchutil.RSS(pid))
		start := time.Now()
		resp, err := cl.Get("http://" + addr + "/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if err == nil && resp.StatusCode == 200 {
			r.plainOK++
			r.plainWorst = max(r.plainWorst, time.Since(start))
		} else if actx.Err() == nil {
			r.plainFailed++
		}
		select {
		case <-tick.C:
		case <-actx.Done():
		}
	}
	r.peak = max(r.peak, benchutil.RSS(pid))
	wg.Wait()
	r.closed, r.pending = int(closed.Load()), int(pending.Load())
	return r, nil
}

// hostileClient runs one attacking connection until warmpool answers or closes it, or ctx
// ends. It returns the status warmpool answered with (0 for none).
func hostileClient(ctx context.Context, addr, attack string) (int, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	answer := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil {
			answer <- 0
			return
		}
		answer <- resp.StatusCode
	}()
	if attack == "slow endless heads" {
		piece := []byte("X-Filler: " + strings.Repeat("a", 16<<10-12) + "\r\n")
		if _, err := io.WriteString(nc, "GET / HTTP/1.1\r\nHost: bench\r\n"); err != nil {
			return 0, err
		}
		for sent := 0; sent < 1<<20; sent += len(piece) {
			select {
			case st := <-answer:
				return st, nil
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := nc.Write(piece); err != nil {
				break
			}
		}
	}
	select {
	case st := <-answer:
		if st == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return st, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func render(o options, results []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Hostile clients: what they cost warmpool\n\n")
	fmt.Fprintf(&b, "%d client connections at once for %s, against warmpool with two trivial workers (bench/upstream). "+
		"`slow endless heads`: each client sends a request head that never ends, 16 KiB every 20 ms, up to 1 MiB. "+
		"`idle connections`: each client connects and sends nothing. A plain request is sent every 100 ms meanwhile. "+
		"RSS is warmpool's own (not its workers').\n\n", o.conns, o.duration)
	baseline := ""
	if o.baseline != "" {
		baseline = " -baseline " + o.baseline
	}
	fmt.Fprintf(&b, "Machine: %d CPUs, %s. Run: %s. Command: `go run ./bench/hostile -conns %d -duration %s%s`.\n\n",
		runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 UTC"), o.conns, o.duration, baseline)
	b.WriteString("| build | attack | RSS before | peak RSS | answers to the attackers | closed without answer | still open at the end | plain requests served | failed | slowest |\n")
	b.WriteString("|---|---|---:|---:|---|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		var answers []string
		for st, n := range r.answered {
			answers = append(answers, fmt.Sprintf("%d x %d", n, st))
		}
		if len(answers) == 0 {
			answers = []string{"none"}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d | %d | %d | %d | %s |\n", r.build, r.attack, mib(r.idleRSS), mib(r.peak),
			strings.Join(answers, ", "), r.closed, r.pending, r.plainOK, r.plainFailed, r.plainWorst.Round(time.Millisecond))
	}
	return b.String()
}
