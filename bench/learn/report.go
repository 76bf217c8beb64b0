package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"warmpool/bench/benchutil"
	"warmpool/bench/loadgen"
)

func numCPU() int { return runtime.NumCPU() }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// vs is r's P99 over ref's in the same round, the median over rounds (benchutil.PairedRatio).
func vs(r, ref *result) (float64, bool) {
	if ref == nil {
		return 0, false
	}
	return benchutil.PairedRatio(r.roundP99s, ref.roundP99s)
}

func (r *result) asked() float64 {
	if r.maxRequests == 0 {
		return 0
	}
	return float64(r.sent) / float64(r.maxRequests)
}

// cpuPerRequest is the machine's busy CPU per request (the load generator included).
func (r *result) cpuPerRequest() time.Duration {
	if r.sent == 0 {
		return 0
	}
	rounds := float64(max(len(r.roundP99s), 1))
	busySeconds := r.busy / rounds * r.measured.Seconds()
	return time.Duration(busySeconds / float64(r.sent) * float64(time.Second))
}

func scenarioNames(scs []scenario) string {
	names := make([]string, len(scs))
	for i, sc := range scs {
		names[i] = sc.name
	}
	return strings.Join(names, ",")
}

func ints(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ", ")
}

func durations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.0f", float64(d.Microseconds())/1000)
	}
	return strings.Join(parts, ", ") + " ms"
}

type target struct {
	what, measured string
	met            bool
}

func render(o options, rep *report) string {
	var b strings.Builder
	b.WriteString("# Learning from traffic on a Django site\n\n")
	fmt.Fprintf(&b, "bench/learn/site: Django 3.2 (Debian) with five routes, each with lazy work of its own: `/export.csv` imports pandas on first use, `/feed/` runs Django's syndication framework, `/report/` renders its own template with humanize filters, `/admin/login/` the admin's login page, `/` a small template. "+
		"warmpool with 2 workers x 4 threads forked from a warm template; open loop at %d req/s of the five routes in turn for %s per scenario, max_requests and round (after %s of unmeasured load; the learning scenario after %s of traffic; the restarted one from its first request); %d rounds that interleave the scenarios.\n\n",
		o.rate, o.duration, o.warmFor, o.learnFor, o.rounds)
	fmt.Fprintf(&b, "Machine: %d CPUs, %s. Run: %s. Command: `go run ./bench/learn -rate %d -duration %s -learn-for %s -rounds %d -max-requests %s -scenarios %q`\n\n",
		runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 MST"), o.rate, o.duration, o.learnFor, o.rounds,
		strings.Trim(strings.Join(strings.Fields(fmt.Sprint(o.maxRequests)), ","), "[]"), scenarioNames(o.scenarios))
	for _, sc := range o.scenarios {
		fmt.Fprintf(&b, "- **%s**: %s\n", sc.name, sc.note)
	}
	b.WriteString("\n## Targets (issue 23)\n\n| target | measured | met |\n|---|---|---|\n")
	for _, t := range targets(rep) {
		met := "no"
		if t.met {
			met = "yes"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.what, t.measured, met)
	}
	b.WriteString("\n## Recycling under mixed traffic\n\n")
	b.WriteString("| scenario | max_requests | requests | errors | recycles (max_requests asks) | P50 | P99 | P99 per round | P99 / every route (median of rounds) | learned requests, modules (per round) | rebuilds (per round) | worker CPU to admission (median) | busy cores |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|---:|---:|\n")
	for _, r := range rep.results {
		p50, p99, _ := loadgen.Percentiles(r.latencies)
		ratio := ""
		if x, ok := vs(r, rep.find("every route", r.maxRequests)); ok {
			ratio = fmt.Sprintf("%.2fx", x)
		}
		learned, rebuilds := "—", "—"
		if r.sc.learn {
			learned = ints(r.learnedRequests) + "; " + ints(r.learnedModules)
			rebuilds = ints(r.rebuilds)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d (%.0f) | %s | %s | %s | %s | %s | %s | %s | %.2f |\n", r.sc.name, r.maxRequests, r.sent, r.errors,
			r.recycles, r.asked(), ms(p50), ms(p99), durations(r.roundP99s), ratio, learned, rebuilds, ms(benchutil.Median(r.bootCPU)), r.busy/float64(max(len(r.roundP99s), 1)))
	}
	b.WriteString("\nRebuilds count the template rebuilds of that warmpool since it started (the restarted one starts with the learned state: its first template has it). Worker CPU to admission: a new worker's CPU from its fork to its admission, its warm-up included (`boot_cpu` in the log). Busy cores: the whole machine, load generator included.\n")
	for _, r := range append(slices.Clone(rep.results), rep.steady...) {
		if r.firstErr != "" {
			fmt.Fprintf(&b, "\n- %s at max_requests %d: first error: %s", r.sc.name, r.maxRequests, r.firstErr)
		}
	}
	b.WriteString("\n## P99 per route\n\n| scenario | max_requests |")
	for _, p := range routes {
		fmt.Fprintf(&b, " `%s` |", p)
	}
	b.WriteString("\n|---|---:|" + strings.Repeat("---:|", len(routes)) + "\n")
	for _, r := range append(slices.Clone(rep.results), rep.steady...) {
		fmt.Fprintf(&b, "| %s | %d |", r.sc.name, r.maxRequests)
		for i := range routes {
			_, p99, _ := loadgen.Percentiles(r.routeLatencies[i])
			fmt.Fprintf(&b, " %s |", ms(p99))
		}
		b.WriteString("\n")
	}
	if len(rep.steady) == 2 {
		b.WriteString("\n## The steady state: learning on and off\n\nNo recycling; the plan names every route.\n\n| learning | requests | errors | P50 | P99 | P99 per round | busy CPU per request |\n|---|---:|---:|---:|---:|---|---:|\n")
		for _, r := range rep.steady {
			p50, p99, _ := loadgen.Percentiles(r.latencies)
			fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s |\n", r.sc.name, r.sent, r.errors, ms(p50), ms(p99), durations(r.roundP99s),
				fmt.Sprintf("%.0f us", float64(r.cpuPerRequest().Nanoseconds())/1000))
		}
	}
	if r := rep.find("learning", o.maxRequests[0]); r != nil && r.learnedConfig != "" {
		fmt.Fprintf(&b, "\n## What was learned\n\n`warmpool learned` after the last round's learning run at max_requests %d:\n\n```toml\n%s```\n", r.maxRequests, r.learnedConfig)
	}
	return b.String()
}

// targets are the figures, each with what was measured.
func targets(rep *report) []target {
	var out []target
	for _, name := range []string{"learning", "restarted"} {
		for _, r := range rep.results {
			if r.sc.name != name {
				continue
			}
			if x, ok := vs(r, rep.find("every route", r.maxRequests)); ok {
				what := fmt.Sprintf("%s, max_requests %d: P99 within 1.25x of every route in the plan", name, r.maxRequests)
				out = append(out, target{what, fmt.Sprintf("%.2fx", x), x <= 1.25})
			}
			if r.maxRequests > 0 {
				ratio := float64(r.recycles) / r.asked()
				out = append(out, target{fmt.Sprintf("%s, max_requests %d: recycles >= 0.9x asked", name, r.maxRequests),
					fmt.Sprintf("%d of %.0f: %.2f", r.recycles, r.asked(), ratio), ratio >= 0.9})
			}
		}
	}
	errs, sent := 0, 0
	for _, r := range append(slices.Clone(rep.results), rep.steady...) {
		if r.sc.learn {
			errs += r.errors
			sent += r.sent
		}
	}
	out = append(out, target{"zero errors with learning on", fmt.Sprintf("%d of %d", errs, sent), errs == 0})
	if len(rep.steady) == 2 {
		off, on := rep.steady[0], rep.steady[1]
		if x, ok := vs(on, off); ok {
			out = append(out, target{"steady state: P99 with learning within 3 % of without", fmt.Sprintf("%.3fx", x), x <= 1.03})
		}
		if c0, c1 := off.cpuPerRequest(), on.cpuPerRequest(); c0 > 0 {
			x := float64(c1) / float64(c0)
			out = append(out, target{"steady state: CPU per request with learning within 3 % of without",
				fmt.Sprintf("%.0f vs %.0f us: %.3fx", float64(c1.Nanoseconds())/1000, float64(c0.Nanoseconds())/1000, x), x <= 1.03})
		}
	}
	return out
}
