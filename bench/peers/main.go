// Command peers runs the seed scenario against real peers: the WSGI app in app.py (a 300 ms
// cold step under a process-wide lock on each process's first request) served by uWSGI and
// gunicorn with max-requests 100, by gunicorn with --preload and an in-process warm-up (the
// peers' best practice), and by warmpool running single-process gunicorn or uWSGI workers with
// max_requests 100. Open-loop load at a constant rate; P50, P99, max, errors, cold requests.
//
//	go run ./bench/peers      # needs: apt-get install uwsgi uwsgi-plugin-python3 gunicorn
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"warmpool/bench/benchutil"
	"warmpool/bench/loadgen"
)

type options struct {
	rate        int
	rounds      int
	duration    time.Duration
	warmFor     time.Duration
	maxRequests int
	out         string
	only        string
}

type server struct {
	name, note string
	needs      []string
	// argv builds the command; addr is host:port, dir the app's directory, tmp a scratch dir.
	argv func(o options, addr, dir, tmp, warmpool string) []string
	// ready is the stderr line that says it serves; empty means "accepts connections".
	ready string
}

var servers = []server{
	{name: "uwsgi 2x4", note: "uWSGI, 2 processes x 4 threads, max-requests 100. Errors are requests that got no answer within the client's 30 s timeout; " +
		"the cause was not found (threaded uWSGI workers and max-requests have hang reports upstream, e.g. unbit/uwsgi#2480)", needs: []string{"uwsgi"},
		argv: func(o options, addr, dir, tmp, _ string) []string {
			return []string{"uwsgi", "--http-socket", addr, "--plugin", "python3", "--chdir", dir, "--wsgi-file", "app.py",
				"--master", "--processes", "2", "--threads", "4", "--max-requests", fmt.Sprint(o.maxRequests), "--die-on-term", "--disable-logging"}
		}},
	{name: "uwsgi 8p", note: "uWSGI, 8 processes, max-requests 100", needs: []string{"uwsgi"},
		argv: func(o options, addr, dir, tmp, _ string) []string {
			return []string{"uwsgi", "--http-socket", addr, "--plugin", "python3", "--chdir", dir, "--wsgi-file", "app.py",
				"--master", "--processes", "8", "--max-requests", fmt.Sprint(o.maxRequests), "--die-on-term", "--disable-logging"}
		}},
	{name: "gunicorn 2x4", note: "gunicorn gthread, 2 workers x 4 threads, max-requests 100", needs: []string{"gunicorn"},
		argv: func(o options, addr, dir, tmp, _ string) []string {
			return []string{"gunicorn", "--chdir", dir, "-b", addr, "-w", "2", "--threads", "4", "-k", "gthread",
				"--max-requests", fmt.Sprint(o.maxRequests), "app:application"}
		}},
	{name: "gunicorn preload+warm-up", note: "gunicorn 2x4, max-requests 100, --preload and an in-process warm-up in post_worker_init (the peers' best practice)", needs: []string{"gunicorn"},
		argv: func(o options, addr, dir, tmp, _ string) []string {
			return []string{"gunicorn", "--chdir", dir, "-b", addr, "-w", "2", "--threads", "4", "-k", "gthread",
				"--max-requests", fmt.Sprint(o.maxRequests), "--preload", "-c", filepath.Join(dir, "gunicorn_warm.py"), "app:application"}
		}},
	{name: "warmpool + gunicorn", note: "warmpool, 2 single-process gunicorn workers x 4 threads, max_requests 100, warm-up GET / x4", needs: []string{"gunicorn"},
		ready: `msg="pool ready"`,
		argv: func(o options, addr, dir, tmp, wp string) []string {
			return warmpoolArgv(o, addr, dir, tmp, wp, `["gunicorn", "--chdir", "`+dir+`", "-b", "unix:{socket}", "-w", "1", "--threads", "4", "-k", "gthread", "app:application"]`)
		}},
	{name: "warmpool + uwsgi", note: "warmpool, 2 single-process uWSGI workers x 4 threads, max_requests 100, warm-up GET / x4", needs: []string{"uwsgi"},
		ready: `msg="pool ready"`,
		argv: func(o options, addr, dir, tmp, wp string) []string {
			return warmpoolArgv(o, addr, dir, tmp, wp, `["uwsgi", "--http-socket", "{socket}", "--plugin", "python3", "--chdir", "`+dir+`", "--wsgi-file", "app.py", "--processes", "1", "--threads", "4", "--die-on-term", "--disable-logging"]`)
		}},
}

func warmpoolArgv(o options, addr, dir, tmp, wp, command string) []string {
	admin := benchutil.FreeAddr()
	cfg := fmt.Sprintf(`listen = %q
admin_listen = %q
[worker]
command = %s
count = 2
concurrency = 4
max_requests = %d
max_requests_jitter = %d
graceful_timeout = "10s"
[proxy]
queue_timeout = "30s"
[warmup]
timeout = "30s"
[[warmup.request]]
path = "/"
repeat = 4
`, addr, admin, command, o.maxRequests, o.maxRequests/10)
	path := filepath.Join(tmp, fmt.Sprintf("warmpool-%d.toml", time.Now().UnixNano()))
	os.WriteFile(path, []byte(cfg), 0o644)
	return []string{wp, "run", "--config", path}
}

type result struct {
	server
	skipped             string
	sent, errors, cold  int
	workers             int
	latencies           []time.Duration // every round's, pooled
	p50, p99, p999, max time.Duration
	roundP99s           []time.Duration
	firstErr            string
}

func main() {
	var o options
	flag.IntVar(&o.rate, "rate", 150, "requests per second (open loop)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each round measures every server in turn, and latencies are pooled")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "measured load per server and round")
	flag.DurationVar(&o.warmFor, "warm", 3*time.Second, "unmeasured load first, so start-up cold starts do not count")
	flag.IntVar(&o.maxRequests, "max-requests", 100, "max-requests of every server")
	flag.StringVar(&o.out, "out", "bench/results/peers.md", "markdown results (empty: none)")
	flag.StringVar(&o.only, "only", "", "run only servers whose name contains this")
	flag.Parse()
	results, err := run(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
	md := render(o, results)
	fmt.Print(md)
	err = benchutil.WriteResult(o.out, md)
	if err == nil && o.out != "" {
		err = benchutil.WriteResult(strings.TrimSuffix(o.out, ".md")+".svg", renderSVG(results))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) ([]result, error) {
	root := benchutil.ModuleRoot()
	dir := filepath.Join(root, "bench", "peers")
	tmp, err := os.MkdirTemp("", "warmpool-peers-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	wp := filepath.Join(tmp, "warmpool")
	if err := benchutil.Build(ctx, wp, "./cmd/warmpool"); err != nil {
		return nil, err
	}
	var results []result
	for _, s := range servers {
		if o.only != "" && !strings.Contains(s.name, o.only) {
			continue
		}
		r := result{server: s}
		for _, bin := range s.needs {
			if _, err := exec.LookPath(bin); err != nil {
				r.skipped = bin + " is not installed (apt-get install uwsgi uwsgi-plugin-python3 gunicorn)"
			}
		}
		results = append(results, r)
	}
	// Rounds go through every server in turn, so that a slow spell of this shared machine hits
	// them alike; each round starts the server afresh.
	for round := range max(o.rounds, 1) {
		for i := range results {
			r := &results[i]
			if r.skipped != "" {
				continue
			}
			fmt.Fprintf(os.Stderr, "peers: round %d, %s...\n", round+1, r.name)
			if err := measure(ctx, o, r, dir, tmp, wp); err != nil {
				return nil, fmt.Errorf("%s: %w", r.name, err)
			}
		}
	}
	for i := range results {
		r := &results[i]
		r.p50, r.p99, r.max = loadgen.Percentiles(r.latencies)
		r.p999 = loadgen.Quantile(r.latencies, 0.999)
	}
	return results, nil
}

func measure(ctx context.Context, o options, r *result, dir, tmp, wp string) error {
	addr := benchutil.FreeAddr()
	argv := r.argv(o, addr, dir, tmp, wp)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		closed := false
		for sc.Scan() {
			if !closed && r.ready != "" && strings.Contains(sc.Text(), r.ready) {
				close(ready)
				closed = true
			}
		}
	}()
	if r.ready != "" {
		select {
		case <-ready:
		case <-time.After(60 * time.Second):
			return fmt.Errorf("not ready within 60s")
		}
	} else if err := waitListening(addr); err != nil {
		return err
	}
	url := "http://" + addr + "/"
	loadgen.Run(ctx, url, o.rate, o.warmFor, 30*time.Second) // not measured: start-up
	lr := loadgen.Run(ctx, url, o.rate, o.duration, 30*time.Second)
	r.sent += len(lr.Latencies)
	r.errors += lr.Errors
	r.cold += lr.Cold
	r.workers += len(lr.Pids)
	if r.firstErr == "" {
		r.firstErr = lr.FirstErr
	}
	r.latencies = append(r.latencies, lr.Latencies...)
	_, p99, _ := loadgen.Percentiles(lr.Latencies)
	r.roundP99s = append(r.roundP99s, p99)
	return nil
}

func waitListening(addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond) // no event says "now listening"
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func render(o options, results []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Seed scenario against real peers\n\n")
	fmt.Fprintf(&b, "bench/peers/app.py: 300 ms of CPU under a process-wide lock on each process's first request (per-process state, as after a fork), 1 ms per request.\n")
	fmt.Fprintf(&b, "Open loop at %d req/s for %s per server and round, after %s of unmeasured start-up load; max-requests %d everywhere. ", o.rate, o.duration, o.warmFor, o.maxRequests)
	fmt.Fprintf(&b, "%d rounds, each starting every server afresh in turn; the percentiles are over all rounds' requests, and the per-round P99s are listed.\n\n", o.rounds)
	fmt.Fprintf(&b, "Machine: %d CPUs, %s. Run: %s. Command: `go run ./bench/peers -rate %d -duration %s -rounds %d`\n\n",
		runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 MST"), o.rate, o.duration, o.rounds)
	fmt.Fprintf(&b, "| server | requests | errors | met a cold worker | worker pids seen | P50 | P99 | P99.9 | max | P99 per round |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	var best, best999 time.Duration
	bestName, best999Name := "", ""
	for _, r := range results {
		if r.skipped != "" || strings.HasPrefix(r.name, "warmpool") {
			continue
		}
		if best == 0 || r.p99 < best {
			best, bestName = r.p99, r.name
		}
		if best999 == 0 || r.p999 < best999 {
			best999, best999Name = r.p999, r.name
		}
	}
	for _, r := range results {
		if r.skipped != "" {
			fmt.Fprintf(&b, "| %s | skipped: %s | | | | | | | | |\n", r.name, r.skipped)
			continue
		}
		rounds := make([]string, len(r.roundP99s))
		for i, d := range r.roundP99s {
			rounds[i] = ms(d)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %s | %s | %s | %s | %s |\n", r.name, r.sent, r.errors, r.cold, r.workers,
			ms(r.p50), ms(r.p99), ms(r.p999), ms(r.max), strings.Join(rounds, ", "))
	}
	b.WriteString("\n![P99 per server](peers.svg)\n\n")
	for _, r := range results {
		if r.skipped != "" {
			continue
		}
		fmt.Fprintf(&b, "- %s: %s", r.name, r.note)
		if strings.HasPrefix(r.name, "warmpool") && best > 0 {
			fmt.Fprintf(&b, "; P99 %.1fx lower than the best peer's (%s), P99.9 %.1fx lower than the best peer's (%s)",
				float64(best)/float64(r.p99), bestName, float64(best999)/float64(r.p999), best999Name)
		}
		if r.firstErr != "" {
			fmt.Fprintf(&b, "; first error: %s", r.firstErr)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// renderSVG charts each server's P99 on a log scale (they span 5 ms to 30 s).
func renderSVG(results []result) string {
	bars := make([]benchutil.Bar, len(results))
	for i, r := range results {
		bars[i] = benchutil.Bar{Label: r.name, Value: float64(r.p99.Microseconds()), Text: ms(r.p99),
			Highlight: strings.HasPrefix(r.name, "warmpool"), Skipped: r.skipped != ""}
	}
	return benchutil.BarChart("Seed scenario: P99 latency per server (log scale; lower is better)", bars, true)
}
