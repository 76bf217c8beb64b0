package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"warmpool/bench/benchutil"
	"warmpool/bench/loadgen"
)

// The ASGI way (issue 22): an app that loads its model in its lifespan (1.5 s and about 50 MB:
// bench/fork/asgiapp), served from forks of a template whose lifespan ran once, against fresh
// uvicorn workers that each run it. Per app (Starlette's lifespan, FastAPI 0.92's
// on_event("startup")): lifespan startups, recycle trigger to admission, CPU to admission, PSS
// of 8 workers, errors and recycles at max_requests 50 under the open-loop rate.

// asgiApps are the apps of the ASGI way, by module.
var asgiApps = []string{"starlette_app", "fastapi_app"}

// asgiMaxRequests is the ASGI way's recycling: often, so that recycles are many.
const asgiMaxRequests = 50

// asgiResult is the ASGI way for one app.
type asgiResult struct {
	app               string
	sent, errors      int
	firstErr          string
	recycles          int
	waits             []time.Duration // recycle trigger to the replacement's admission
	forkCPU, freshCPU []time.Duration // per admitted worker, spawn (or fork) to admission
	startups          int             // the app's lifespan startups during the fork run
	generations       int
	forkPSS, freshPSS int64 // template + memWorkers forks; memWorkers fresh uvicorn workers
}

func (r *asgiResult) asked() float64 { return float64(r.sent) / asgiMaxRequests }

// asgiNeeds says what the ASGI way lacks here; "" when nothing.
func asgiNeeds(python string) string {
	if err := exec.Command(python, "-c", "import starlette, fastapi, uvicorn").Run(); err != nil {
		return python + " cannot import starlette, fastapi and uvicorn (apt-get install python3-starlette python3-fastapi python3-uvicorn)"
	}
	return ""
}

// asgiConfig is warmpool's configuration for the ASGI way: fork ([worker.python], lifespan in
// the template) or fresh (uvicorn started per worker by worker.command).
func asgiConfig(o options, app, dir, startupLog, addr, admin string, fork bool, count, maxRequests int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen = %q\nadmin_listen = %q\n[worker]\ndir = %q\ncount = %d\nconcurrency = 4\ngraceful_timeout = \"10s\"\n",
		addr, admin, dir, count)
	if maxRequests > 0 {
		fmt.Fprintf(&b, "max_requests = %d\n", maxRequests)
	}
	if !fork {
		fmt.Fprintf(&b, "command = [%q, \"-m\", \"uvicorn\", \"--uds\", \"{socket}\", \"--lifespan\", \"on\", \"--no-access-log\", \"%s:app\"]\n", o.python, app)
	}
	fmt.Fprintf(&b, "[worker.env]\nSTARTUP_LOG = %q\nPYTHONDONTWRITEBYTECODE = \"1\"\n", startupLog)
	if fork {
		fmt.Fprintf(&b, "[worker.python]\napp = \"%s:app\"\ninterface = \"asgi\"\nexecutable = %q\n", app, o.python)
	}
	b.WriteString("[proxy]\nqueue_timeout = \"30s\"\n[warmup]\ntimeout = \"60s\"\n[[warmup.request]]\npath = \"/\"\nrepeat = 2\n")
	return b.String()
}

// measureASGI runs the ASGI way for one app, appending to r.
func (e measureEnv) measureASGI(ctx context.Context, r *asgiResult) error {
	dir := filepath.Join(benchutil.ModuleRoot(), "bench", "fork", "asgiapp")
	startupLog := filepath.Join(e.tmp, r.app+"-startups.log")
	os.Remove(startupLog)
	start := func(fork bool, count, maxRequests int) (*instance, error) {
		addr, admin := benchutil.FreeAddr(), benchutil.FreeAddr()
		return startInstance(ctx, e.wp, e.tmp, asgiConfig(e.o, r.app, dir, startupLog, addr, admin, fork, count, maxRequests), addr, admin)
	}

	// Recycling under the open loop, forked.
	in, err := start(true, 2, asgiMaxRequests)
	if err != nil {
		return err
	}
	url := "http://" + in.Addr + "/"
	loadgen.Run(ctx, url, e.o.rate, e.o.warmFor, 30*time.Second)
	from := time.Now()
	lr := loadgen.Run(ctx, url, e.o.rate, e.o.duration, 30*time.Second)
	to := time.Now()
	r.sent += len(lr.Latencies)
	r.errors += lr.Errors
	if r.firstErr == "" {
		r.firstErr = lr.FirstErr
	}
	for _, line := range in.Logged("replacement admitted for a worker due for recycling", from, to) {
		if benchutil.Attr(line, "reason") == "max_requests" {
			r.recycles++
			r.waits = append(r.waits, benchutil.DurationAttr(line, "waited"))
		}
	}
	for _, line := range in.Logged("worker admitted into rotation", time.Time{}, to) { // the first forks too
		if benchutil.Attr(line, "origin") == "fork" {
			r.forkCPU = append(r.forkCPU, benchutil.DurationAttr(line, "boot_cpu"))
		}
	}
	in.Stop()
	r.generations++ // one template generation per run
	data, _ := os.ReadFile(startupLog)
	r.startups += strings.Count(string(data), "\n")

	// Fresh uvicorn workers: what each pays to admission, recycled the same way for a while.
	in, err = start(false, 2, asgiMaxRequests)
	if err != nil {
		return err
	}
	loadgen.Run(ctx, "http://"+in.Addr+"/", e.o.rate/4, e.o.duration/2, 30*time.Second)
	for _, line := range in.Logged("worker admitted into rotation", time.Time{}, time.Now().Add(time.Hour)) {
		r.freshCPU = append(r.freshCPU, benchutil.DurationAttr(line, "boot_cpu"))
	}
	in.Stop()

	// Memory: memWorkers workers after memRequests requests each, forked and fresh.
	for _, fork := range []bool{true, false} {
		in, err := start(fork, e.o.memWorkers, 0)
		if err != nil {
			return err
		}
		closedLoop(ctx, "http://"+in.Addr+"/", 2*e.o.memWorkers, e.o.memWorkers*e.o.memRequests, 10*time.Minute)
		st, err := in.status()
		if err != nil {
			in.Stop()
			return err
		}
		var total int64
		if tpl := st.templatePID(); tpl != 0 {
			total += pss(tpl)
		}
		for _, w := range st.Workers {
			total += treePSS(w.PID)
		}
		in.Stop()
		if fork {
			r.forkPSS = total
		} else {
			r.freshPSS = total
		}
	}
	return nil
}

// asgiChecks are issue 22's targets against the ASGI way.
func asgiChecks(results []*asgiResult) []check {
	var out []check
	for _, r := range results {
		out = append(out, check{r.app + ": lifespan startup once per template generation",
			fmt.Sprintf("%d startups in %d generations", r.startups, r.generations), r.startups == r.generations})
		w := benchutil.Median(r.waits)
		out = append(out, check{r.app + ": recycle trigger to admission, median at most 100 ms", ms(w), w > 0 && w <= 100*time.Millisecond})
		fork, fresh := benchutil.Median(r.forkCPU), benchutil.Median(r.freshCPU)
		ratio := float64(fork) / float64(max(fresh, 1))
		out = append(out, check{r.app + ": CPU to admission at most 5 % of a fresh uvicorn worker's",
			fmt.Sprintf("%s vs %s: %.1f %%", ms(fork), ms(fresh), 100*ratio), fork > 0 && ratio <= 0.05})
		pr := float64(r.forkPSS) / float64(max(r.freshPSS, 1))
		out = append(out, check{r.app + ": PSS of template + 8 workers at most 0.4x that of 8 fresh uvicorn workers",
			fmt.Sprintf("%s vs %s: %.2fx", mib(r.forkPSS), mib(r.freshPSS), pr), r.forkPSS > 0 && pr <= 0.4})
		rr := float64(r.recycles) / r.asked()
		out = append(out, check{r.app + ": zero errors, recycles at least 0.9x asked",
			fmt.Sprintf("%d errors of %d; %d of %.0f recycles: %.2f", r.errors, r.sent, r.recycles, r.asked(), rr), r.errors == 0 && rr >= 0.9})
	}
	return out
}

// renderASGI is the ASGI way's section of the report.
func renderASGI(o options, results []*asgiResult) string {
	if len(results) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## The ASGI way (issue 22)\n\nbench/fork/asgiapp: a lifespan that waits 1.5 s and builds about 50 MB of state; 2 workers x 4, max_requests %d, %d req/s open loop for %s per round (fork), warm-up `/` x2. fresh: uvicorn started per worker by `worker.command`, each running the lifespan.\n\n",
		asgiMaxRequests, o.rate, o.duration)
	b.WriteString("| app | lifespan startups (generations) | recycles / asked | errors | trigger to admission, median | CPU to admission, fork / fresh | PSS of 8 workers, fork (with template) / fresh |\n|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %d (%d) | %d / %.0f | %d | %s | %s / %s | %s / %s |\n", r.app, r.startups, r.generations, r.recycles, r.asked(), r.errors,
			ms(benchutil.Median(r.waits)), ms(benchutil.Median(r.forkCPU)), ms(benchutil.Median(r.freshCPU)), mib(r.forkPSS), mib(r.freshPSS))
	}
	b.WriteString("\n### Targets (issue 22)\n\n")
	for _, c := range asgiChecks(results) {
		mark := "met"
		if !c.ok {
			mark = "**not met**"
		}
		fmt.Fprintf(&b, "- %s: %s (%s)\n", c.what, c.got, mark)
	}
	return b.String()
}
