// Command fork measures warm fork (issue 12) on a real Django site (bench/fork/site: admin, the
// ORM on SQLite, a middleware that imports pandas lazily under a lock on each process's first
// request), behind warmpool with 2 workers x 4 threads at an open-loop 200 req/s. Three ways to
// make a worker, in rounds that interleave them:
//
//	fork      [worker.python]: each worker is a fork of the warm template (waitress in the child)
//	fresh     [worker.python] whose template refuses to fork (the app starts a thread at import):
//	          fresh processes of the same helper, the fallback
//	gunicorn  worker.command: a single-process gunicorn gthread worker per worker, started fresh
//	          (the way before warm fork)
//
// Per way and max_requests (none, 100, 25): latency, errors, requests that met a cold worker,
// recycles against what max_requests asks, the CPU and time a replacement takes to admission.
// Then memory (8 workers after 1000 requests each) and one worker's steady throughput.
//
//	go run ./bench/fork      # needs: apt-get install python3-django python3-pandas python3-waitress gunicorn
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"warmpool/bench/benchutil"
	"warmpool/bench/loadgen"
)

type options struct {
	rate        int
	rounds      int
	duration    time.Duration
	warmFor     time.Duration
	maxRequests []int
	memWorkers  int
	memRequests int
	tputFor     time.Duration
	out         string
	python      string
	ways        []way
	asgi        bool // measure the ASGI way too
}

// A way of making workers.
type way struct {
	name, note string
	// python: [worker.python] with the site's app; otherwise command, a worker.command.
	python  bool
	command string
	env     map[string]string
	// asgi serves the site's ASGI app (uvicorn in each worker) instead of its WSGI app.
	asgi bool
}

var ways = []way{
	{name: "fork", note: "[worker.python]: every worker is a fork of the warm template, served by waitress", python: true},
	{name: "fresh", note: "[worker.python] with a template that refuses to fork (the app starts a thread at import): fresh processes of the same helper, warmpool's fallback",
		python: true, env: map[string]string{"BENCH_THREAD_AT_IMPORT": "1"}},
	{name: "gunicorn", note: "worker.command: one single-process gunicorn gthread server per worker, started fresh (before warm fork)",
		command: `["gunicorn", "-b", "unix:{socket}", "-w", "1", "--threads", "4", "-k", "gthread", "benchsite.wsgi:application"]`},
}

func wayNamed(name string) (way, bool) {
	for _, w := range ways {
		if w.name == name {
			return w, true
		}
	}
	return way{}, false
}

// config is warmpool's configuration for one measurement.
func config(o options, w way, site, db, addr, admin string, count, maxRequests int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen = %q\nadmin_listen = %q\n[worker]\ndir = %q\ncount = %d\nconcurrency = 4\nmax_requests = %d\ngraceful_timeout = \"10s\"\n",
		addr, admin, site, count, maxRequests)
	if !w.python {
		fmt.Fprintf(&b, "command = %s\n", w.command)
	}
	fmt.Fprintf(&b, "[worker.env]\nBENCH_SQLITE = %q\nPYTHONDONTWRITEBYTECODE = \"1\"\n", db)
	for k, v := range w.env {
		fmt.Fprintf(&b, "%s = %q\n", k, v)
	}
	switch {
	case w.python && w.asgi:
		fmt.Fprintf(&b, "[worker.python]\napp = \"benchsite.asgi:application\"\ninterface = \"asgi\"\nexecutable = %q\n", o.python)
	case w.python:
		fmt.Fprintf(&b, "[worker.python]\napp = \"benchsite.wsgi:application\"\nexecutable = %q\n", o.python)
	}
	b.WriteString("[proxy]\nqueue_timeout = \"30s\"\n[warmup]\ntimeout = \"60s\"\n")
	for _, r := range warmupPlan {
		fmt.Fprintf(&b, "[[warmup.request]]\npath = %q\nheaders = { Host = %q }\nrepeat = %d\n", r.path, siteHost, r.repeat)
	}
	return b.String()
}

// siteHost is the Host the site's warm-up requests name (one of its ALLOWED_HOSTS).
const siteHost = "shop.example"

// warmupPlan is every way's warm-up: each path, repeated to reach the worker's four threads
// where its state is per thread (Django's database connections).
var warmupPlan = []struct {
	path   string
	repeat int
}{{"/products/", 4}, {"/admin/login/", 1}}

// describePlan is the warm-up plan for the report: "`/products/` x4 and `/admin/login/`".
func describePlan() string {
	parts := make([]string, len(warmupPlan))
	for i, r := range warmupPlan {
		parts[i] = "`" + r.path + "`"
		if r.repeat > 1 {
			parts[i] += fmt.Sprintf(" x%d", r.repeat)
		}
	}
	return strings.Join(parts, " and ")
}

func main() {
	var o options
	var maxRequests, wayNames string
	flag.IntVar(&o.rate, "rate", 200, "requests per second (open loop)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each measures every way and max_requests in turn, and pools the latencies")
	flag.DurationVar(&o.duration, "duration", 15*time.Second, "measured load per way, max_requests and round")
	flag.DurationVar(&o.warmFor, "warm", 3*time.Second, "unmeasured load first")
	flag.StringVar(&maxRequests, "max-requests", "0,100,25", "max_requests settings to measure (0: no recycling)")
	flag.StringVar(&wayNames, "ways", "fork,fresh,gunicorn", "ways to measure on the Django site (the targets need all three; \"\" for none)")
	flag.IntVar(&o.memWorkers, "mem-workers", 8, "workers of the memory measurement (0: no memory measurement)")
	flag.IntVar(&o.memRequests, "mem-requests", 1000, "requests per worker before memory is read")
	flag.DurationVar(&o.tputFor, "throughput", 10*time.Second, "closed-loop load on one worker for its steady throughput (0: none)")
	flag.StringVar(&o.out, "out", "bench/results/fork.md", "markdown results (empty: none)")
	flag.StringVar(&o.python, "python", "/usr/bin/python3", "the interpreter with Django, pandas and waitress")
	flag.BoolVar(&o.asgi, "asgi", true, "measure the ASGI way too (Starlette and FastAPI apps whose lifespan loads a model)")
	flag.Parse()
	for _, f := range strings.Split(maxRequests, ",") {
		var n int
		fmt.Sscan(f, &n)
		o.maxRequests = append(o.maxRequests, n)
	}
	for _, name := range strings.Split(wayNames, ",") {
		if name == "" {
			continue // -ways "": the ASGI way alone
		}
		w, ok := wayNamed(name)
		if !ok {
			fmt.Fprintf(os.Stderr, "fork: no way named %q\n", name)
			os.Exit(2)
		}
		o.ways = append(o.ways, w)
	}
	rep, err := run(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fork:", err)
		os.Exit(1)
	}
	md := render(o, rep)
	fmt.Print(md)
	if err := benchutil.WriteResult(o.out, md); err != nil {
		fmt.Fprintln(os.Stderr, "fork:", err)
		os.Exit(1)
	}
}

// needs says what is missing to run the benchmark; "" when nothing is.
func needs(python string) string {
	if err := exec.Command(python, "-c", "import django, pandas, waitress").Run(); err != nil {
		return python + " cannot import django, pandas and waitress (apt-get install python3-django python3-pandas python3-waitress)"
	}
	if _, err := exec.LookPath("gunicorn"); err != nil {
		return "gunicorn is not installed (apt-get install gunicorn)"
	}
	return ""
}

// report is every measurement.
type report struct {
	latency    []*latencyResult
	memory     []*memoryResult
	throughput []*throughputResult
	asgi       []*asgiResult
}

func run(ctx context.Context, o options) (*report, error) {
	if why := needs(o.python); why != "" {
		return nil, fmt.Errorf("%s", why)
	}
	root := benchutil.ModuleRoot()
	site := filepath.Join(root, "bench", "fork", "site")
	tmp, err := os.MkdirTemp("", "warmpool-fork-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	wp := filepath.Join(tmp, "warmpool")
	if err := benchutil.Build(ctx, wp, "./cmd/warmpool"); err != nil {
		return nil, err
	}
	db := filepath.Join(tmp, "shop.sqlite3")
	if err := prepareDB(ctx, o.python, site, db); err != nil {
		return nil, err
	}
	rep := &report{}
	for _, w := range o.ways {
		for _, mr := range o.maxRequests {
			rep.latency = append(rep.latency, &latencyResult{way: w, maxRequests: mr})
		}
		if o.memWorkers > 0 {
			rep.memory = append(rep.memory, &memoryResult{way: w})
		}
		if o.tputFor > 0 && w.name != "fresh" {
			rep.throughput = append(rep.throughput, &throughputResult{way: w})
		}
	}
	if o.asgi {
		if why := asgiNeeds(o.python); why != "" {
			return nil, fmt.Errorf("%s (or -asgi=false)", why)
		}
		for _, app := range asgiApps {
			rep.asgi = append(rep.asgi, &asgiResult{app: app})
		}
	}
	env := measureEnv{o: o, wp: wp, tmp: tmp, site: site, db: db}
	for round := range max(o.rounds, 1) {
		for _, r := range rep.latency {
			fmt.Fprintf(os.Stderr, "fork: round %d, %s, max_requests %d...\n", round+1, r.way.name, r.maxRequests)
			if err := env.measureLatency(ctx, r); err != nil {
				return nil, fmt.Errorf("%s, max_requests %d: %w", r.way.name, r.maxRequests, err)
			}
		}
		for _, r := range rep.memory {
			fmt.Fprintf(os.Stderr, "fork: round %d, memory of %s...\n", round+1, r.way.name)
			if err := env.measureMemory(ctx, r); err != nil {
				return nil, fmt.Errorf("memory of %s: %w", r.way.name, err)
			}
		}
		for _, r := range rep.throughput {
			fmt.Fprintf(os.Stderr, "fork: round %d, throughput of %s...\n", round+1, r.way.name)
			if err := env.measureThroughput(ctx, r); err != nil {
				return nil, fmt.Errorf("throughput of %s: %w", r.way.name, err)
			}
		}
		for _, r := range rep.asgi {
			fmt.Fprintf(os.Stderr, "fork: round %d, the ASGI way, %s...\n", round+1, r.app)
			if err := env.measureASGI(ctx, r); err != nil {
				return nil, fmt.Errorf("the ASGI way, %s: %w", r.app, err)
			}
		}
	}
	return rep, nil
}

func prepareDB(ctx context.Context, python, site, db string) error {
	for _, args := range [][]string{{"manage.py", "migrate", "-v0"}, {"manage.py", "seed"}} {
		cmd := exec.CommandContext(ctx, python, args...)
		cmd.Dir = site
		cmd.Env = append(os.Environ(), "BENCH_SQLITE="+db, "PYTHONDONTWRITEBYTECODE=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

type measureEnv struct {
	o                 options
	wp, tmp, site, db string
}

func (e measureEnv) start(ctx context.Context, w way, count, maxRequests int) (*instance, error) {
	addr, admin := benchutil.FreeAddr(), benchutil.FreeAddr()
	return startInstance(ctx, e.wp, e.tmp, config(e.o, w, e.site, e.db, addr, admin, count, maxRequests), addr, admin)
}

// latencyResult is one way at one max_requests, over every round.
type latencyResult struct {
	way                way
	maxRequests        int
	sent, errors, cold int
	firstErr           string
	latencies          []time.Duration
	roundP99s          []time.Duration
	recycles           int             // replacements admitted for workers due at max_requests
	bootCPU            []time.Duration // per replacement: its processes' CPU from spawn to admission
	templateCPU        time.Duration   // the template's CPU while the replacements were forked
	waits              []time.Duration // recycle trigger to the replacement's admission
	busy               float64         // the machine's busy cores during the load
	measured           time.Duration
}

func (e measureEnv) measureLatency(ctx context.Context, r *latencyResult) error {
	in, err := e.start(ctx, r.way, 2, r.maxRequests)
	if err != nil {
		return err
	}
	defer in.Stop()
	url := "http://" + in.Addr + "/products/?page=3"
	loadgen.Run(ctx, url, e.o.rate, e.o.warmFor, 30*time.Second)
	st, _ := in.status()
	tpl := st.templatePID()
	tplCPU := templateCPU(tpl)
	idle0, total0 := benchutil.MachineTicks()
	from := time.Now()
	lr := loadgen.Run(ctx, url, e.o.rate, e.o.duration, 30*time.Second)
	to := time.Now()
	idle1, total1 := benchutil.MachineTicks()
	if tpl != 0 {
		r.templateCPU += templateCPU(tpl) - tplCPU
	}
	if total1 > total0 {
		r.busy += (1 - (idle1-idle0)/(total1-total0)) * float64(numCPU())
	}
	r.measured += to.Sub(from)
	r.sent += len(lr.Latencies)
	r.errors += lr.Errors
	r.cold += lr.Cold
	if r.firstErr == "" {
		r.firstErr = lr.FirstErr
	}
	r.latencies = append(r.latencies, lr.Latencies...)
	_, p99, _ := loadgen.Percentiles(lr.Latencies)
	r.roundP99s = append(r.roundP99s, p99)
	for _, line := range in.Logged("replacement admitted for a worker due for recycling", from, to) {
		if benchutil.Attr(line, "reason") == "max_requests" {
			r.recycles++
			r.waits = append(r.waits, benchutil.DurationAttr(line, "waited"))
		}
	}
	for _, line := range in.Logged("worker admitted into rotation", from, to) {
		r.bootCPU = append(r.bootCPU, benchutil.DurationAttr(line, "boot_cpu"))
	}
	return nil
}

// templateCPU is what a template has spent: its own threads' CPU and that of the intermediate
// processes of its double forks, which it reaped (cutime and cstime, in clock ticks).
func templateCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	cpu := benchutil.ThreadCPU(pid)
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpu
	}
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) > 14 {
		var cu, cs float64
		fmt.Sscan(f[13], &cu)
		fmt.Sscan(f[14], &cs)
		cpu += time.Duration((cu + cs) / 100 * float64(time.Second))
	}
	return cpu
}

// memoryResult is the memory of memWorkers workers after memRequests requests each.
type memoryResult struct {
	way       way
	total     []int64 // per round: template plus workers (a gunicorn worker: arbiter plus worker)
	template  []int64
	served    int64   // in the last round
	perWorker []int64 // in the last round
}

func (e measureEnv) measureMemory(ctx context.Context, r *memoryResult) error {
	in, err := e.start(ctx, r.way, e.o.memWorkers, 0)
	if err != nil {
		return err
	}
	defer in.Stop()
	closedLoop(ctx, "http://"+in.Addr+"/products/?page=3", 2*e.o.memWorkers, e.o.memWorkers*e.o.memRequests, 10*time.Minute)
	st, err := in.status()
	if err != nil {
		return err
	}
	var total, tplPSS int64
	r.perWorker, r.served = nil, 0
	if tpl := st.templatePID(); tpl != 0 {
		tplPSS = pss(tpl)
		total += tplPSS
	}
	for _, w := range st.Workers {
		p := treePSS(w.PID)
		total += p
		r.perWorker = append(r.perWorker, p)
		r.served += w.Served
	}
	r.total = append(r.total, total)
	r.template = append(r.template, tplPSS)
	return nil
}

// throughputResult is one worker's steady throughput, closed loop.
type throughputResult struct {
	way  way
	rps  []float64
	errs int
	// planCPU, per round: the CPU the warm-up plan's requests cost the worker once it is warm
	// (its connections open, its pages copied), for a Python worker: the part of a fork's CPU
	// to admission that no fork can avoid while the plan runs against every new worker.
	planCPU []time.Duration
}

func (e measureEnv) measureThroughput(ctx context.Context, r *throughputResult) error {
	in, err := e.start(ctx, r.way, 1, 0)
	if err != nil {
		return err
	}
	defer in.Stop()
	url := "http://" + in.Addr + "/products/?page=3"
	closedLoop(ctx, url, 8, 1<<30, 2*time.Second) // unmeasured
	ok, errs, d := closedLoop(ctx, url, 8, 1<<30, e.o.tputFor)
	r.rps = append(r.rps, float64(ok)/d.Seconds())
	r.errs += errs
	if r.way.python {
		cpu, err := warmPlanCPU(ctx, in)
		if err != nil {
			return fmt.Errorf("the warm-up plan on a warm worker: %w", err)
		}
		r.planCPU = append(r.planCPU, cpu)
	}
	return nil
}

// warmPlanCPU is the CPU the worker of a one-worker instance spends on the warm-up plan's
// requests (each one's repeats at once, as warmpool sends them), the median of 20 runs.
func warmPlanCPU(ctx context.Context, in *instance) (time.Duration, error) {
	st, err := in.status()
	if err != nil || len(st.Workers) != 1 {
		return 0, fmt.Errorf("want one worker in the status: %v %+v", err, st.Workers)
	}
	pid := st.Workers[0].PID
	cl := &http.Client{Timeout: 30 * time.Second}
	get := func(path string) error {
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+in.Addr+path, nil)
		if err != nil {
			return err
		}
		req.Host = siteHost
		resp, err := cl.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return nil
	}
	var runs []time.Duration
	for range 20 {
		before := benchutil.ThreadCPU(pid)
		for _, r := range warmupPlan {
			errs := make(chan error, r.repeat)
			for range r.repeat {
				go func() { errs <- get(r.path) }()
			}
			for range r.repeat {
				if err := <-errs; err != nil {
					return 0, err
				}
			}
		}
		runs = append(runs, benchutil.ThreadCPU(pid)-before)
	}
	return benchutil.Median(runs), nil
}

// closedLoop sends requests from clients goroutines, each waiting for its answer, until limit
// requests or d passed; it returns the successes, the failures and the time taken.
func closedLoop(ctx context.Context, url string, clients, limit int, d time.Duration) (ok, errs int, took time.Duration) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var mu sync.Mutex
	sent := 0
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				mu.Lock()
				if sent >= limit || time.Now().After(deadline) || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				sent++
				mu.Unlock()
				resp, err := cl.Get(url)
				good := err == nil && resp.StatusCode == 200
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				if good {
					ok++
				} else {
					errs++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ok, errs, time.Since(start)
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}
