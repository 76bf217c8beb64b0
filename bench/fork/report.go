package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"warmpool/bench/benchutil"
	"warmpool/bench/loadgen"
)

func numCPU() int { return runtime.NumCPU() }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// replacementCPU is a replacement's CPU to admission: its own processes', plus its share of
// what the template spent forking.
func (r *latencyResult) replacementCPU() time.Duration {
	cpu := benchutil.Median(r.bootCPU)
	if n := len(r.bootCPU); n > 0 {
		cpu += r.templateCPU / time.Duration(n)
	}
	return cpu
}

// p99VsNone is this P99 over the same round's P99 without recycling, the median over rounds
// (benchutil.PairedRatio).
func (rep *report) p99VsNone(r *latencyResult) (float64, bool) {
	base := rep.find(r.way.name, 0)
	if base == nil {
		return 0, false
	}
	return benchutil.PairedRatio(r.roundP99s, base.roundP99s)
}

func (r *latencyResult) asked() float64 {
	if r.maxRequests == 0 {
		return 0
	}
	return float64(r.sent) / float64(r.maxRequests)
}

func (rep *report) find(way string, maxRequests int) *latencyResult {
	for _, r := range rep.latency {
		if r.way.name == way && r.maxRequests == maxRequests {
			return r
		}
	}
	return nil
}

func render(o options, rep *report) string {
	var b strings.Builder
	if len(o.ways) == 0 { // the ASGI way alone
		fmt.Fprintf(&b, "# Warm fork: the ASGI way\n\nMachine: %d CPUs, %s. Run: %s. Command: `go run ./bench/fork -ways \"\" -rate %d -duration %s -rounds %d`\n",
			runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 MST"), o.rate, o.duration, o.rounds)
		b.WriteString(renderASGI(o, rep.asgi))
		return b.String()
	}
	fmt.Fprintf(&b, "# Warm fork on a Django site\n\n")
	fmt.Fprintf(&b, "bench/fork/site: Django %s with the admin, the ORM on SQLite (persistent connections), and a middleware that imports pandas lazily, under a lock, on each process's first request. ",
		"3.2 (Debian)")
	fmt.Fprintf(&b, "warmpool with 2 workers x 4 threads; open loop at %d req/s on `/products/?page=3` for %s per way, max_requests and round, after %s of unmeasured load; %d rounds that interleave every way. Warm-up: %s.\n\n",
		o.rate, o.duration, o.warmFor, o.rounds, describePlan())
	fmt.Fprintf(&b, "Machine: %d CPUs, %s. Run: %s. Command: `go run ./bench/fork -rate %d -duration %s -rounds %d`\n\n",
		runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 MST"), o.rate, o.duration, o.rounds)
	for _, w := range ways {
		fmt.Fprintf(&b, "- **%s**: %s\n", w.name, w.note)
	}
	b.WriteString("\n## Recycling under load\n\n")
	b.WriteString("| way | max_requests | requests | errors | met a cold worker | recycles (max_requests asks) | P50 | P99 | P99 per round | P99 / no recycling (median of rounds) | replacement CPU to admission (median) | recycle trigger to admission (median) | busy cores |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n")
	for _, r := range rep.latency {
		p50, p99, _ := loadgen.Percentiles(r.latencies)
		rounds := durations(r.roundP99s)
		mr, recycles, vsNone, cpu, wait := "none", "", "", "", ""
		if r.maxRequests > 0 {
			mr = fmt.Sprint(r.maxRequests)
			recycles = fmt.Sprintf("%d (%.0f)", r.recycles, r.asked())
			if ratio, ok := rep.p99VsNone(r); ok {
				vsNone = fmt.Sprintf("%.2fx", ratio)
			}
			cpu = ms(r.replacementCPU())
			wait = ms(benchutil.Median(r.waits))
		}
		busy := 0.0
		if r.measured > 0 {
			busy = r.busy / float64(max(len(r.roundP99s), 1))
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %.2f |\n", r.way.name, mr, r.sent, r.errors, r.cold,
			recycles, ms(p50), ms(p99), rounds, vsNone, cpu, wait, busy)
	}
	b.WriteString("\nReplacement CPU is the CPU time of the new worker's processes from spawn (or fork) to admission, read by warmpool at admission (`boot_cpu` in its log, `warmpool_worker_boot_cpu_seconds`); for a fork it adds the template's CPU over the run divided by the forks (its own, and that of the intermediate processes of its double forks, which it reaps). Recycle trigger to admission is from the moment a worker is due (`warmpool_recycle_wait_seconds`). Busy cores: the whole machine, load generator included.\n")
	for _, r := range rep.latency {
		if r.firstErr != "" {
			fmt.Fprintf(&b, "\n- %s at max_requests %d: first error: %s", r.way.name, r.maxRequests, r.firstErr)
		}
	}

	b.WriteString("\n## Memory\n\n")
	fmt.Fprintf(&b, "%d workers x 4 threads, after %d requests each (closed loop), PSS from /proc/PID/smaps_rollup (shared pages counted once across the processes that share them).\n\n", o.memWorkers, o.memRequests)
	b.WriteString("| way | PSS in all, per round | of which the template | PSS per worker (last round) | requests served (last round) |\n|---|---|---:|---|---:|\n")
	for _, r := range rep.memory {
		totals := make([]string, len(r.total))
		for i, t := range r.total {
			totals[i] = mib(t)
		}
		per := make([]string, len(r.perWorker))
		for i, p := range r.perWorker {
			per[i] = mib(p)
		}
		tpl := "—"
		if n := len(r.template); n > 0 && r.template[n-1] > 0 {
			tpl = mib(r.template[n-1])
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d |\n", r.way.name, strings.Join(totals, ", "), tpl, strings.Join(per, ", "), r.served)
	}
	b.WriteString("\nA gunicorn worker's PSS includes its arbiter process.\n")

	b.WriteString("\n## One worker's steady throughput\n\n")
	fmt.Fprintf(&b, "1 worker x 4 threads, no recycling, 8 clients in a closed loop for %s after 2 s unmeasured, through warmpool.\n\n", o.tputFor)
	b.WriteString("| way | requests/s per round | errors | the warm-up plan's requests on this warm worker: CPU per round |\n|---|---|---:|---|\n")
	for _, r := range rep.throughput {
		rps := make([]string, len(r.rps))
		for i, v := range r.rps {
			rps[i] = fmt.Sprintf("%.0f", v)
		}
		plan := "—"
		if len(r.planCPU) > 0 {
			plan = durations(r.planCPU)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s |\n", r.way.name, strings.Join(rps, ", "), r.errs, plan)
	}
	b.WriteString("\nThe warm-up plan on a warm worker (its connections open, its pages copied; median of 20 runs per round) is the part of a forked replacement's CPU to admission that no fork avoids while warmpool runs the plan against every new worker.\n")

	b.WriteString("\n## Targets (issue 12)\n\n")
	for _, c := range rep.checks() {
		mark := "met"
		if !c.ok {
			mark = "**not met**"
		}
		fmt.Fprintf(&b, "- %s: %s (%s)\n", c.what, c.got, mark)
	}
	b.WriteString(renderASGI(o, rep.asgi))
	return b.String()
}

func durations(ds []time.Duration) string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = ms(d)
	}
	return strings.Join(out, ", ")
}

type check struct {
	what, got string
	ok        bool
}

// warmPlanCPU is the median over rounds of the warm-up plan's CPU on a warm forked worker.
func (rep *report) warmPlanCPU() time.Duration {
	for _, t := range rep.throughput {
		if t.way.name == "fork" {
			return benchutil.Median(t.planCPU)
		}
	}
	return 0
}

// checks holds each target of issue 12 against the measurements.
func (rep *report) checks() []check {
	var out []check
	for _, mr := range []int{100, 25} {
		fork, gun, fresh, none := rep.find("fork", mr), rep.find("gunicorn", mr), rep.find("fresh", mr), rep.find("fork", 0)
		if fork == nil {
			continue
		}
		for _, base := range []*latencyResult{gun, fresh} {
			if base == nil || len(base.bootCPU) == 0 {
				continue
			}
			ratio := float64(fork.replacementCPU()) / float64(base.replacementCPU())
			got := fmt.Sprintf("%s vs %s: %.1f %%", ms(fork.replacementCPU()), ms(base.replacementCPU()), 100*ratio)
			if plan := rep.warmPlanCPU(); plan > 0 {
				got += fmt.Sprintf("; the warm-up plan alone, on a warm worker: %s = %.1f %%", ms(plan), 100*float64(plan)/float64(base.replacementCPU()))
			}
			out = append(out, check{fmt.Sprintf("CPU per replacement at max_requests %d, fork vs %s: at most 5 %%", mr, base.way.name), got, ratio <= 0.05})
		}
		w := benchutil.Median(fork.waits)
		out = append(out, check{fmt.Sprintf("recycle trigger to admission at max_requests %d, fork: median at most 100 ms", mr), ms(w), w > 0 && w <= 100*time.Millisecond})
		ratio := float64(fork.recycles) / fork.asked()
		out = append(out, check{fmt.Sprintf("recycles at max_requests %d, fork: at least 0.9 x requests / max_requests", mr),
			fmt.Sprintf("%d of %.0f: %.2f", fork.recycles, fork.asked(), ratio), ratio >= 0.9})
		if r, ok := rep.p99VsNone(fork); ok && none != nil {
			out = append(out, check{fmt.Sprintf("P99 at max_requests %d, fork: at most 1.25x no recycling (median of the rounds' ratios), zero errors, zero cold", mr),
				fmt.Sprintf("%.2fx (per round %s vs %s); %d errors; %d cold", r, durations(fork.roundP99s), durations(none.roundP99s), fork.errors, fork.cold),
				r <= 1.25 && fork.errors == 0 && fork.cold == 0})
		}
	}
	var forkMem, freshMem int64
	for _, m := range rep.memory {
		if n := len(m.total); n > 0 {
			switch m.way.name {
			case "fork":
				forkMem = m.total[n-1]
			case "fresh":
				freshMem = m.total[n-1]
			}
		}
	}
	if forkMem > 0 && freshMem > 0 {
		r := float64(forkMem) / float64(freshMem)
		out = append(out, check{"PSS of template + 8 workers: at most 0.5x that of 8 fresh workers",
			fmt.Sprintf("%s vs %s: %.2fx", mib(forkMem), mib(freshMem), r), r <= 0.5})
	}
	var forkRPS, gunRPS float64
	for _, t := range rep.throughput {
		if len(t.rps) == 0 {
			continue
		}
		sum := 0.0
		for _, v := range t.rps {
			sum += v
		}
		switch t.way.name {
		case "fork":
			forkRPS = sum / float64(len(t.rps))
		case "gunicorn":
			gunRPS = sum / float64(len(t.rps))
		}
	}
	if forkRPS > 0 && gunRPS > 0 {
		r := forkRPS / gunRPS
		out = append(out, check{"a forked worker's steady throughput: at least 0.9x a single-process gunicorn gthread worker's",
			fmt.Sprintf("%.0f vs %.0f req/s: %.2fx", forkRPS, gunRPS, r), r >= 0.9})
	}
	return out
}
