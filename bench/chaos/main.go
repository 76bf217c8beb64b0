// Command chaos tries warmpool's limits where they matter: at saturation and under faults. Each
// scenario runs its own warmpool (JSON logs, read as they come) in front of Python workers from
// Debian's packages, and reports one row:
//
//   - saturation, warm fork and fresh processes: wrk keeps every CPU busy while workers recycle
//     at max_requests 200; the largest and median requests served per recycled worker, as a
//     multiple of its limit;
//
//   - kill -9 of a random worker every 2 s at 200 requests/s: requests lost against requests in
//     flight on the killed workers;
//
//   - SIGSTOP of a serving worker: requests lost, and requests that reached it after it was
//     declared hung;
//
//   - SIGSTOP of the template, then kill -9 of both workers: time to serve again, against a
//     fresh worker's boot;
//
//   - a deploy whose code fails at import, for 60 s: warmpool's log bytes per minute;
//
//   - the first start of a pool of 4 uWSGI workers while CPU hogs keep the machine busy;
//
//   - SIGTERM of an idle pool of 4 uWSGI workers while 2 CPU hogs keep the machine busy: time
//     to exit.
//
//     go run ./bench/chaos                          # needs wrk, python3-waitress (Debian)
//     go run ./bench/chaos -warmpool /path/to/old   # the same against another build
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"warmpool/bench/benchutil"
	"warmpool/bench/loadgen"
)

const python = "/usr/bin/python3"

func main() {
	bin := flag.String("warmpool", "", "warmpool binary to run (empty: build this tree)")
	only := flag.String("only", "", "comma-separated scenarios to run (empty: all)")
	loopFor := flag.Duration("crash-loop", 60*time.Second, "how long the crash-looping deploy runs")
	out := flag.String("out", "bench/results/chaos.md", "markdown results (empty: none)")
	flag.Parse()
	rows, err := run(context.Background(), *bin, *only, *loopFor, 20*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	md := render(rows)
	fmt.Print(md)
	if err := benchutil.WriteResult(*out, md); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

// row is one scenario's outcome.
type row struct {
	scenario, measure, result, target string
}

type scenario struct {
	name string
	run  func(ctx context.Context, e *env) (row, error)
}

// env is what every scenario gets: the binary, a work directory, the soak times.
type env struct {
	bin, dir string
	loopFor  time.Duration
	phase    time.Duration
}

func run(ctx context.Context, bin, only string, loopFor, phase time.Duration) ([]row, error) {
	for _, tool := range []string{"wrk", python} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is needed (Debian: apt-get install wrk python3-waitress)", tool)
		}
	}
	if err := exec.Command(python, "-c", "import waitress").Run(); err != nil {
		return nil, fmt.Errorf("%s cannot import waitress: apt-get install python3-waitress", python)
	}
	dir, err := os.MkdirTemp("", "warmpool-chaos-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		bin = filepath.Join(dir, "warmpool")
		if err := benchutil.Build(ctx, bin, "./cmd/warmpool"); err != nil {
			return nil, err
		}
	}
	if err := writeApps(dir); err != nil {
		return nil, err
	}
	e := &env{bin: bin, dir: dir, loopFor: loopFor, phase: phase}
	var rows []row
	for _, s := range scenarios {
		if only != "" && !slices.Contains(strings.Split(only, ","), s.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "chaos: %s...\n", s.name)
		r, err := s.run(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

var scenarios = []scenario{
	{"saturation-fork", saturationFork},
	{"saturation-fresh", saturationFresh},
	{"saturation-fresh-no-ceiling", saturationFreshNoCeiling},
	{"kill9", kill9},
	{"sigstop-worker", sigstopWorker},
	{"sigstop-template", sigstopTemplate},
	{"crash-loop", crashLoop},
	{"start-busy", startBusy},
	{"stop-busy", stopBusy},
}

// The app: its import takes BOOT_SECONDS (a framework's start-up), a request about 1 ms of CPU.
const appPy = `import os, time

time.sleep(float(os.environ.get("BOOT_SECONDS", "0")))


def application(environ, start_response):
    n = 0
    for i in range(20000):
        n += i
    body = ("ok %d %d\n" % (os.getpid(), n)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Worker-Pid", str(os.getpid()))])
    return [body]
`

// broken.py fails at import with a chained traceback 40 frames deep, twice over: a deploy gone
// wrong.
const brokenPy = `def deep(n):
    if n == 0:
        raise KeyError("DATABASE_URL")
    return deep(n - 1)


def settings(n):
    try:
        deep(n)
    except KeyError as e:
        raise RuntimeError("settings could not be loaded") from e


try:
    settings(40)
except RuntimeError as e:
    raise ImportError("the app module failed to import") from e

application = None
`

func writeApps(dir string) error {
	for name, src := range map[string]string{"app.py": appPy, "broken.py": brokenPy} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// pool settings shared by the scenarios: fork mode ([worker.python]) or fresh processes of
// waitress-serve (worker.command), 2 workers of 4 threads unless told.
type pool struct {
	fork        bool
	uwsgi       bool   // fresh processes of uWSGI instead of waitress
	app         string // module:callable
	count       int
	maxRequests int
	bootSeconds float64
	extra       string // more TOML for [worker] (before the other tables)
	proxy       string // TOML for [proxy]
}

func (e *env) config(p pool) string {
	count := max(p.count, 2)
	app := cmp.Or(p.app, "app:application")
	var b strings.Builder
	fmt.Fprintf(&b, "listen = %q\nadmin_listen = %q\nlog_format = \"json\"\n[worker]\ndir = %q\ncount = %d\nconcurrency = 4\ngraceful_timeout = \"5s\"\n",
		benchutil.FreeAddr(), benchutil.FreeAddr(), e.dir, count)
	fmt.Fprintf(&b, "env = { BOOT_SECONDS = %q }\n", strconv.FormatFloat(p.bootSeconds, 'f', -1, 64))
	if p.maxRequests > 0 {
		fmt.Fprintf(&b, "max_requests = %d\n", p.maxRequests)
	}
	switch {
	case p.uwsgi:
		module, _, _ := strings.Cut(app, ":")
		fmt.Fprintf(&b, "command = [\"uwsgi\", \"--http-socket\", \"{socket}\", \"--plugin\", \"python3\", \"--chdir\", %q, \"--wsgi-file\", %q, \"--processes\", \"1\", \"--threads\", \"4\", \"--die-on-term\", \"--disable-logging\"]\n",
			e.dir, module+".py")
	case !p.fork:
		fmt.Fprintf(&b, "command = [\"/usr/bin/waitress-serve\", \"--unix-socket={socket}\", \"--threads=4\", %q]\n", app)
	}
	b.WriteString(p.extra)
	if p.fork {
		fmt.Fprintf(&b, "[worker.python]\napp = %q\nexecutable = %q\n", app, python)
	}
	if p.proxy != "" {
		b.WriteString("[proxy]\n" + p.proxy)
	}
	b.WriteString("[warmup]\ntimeout = \"60s\"\n[[warmup.request]]\npath = \"/\"\nrepeat = 2\n")
	return b.String()
}

// instance is one running warmpool.
type instance struct {
	cmd    *exec.Cmd
	listen string
	admin  string
	start  time.Time

	mu      sync.Mutex
	records []record
	bytes   atomic.Int64 // log bytes written
	changed chan struct{}
}

// record is one JSON log line.
type record map[string]any

func (r record) str(k string) string {
	switch v := r[k].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}

func (r record) num(k string) float64 {
	v, _ := strconv.ParseFloat(r.str(k), 64)
	return v
}

func (e *env) start(ctx context.Context, name string, p pool) (*instance, error) {
	cfg := e.config(p)
	path := filepath.Join(e.dir, name+".toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	in := &instance{changed: make(chan struct{}, 1)}
	for _, line := range strings.Split(cfg, "\n") {
		if v, ok := strings.CutPrefix(line, "listen = "); ok {
			in.listen, _ = strconv.Unquote(v)
		}
		if v, ok := strings.CutPrefix(line, "admin_listen = "); ok {
			in.admin, _ = strconv.Unquote(v)
		}
	}
	in.cmd = exec.CommandContext(ctx, e.bin, "run", "--config", path)
	in.cmd.Dir = e.dir
	in.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := in.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	in.cmd.Stdout = io.Discard
	in.start = time.Now()
	if err := in.cmd.Start(); err != nil {
		return nil, err
	}
	go in.read(stderr)
	return in, nil
}

func (in *instance) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		in.bytes.Add(int64(len(sc.Bytes()) + 1))
		var rec record
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		in.mu.Lock()
		in.records = append(in.records, rec)
		in.mu.Unlock()
		select {
		case in.changed <- struct{}{}:
		default:
		}
	}
}

// all returns the records whose msg starts with prefix.
func (in *instance) all(prefix string) []record {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []record
	for _, r := range in.records {
		if strings.HasPrefix(r.str("msg"), prefix) {
			out = append(out, r)
		}
	}
	return out
}

// wait waits until n records start with prefix.
func (in *instance) wait(prefix string, n int, timeout time.Duration) ([]record, error) {
	deadline := time.After(timeout)
	for {
		if got := in.all(prefix); len(got) >= n {
			return got, nil
		}
		select {
		case <-in.changed:
		case <-deadline:
			return nil, fmt.Errorf("%d of %d %q within %s", len(in.all(prefix)), n, prefix, timeout)
		}
	}
}

func (in *instance) stop() time.Duration {
	began := time.Now()
	in.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { in.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	return time.Since(began)
}

// status is the admin /status.
type status struct {
	Workers []struct {
		PID   int    `json:"pid"`
		State string `json:"state"`
	} `json:"workers"`
	Templates []struct {
		PID   int    `json:"pid"`
		State string `json:"state"`
	} `json:"templates"`
}

func (in *instance) status() (status, error) {
	var st status
	err := benchutil.Status(in.admin, &st)
	return st, err
}

func (in *instance) ready(timeout time.Duration) error {
	_, err := in.wait("pool ready", 1, timeout)
	return err
}

// wrk saturates the front for d; it reports requests per second and the 99th percentile.
func wrk(ctx context.Context, addr string, d time.Duration) (rps float64, p99 string, err error) {
	out, err := exec.CommandContext(ctx, "wrk", "-t2", "-c32", "--latency", "-d"+strconv.Itoa(int(d.Seconds()))+"s", "http://"+addr+"/").CombinedOutput()
	if err != nil {
		return 0, "", fmt.Errorf("wrk: %v\n%s", err, out)
	}
	if m := regexp.MustCompile(`Requests/sec:\s+([\d.]+)`).FindSubmatch(out); m != nil {
		rps, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if m := regexp.MustCompile(`\s99%\s+(\S+)`).FindSubmatch(out); m != nil {
		p99 = string(m[1])
	}
	return rps, p99, nil
}

// overshoot runs wrk for the phase and reads each worker recycled at max_requests: the largest
// and the median of served/max_requests.
func overshoot(ctx context.Context, e *env, name string, p pool) (o saturated, err error) {
	in, err := e.start(ctx, name, p)
	if err != nil {
		return o, err
	}
	defer in.stop()
	if err := in.ready(2 * time.Minute); err != nil {
		return o, err
	}
	if o.rps, o.p99, err = wrk(ctx, in.listen, e.phase); err != nil {
		return o, err
	}
	var ratios []float64
	for _, r := range in.all("worker stopped") {
		if !strings.HasPrefix(r.str("reason"), "recycled: max_requests") {
			continue
		}
		limit := r.num("max_requests")
		if limit == 0 {
			limit = float64(p.maxRequests) // a build that does not log it: no jitter is set
		}
		ratios = append(ratios, r.num("served")/limit)

	}
	if len(ratios) == 0 {
		return o, fmt.Errorf("no worker was recycled at max_requests")
	}
	slices.Sort(ratios)
	o.ceiling = len(in.all("worker reached max_requests_ceiling"))
	o.worst, o.median, o.recycles = ratios[len(ratios)-1], ratios[len(ratios)/2], len(ratios)
	return o, nil
}

// saturated is what overshoot measured.
type saturated struct {
	worst, median     float64
	recycles, ceiling int
	rps               float64
	p99               string
}

func saturationFork(ctx context.Context, e *env) (row, error) {
	o, err := overshoot(ctx, e, "saturation-fork", pool{fork: true, maxRequests: 200, bootSeconds: 1.5})
	if err != nil {
		return row{}, err
	}
	return row{"saturation, warm fork (wrk -c32, 2 workers, max_requests 200)", "largest (median) served / limit per recycle",
		fmt.Sprintf("%.2fx (%.2fx), %d recycles; %.0f req/s, P99 %s", o.worst, o.median, o.recycles, o.rps, o.p99), "at most 1.5x"}, nil
}

func saturationFresh(ctx context.Context, e *env) (row, error) {
	o, err := overshoot(ctx, e, "saturation-fresh", pool{maxRequests: 200, bootSeconds: 1.5})
	if err != nil {
		return row{}, err
	}
	return row{"saturation, fresh processes booting 1.5 s (wrk -c32, max_requests 200)", "largest (median) served / limit per recycle",
		fmt.Sprintf("%.2fx (%.2fx), %d recycles, %d at the ceiling; %.0f req/s, P99 %s", o.worst, o.median, o.recycles, o.ceiling, o.rps, o.p99), "at most 2.2x"}, nil
}

// saturationFreshNoCeiling is the trade-off's other side: max_requests_ceiling = 0 keeps
// capacity and lets workers serve on past their limit until their replacement is ready.
func saturationFreshNoCeiling(ctx context.Context, e *env) (row, error) {
	o, err := overshoot(ctx, e, "saturation-fresh-no-ceiling", pool{maxRequests: 200, bootSeconds: 1.5, extra: "max_requests_ceiling = 0\n"})
	if err != nil {
		return row{}, err
	}
	return row{"the same with max_requests_ceiling = 0", "largest (median) served / limit per recycle",
		fmt.Sprintf("%.2fx (%.2fx), %d recycles; %.0f req/s, P99 %s", o.worst, o.median, o.recycles, o.rps, o.p99), "(the trade-off)"}, nil
}

func kill9(ctx context.Context, e *env) (row, error) {
	in, err := e.start(ctx, "kill9", pool{count: 4, bootSeconds: 0.5})
	if err != nil {
		return row{}, err
	}
	defer in.stop()
	if err := in.ready(2 * time.Minute); err != nil {
		return row{}, err
	}
	d := 2 * e.phase
	stop := make(chan struct{})
	var killer sync.WaitGroup
	kills := 0
	killer.Go(func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			st, err := in.status()
			if err != nil {
				continue
			}
			var ready []int
			for _, w := range st.Workers {
				if w.State == "ready" {
					ready = append(ready, w.PID)
				}
			}
			if len(ready) > 0 {
				syscall.Kill(ready[rand.IntN(len(ready))], syscall.SIGKILL)
				kills++
			}
		}
	})
	res := loadgen.Run(ctx, "http://"+in.listen+"/", 200, d, 10*time.Second)
	close(stop)
	killer.Wait()
	inFlight := 0
	for _, r := range in.all("worker exited unexpectedly") {
		inFlight += int(r.num("in_flight_lost"))
	}
	return row{fmt.Sprintf("kill -9 of a random worker every 2 s, 200 req/s, %s, 4 fresh workers", d),
		"requests lost / in flight on the killed workers",
		fmt.Sprintf("%d / %d of %d, %d kills", res.Errors, inFlight, len(res.Latencies), kills), "lost = in flight"}, nil
}

func sigstopWorker(ctx context.Context, e *env) (row, error) {
	in, err := e.start(ctx, "sigstop-worker", pool{fork: true, bootSeconds: 0.5, proxy: "request_timeout = \"2s\"\n"})
	if err != nil {
		return row{}, err
	}
	defer in.stop()
	if err := in.ready(2 * time.Minute); err != nil {
		return row{}, err
	}
	var res loadgen.Result
	done := make(chan struct{})
	go func() {
		res = loadgen.Run(ctx, "http://"+in.listen+"/", 200, e.phase, 10*time.Second)
		close(done)
	}()
	time.Sleep(e.phase / 4) // let the load settle before the fault
	st, err := in.status()
	if err != nil || len(st.Workers) == 0 {
		return row{}, fmt.Errorf("status: %v", err)
	}
	victim := st.Workers[0].PID
	syscall.Kill(victim, syscall.SIGSTOP)
	<-done
	syscall.Kill(victim, syscall.SIGCONT)
	hung := in.all("worker let a request pass the request timeout")
	return row{fmt.Sprintf("SIGSTOP of a serving warm-fork worker at 200 req/s, request_timeout 2 s, %s", e.phase),
		"requests lost (in flight on it when it stopped, or sent to it before it was declared hung) / times declared hung",
		fmt.Sprintf("%d of %d / %d", res.Errors, len(res.Latencies), len(hung)), "none after it was declared hung (TestNoRequestReachesAWorkerDeclaredHung)"}, nil
}

func sigstopTemplate(ctx context.Context, e *env) (row, error) {
	in, err := e.start(ctx, "sigstop-template", pool{fork: true, bootSeconds: 1.5})
	if err != nil {
		return row{}, err
	}
	defer in.stop()
	if err := in.ready(2 * time.Minute); err != nil {
		return row{}, err
	}
	st, err := in.status()
	if err != nil || len(st.Templates) == 0 {
		return row{}, fmt.Errorf("status: %+v %v", st, err)
	}
	tpl := st.Templates[0].PID
	syscall.Kill(tpl, syscall.SIGSTOP)
	defer syscall.Kill(tpl, syscall.SIGCONT)
	time.Sleep(50 * time.Millisecond) // the stop is delivered
	killed := time.Now()
	for _, w := range st.Workers {
		syscall.Kill(w.PID, syscall.SIGKILL)
	}
	cl := &http.Client{Timeout: 2 * time.Second}
	var back time.Duration
	for time.Since(killed) < 2*time.Minute {
		resp, err := cl.Get("http://" + in.listen + "/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				back = time.Since(killed)
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if back == 0 {
		return row{}, fmt.Errorf("never served again")
	}
	var boot time.Duration
	for _, r := range in.all("worker admitted into rotation") {
		if r.str("origin") == "fresh" {
			if d, err := time.ParseDuration(r.str("boot")); err == nil {
				boot = d
				break
			}
		}
	}
	return row{"SIGSTOP of the template, then kill -9 of both workers (boot 1.5 s)", "time to serve again / a fresh worker's boot",
		fmt.Sprintf("%s / %s", back.Round(10*time.Millisecond), boot.Round(10*time.Millisecond)), "at most the fresh boot + 1 s"}, nil
}

func crashLoop(ctx context.Context, e *env) (row, error) {
	in, err := e.start(ctx, "crash-loop", pool{fork: true, app: "broken:application"})
	if err != nil {
		return row{}, err
	}
	time.Sleep(e.loopFor / 2) // the loop runs for its time: that is what is measured
	half := in.bytes.Load()
	time.Sleep(e.loopFor / 2)
	in.stop()
	perMin := float64(in.bytes.Load()) / e.loopFor.Minutes()
	steady := float64(in.bytes.Load()-half) / (e.loopFor / 2).Minutes()
	attempts := len(in.all("worker spawned"))
	return row{fmt.Sprintf("a deploy that fails at import (chained traceback), warm fork, %s", e.loopFor),
		"warmpool's log per minute over the run (in its second half) / workers tried",
		fmt.Sprintf("%.1f KB (%.1f KB) / %d", perMin/1000, steady/1000, attempts), "the cause once in full, then counted"}, nil
}

// hogs keeps every CPU busy twice over until the returned func stops it.
func hogs() (func(), error) {
	var cmds []*exec.Cmd
	stop := func() {
		for _, h := range cmds {
			h.Process.Kill()
			h.Wait()
		}
	}
	for range 2 * runtime.NumCPU() {
		h := exec.Command("/bin/sh", "-c", "while :; do :; done")
		h.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := h.Start(); err != nil {
			stop()
			return nil, err
		}
		cmds = append(cmds, h)
	}
	return stop, nil
}

func startBusy(ctx context.Context, e *env) (row, error) {
	if _, err := exec.LookPath("uwsgi"); err != nil {
		return row{}, fmt.Errorf("uwsgi is needed: apt-get install uwsgi uwsgi-plugin-python3")
	}
	stopHogs, err := hogs()
	if err != nil {
		return row{}, err
	}
	defer stopHogs()
	time.Sleep(time.Second) // the hogs own the CPUs
	in, err := e.start(ctx, "start-busy", pool{count: 4, uwsgi: true, bootSeconds: 0.2})
	if err != nil {
		return row{}, err
	}
	defer in.stop()
	if err := in.ready(2 * time.Minute); err != nil {
		return row{}, err
	}
	return row{fmt.Sprintf("first start of a pool of 4 uWSGI workers, %d CPU hogs on %d CPUs", 2*runtime.NumCPU(), runtime.NumCPU()), "time to ready",
		time.Since(in.start).Round(10 * time.Millisecond).String(), "normal priority: nothing serves yet"}, nil
}

func stopBusy(ctx context.Context, e *env) (row, error) {
	if _, err := exec.LookPath("uwsgi"); err != nil {
		return row{}, fmt.Errorf("uwsgi is needed: apt-get install uwsgi uwsgi-plugin-python3")
	}
	in, err := e.start(ctx, "stop-busy", pool{count: 4, uwsgi: true, bootSeconds: 0.2})
	if err != nil {
		return row{}, err
	}
	if err := in.ready(2 * time.Minute); err != nil {
		in.stop()
		return row{}, err
	}
	stopHogs, err := hogs()
	if err != nil {
		in.stop()
		return row{}, err
	}
	defer stopHogs()
	time.Sleep(time.Second) // the hogs own the CPUs
	took := in.stop()
	return row{fmt.Sprintf("SIGTERM of an idle pool of 4 uWSGI workers, %d CPU hogs on %d CPUs", 2*runtime.NumCPU(), runtime.NumCPU()), "time to exit",
		took.Round(10 * time.Millisecond).String(), "at most 5 s"}, nil
}

func render(rows []row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Limits under faults (bench/chaos)\n\n%s, %d CPUs. `go run ./bench/chaos`.\n\n", benchutil.CPUModel(), runtime.NumCPU())
	b.WriteString("| scenario | measure | result | target |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.scenario, r.measure, r.result, r.target)
	}
	return b.String()
}
