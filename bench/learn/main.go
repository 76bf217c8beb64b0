// Command learn measures learning from traffic (issue 23) on a Django site with five routes, each
// with lazy work of its own (bench/learn/site: a CSV export that imports pandas on first use, an
// RSS feed, a report page with its own template and filters, the admin login, and the home
// page), behind warmpool with 2 workers x 4 threads at an open-loop 200 req/s of mixed traffic
// (the five routes in turn), Python workers forked from a warm template. In rounds that
// interleave them, per max_requests (100, 25):
//
//	every route   the warm-up plan names all five routes; learning off: the reference
//	learning      the plan names / only; learning on, from an empty state: measured after
//	              -learn-for (60 s) of traffic
//	restarted     the plan names / only; a new warmpool with the state the learning run left:
//	              measured from its first request
//	one route     the plan names / only; learning off: what a first plan costs without it
//
// and, without recycling, the steady state with learning on and off (the plan names every
// route): P99 and CPU per request.
//
//	go run ./bench/learn     # needs: apt-get install python3-django python3-pandas python3-waitress
package main

import (
	"context"
	"flag"
	"fmt"
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
	rate        int
	rounds      int
	duration    time.Duration
	warmFor     time.Duration
	learnFor    time.Duration
	maxRequests []int
	steady      bool
	out         string
	python      string
	scenarios   []scenario // in the order of the scenarios table
}

// The routes, in the order the mixed traffic takes them.
var routes = []string{"/", "/export.csv", "/feed/", "/report/", "/admin/login/"}

// siteHost is a Host the site allows, which the warm-up plan names.
const siteHost = "catalog.example"

// A scenario is one way of configuring the warm-up.
type scenario struct {
	name, note string
	everyRoute bool // the plan names every route (else / only)
	learn      bool
	// learnFirst: measured after learnFor of traffic; restart: started with the state the
	// learning run of the same max_requests left.
	learnFirst, restart bool
}

var scenarios = []scenario{
	{name: "every route", note: "the plan names all five routes; learning off (the reference)", everyRoute: true},
	{name: "learning", note: "the plan names `/` only; learning on from an empty state, measured after the learning period", learn: true, learnFirst: true},
	{name: "restarted", note: "the plan names `/` only; a new warmpool started with the state file the learning run left, measured from its first request", learn: true, restart: true},
	{name: "one route", note: "the plan names `/` only; learning off (what a first plan costs without it)"},
}

func main() {
	var o options
	var maxRequests, names string
	flag.IntVar(&o.rate, "rate", 200, "requests per second (open loop)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each measures every scenario in turn")
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "measured load per scenario, max_requests and round")
	flag.DurationVar(&o.warmFor, "warm", 3*time.Second, "unmeasured load first (not for the restarted scenario)")
	flag.DurationVar(&o.learnFor, "learn-for", 60*time.Second, "traffic before the learning scenario is measured")
	flag.StringVar(&maxRequests, "max-requests", "100,25", "max_requests settings to measure")
	flag.StringVar(&names, "scenarios", "every route,learning,restarted,one route", "the scenarios to measure (restarted needs learning)")
	flag.BoolVar(&o.steady, "steady", true, "measure the steady state (no recycling) with learning on and off")
	flag.StringVar(&o.out, "out", "bench/results/learn.md", "markdown results (empty: none)")
	flag.StringVar(&o.python, "python", "/usr/bin/python3", "the interpreter with Django, pandas and waitress")
	flag.Parse()
	for _, f := range strings.Split(maxRequests, ",") {
		var n int
		fmt.Sscan(f, &n)
		o.maxRequests = append(o.maxRequests, n)
	}
	for _, name := range strings.Split(names, ",") {
		i := slices.IndexFunc(scenarios, func(sc scenario) bool { return sc.name == strings.TrimSpace(name) })
		if i < 0 {
			fmt.Fprintf(os.Stderr, "learn: no scenario named %q\n", name)
			os.Exit(2)
		}
		o.scenarios = append(o.scenarios, scenarios[i])
	}
	rep, err := run(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "learn:", err)
		os.Exit(1)
	}
	md := render(o, rep)
	fmt.Print(md)
	if err := benchutil.WriteResult(o.out, md); err != nil {
		fmt.Fprintln(os.Stderr, "learn:", err)
		os.Exit(1)
	}
}

// needs says what is missing to run the benchmark; "" when nothing is.
func needs(python string) string {
	if err := exec.Command(python, "-c", "import django, pandas, waitress").Run(); err != nil {
		return python + " cannot import django, pandas and waitress (apt-get install python3-django python3-pandas python3-waitress)"
	}
	return ""
}

// result is one scenario at one max_requests, over every round.
type result struct {
	sc                   scenario
	maxRequests          int
	sent, errors         int
	firstErr             string
	latencies            []time.Duration
	roundP99s            []time.Duration
	recycles             int
	bootCPU              []time.Duration // per worker admitted while measured: its CPU from fork to admission
	busy                 float64         // busy cores, summed over rounds
	measured             time.Duration
	learnedRequests      []int // per round: learned requests and modules when measured
	learnedModules       []int
	rebuilds             []int
	routeLatencies       [][]time.Duration // per route
	learnedConfig        string            // what `warmpool learned` printed after the last round's learning run
	statePath            string            // the learning run's state, for the restarted scenario
	firstRouteP99Restart time.Duration
}

type report struct {
	results []*result
	steady  []*result // learn off, learn on; maxRequests 0
}

func run(ctx context.Context, o options) (*report, error) {
	if why := needs(o.python); why != "" {
		return nil, fmt.Errorf("%s", why)
	}
	root := benchutil.ModuleRoot()
	site := filepath.Join(root, "bench", "learn", "site")
	tmp, err := os.MkdirTemp("", "warmpool-learn-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	wp := filepath.Join(tmp, "warmpool")
	if err := benchutil.Build(ctx, wp, "./cmd/warmpool"); err != nil {
		return nil, err
	}
	rep := &report{}
	for _, mr := range o.maxRequests {
		for _, sc := range o.scenarios {
			rep.results = append(rep.results, &result{sc: sc, maxRequests: mr, routeLatencies: make([][]time.Duration, len(routes))})
		}
	}
	if o.steady {
		for _, learn := range []bool{false, true} {
			rep.steady = append(rep.steady, &result{sc: scenario{name: fmt.Sprintf("learn = %v", learn), everyRoute: true, learn: learn},
				routeLatencies: make([][]time.Duration, len(routes))})
		}
	}
	env := measureEnv{o: o, wp: wp, tmp: tmp, site: site}
	for round := range max(o.rounds, 1) {
		for _, r := range rep.results {
			fmt.Fprintf(os.Stderr, "learn: round %d, %s, max_requests %d...\n", round+1, r.sc.name, r.maxRequests)
			if r.sc.restart {
				learning := rep.find("learning", r.maxRequests)
				if learning == nil {
					return nil, fmt.Errorf("the restarted scenario needs the learning one")
				}
				r.statePath = learning.statePath
			}
			if err := env.measure(ctx, r, round); err != nil {
				return nil, fmt.Errorf("%s, max_requests %d: %w", r.sc.name, r.maxRequests, err)
			}
		}
		for _, r := range rep.steady {
			fmt.Fprintf(os.Stderr, "learn: round %d, steady state, %s...\n", round+1, r.sc.name)
			if err := env.measure(ctx, r, round); err != nil {
				return nil, fmt.Errorf("steady state, %s: %w", r.sc.name, err)
			}
		}
	}
	return rep, nil
}

func (rep *report) find(name string, maxRequests int) *result {
	for _, r := range rep.results {
		if r.sc.name == name && r.maxRequests == maxRequests {
			return r
		}
	}
	return nil
}

type measureEnv struct {
	o             options
	wp, tmp, site string
}

// config is warmpool's configuration for a scenario.
func (e measureEnv) config(sc scenario, addr, admin, state string, maxRequests int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen = %q\nadmin_listen = %q\n[worker]\ndir = %q\ncount = 2\nconcurrency = 4\nmax_requests = %d\ngraceful_timeout = \"10s\"\n",
		addr, admin, e.site, maxRequests)
	b.WriteString("[worker.env]\nPYTHONDONTWRITEBYTECODE = \"1\"\n")
	fmt.Fprintf(&b, "[worker.python]\napp = \"learnsite.wsgi:application\"\nexecutable = %q\n", e.o.python)
	b.WriteString("[proxy]\nqueue_timeout = \"30s\"\n")
	fmt.Fprintf(&b, "[warmup]\ntimeout = \"60s\"\nlearn = %v\nlearn_state = %q\n", sc.learn, state)
	plan := routes[:1]
	if sc.everyRoute {
		plan = routes
	}
	for _, path := range plan {
		repeat := 1
		if path == "/" {
			repeat = 4 // each of the worker's threads
		}
		fmt.Fprintf(&b, "[[warmup.request]]\npath = %q\nheaders = { Host = %q }\nrepeat = %d\n", path, siteHost, repeat)
	}
	return b.String()
}

// measure runs one scenario for one round.
func (e measureEnv) measure(ctx context.Context, r *result, round int) error {
	state := "off"
	switch {
	case r.sc.learnFirst:
		state = filepath.Join(e.tmp, fmt.Sprintf("learned-%d-%d.json", r.maxRequests, round))
		r.statePath = state
	case r.sc.restart:
		state = r.statePath
	}
	addr, admin := benchutil.FreeAddr(), benchutil.FreeAddr()
	in, err := benchutil.StartInstance(ctx, e.wp, e.tmp, e.config(r.sc, addr, admin, state, r.maxRequests), addr, admin)
	if err != nil {
		return err
	}
	defer in.Stop()
	urls := make([]string, len(routes))
	for i, p := range routes {
		urls[i] = "http://" + addr + p
	}
	switch {
	case r.sc.learnFirst:
		loadgen.RunMix(ctx, urls, e.o.rate, e.o.learnFor, 30*time.Second)
	case !r.sc.restart:
		loadgen.RunMix(ctx, urls, e.o.rate, e.o.warmFor, 30*time.Second)
	}
	idle0, total0 := benchutil.MachineTicks()
	from := time.Now()
	lr := loadgen.RunMix(ctx, urls, e.o.rate, e.o.duration, 30*time.Second)
	to := time.Now()
	idle1, total1 := benchutil.MachineTicks()
	if total1 > total0 {
		r.busy += (1 - (idle1-idle0)/(total1-total0)) * float64(numCPU())
	}
	r.measured += to.Sub(from)
	r.sent += len(lr.Latencies)
	r.errors += lr.Errors
	if r.firstErr == "" {
		r.firstErr = lr.FirstErr
	}
	r.latencies = append(r.latencies, lr.Latencies...)
	for i, d := range lr.Latencies {
		r.routeLatencies[lr.URL[i]] = append(r.routeLatencies[lr.URL[i]], d)
	}
	_, p99, _ := loadgen.Percentiles(lr.Latencies)
	r.roundP99s = append(r.roundP99s, p99)
	for _, line := range in.Logged("replacement admitted for a worker due for recycling", from, to) {
		if benchutil.Attr(line, "reason") == "max_requests" {
			r.recycles++
		}
	}
	for _, line := range in.Logged("worker admitted into rotation", from, to) {
		r.bootCPU = append(r.bootCPU, benchutil.DurationAttr(line, "boot_cpu"))
	}
	var st struct {
		Learned *struct {
			Rebuilds int `json:"rebuilds"`
			Requests []struct {
				State string `json:"state"`
			} `json:"requests"`
			Modules []struct {
				State string `json:"state"`
			} `json:"modules"`
		} `json:"learned"`
	}
	if err := benchutil.Status(admin, &st); err != nil {
		return err
	}
	if st.Learned != nil {
		reqs, mods := 0, 0
		for _, q := range st.Learned.Requests {
			if q.State == "learned" {
				reqs++
			}
		}
		for _, m := range st.Learned.Modules {
			if m.State == "learned" {
				mods++
			}
		}
		r.learnedRequests = append(r.learnedRequests, reqs)
		r.learnedModules = append(r.learnedModules, mods)
		r.rebuilds = append(r.rebuilds, st.Learned.Rebuilds)
	}
	if r.sc.learnFirst {
		in.Stop() // saves the state
		out, err := exec.CommandContext(ctx, e.wp, "learned", "--state", state).CombinedOutput()
		if err != nil {
			return fmt.Errorf("warmpool learned: %v\n%s", err, out)
		}
		r.learnedConfig = string(out)
	}
	return nil
}
