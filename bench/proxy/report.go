package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"warmpool/bench/benchutil"
)

func us(d time.Duration) string { return fmt.Sprintf("%.1f us", float64(d.Nanoseconds())/1000) }
func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func renderMarkdown(o options, results []result) string {
	var b strings.Builder
	byName := map[string]*result{}
	for i := range results {
		if results[i].skipped == "" {
			byName[results[i].name] = &results[i]
		}
	}
	fmt.Fprintf(&b, "# Proxy cost: warmpool next to nginx and HAProxy\n\n")
	fmt.Fprintf(&b, "Two trivial workers (bench/upstream: 64-byte body) on loopback TCP; each proxy in front of two such workers. ")
	fmt.Fprintf(&b, "The last two rows put warmpool and nginx in front of workers on unix sockets (warmpool's default transport) and compare with each other. ")
	fmt.Fprintf(&b, "`go relay (floor)` is not a proxy but the cheapest relay Go can be here with a goroutine per connection (bench/gorelay: no parsing, one worker connection per client, raw socket I/O as warmpool's front): warmpool's distance to it is its own code. ")
	fmt.Fprintf(&b, "`event-loop relay (floor)` is the same relay written as nginx is, one epoll loop per CPU on its own thread (bench/eprelay): its distance to the Go relay is what the goroutine-per-connection model costs here.\n\n")
	fmt.Fprintf(&b, "Closed loop: `wrk -t2 -c64`, %s per run, median of %d rounds; proxy CPU per request from /proc over the same runs; `workers CPU/request` is what the two workers behind the target spent per request (a proxy changes it by how it paces them); `idle CPU` is the machine's idle share over those runs (everything, wrk and the workers included, was waiting).\n", o.duration, o.runs)
	if o.connClose {
		fmt.Fprintf(&b, "Every request asks for `Connection: close` (`wrk -H 'Connection: close'`), so each one pays for a new connection: accept, set-up and close. No open loop in this mode, and the relays are no floor here: they dial a worker connection for every client connection.\n")
	} else {
		fmt.Fprintf(&b, "Open loop: %d req/s for %s per round, latency from each request's schedule; median of the rounds' P50 and P99.\n", o.rate, o.loopFor)
	}
	fmt.Fprintf(&b, "Every round measures every target in turn.\n\n")
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "Machine: %s, %d CPUs, %s, %s. Run: %s. Command: `go run ./bench/proxy -duration %s -runs %d -rate %d -open-loop %s%s`\n\n",
		host, runtime.NumCPU(), runtime.Version(), benchutil.CPUModel(), time.Now().UTC().Format("2006-01-02 15:04 MST"), o.duration, o.runs, o.rate, o.loopFor, extraFlags(o))
	fmt.Fprintf(&b, "| target | req/s | vs nginx | proxy CPU/request | vs nginx | workers CPU/request | idle CPU | open-loop P50 | P99 | P99 vs nginx | errors |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		if r.skipped != "" {
			fmt.Fprintf(&b, "| %s | skipped: %s | | | | | | | | | |\n", r.name, r.skipped)
			continue
		}
		vsRPS, vsCPU, vsP99 := "–", "–", "–"
		if nginx := nginxFor(r, byName); nginx != nil {
			vsRPS, vsP99 = ratio(r.rps, nginx.rps), ratio(float64(r.p99), float64(nginx.p99))
			if r.cpuPerReq > 0 {
				vsCPU = ratio(float64(r.cpuPerReq), float64(nginx.cpuPerReq))
			}
		}
		cpu := "–"
		if r.cpuPerReq > 0 {
			cpu = us(r.cpuPerReq)
		}
		p50, p99 := ms(r.p50), ms(r.p99)
		if o.connClose {
			p50, p99 = "–", "–"
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s | %.0f %% | %s | %s | %s | %d |\n", r.name, r.rps, vsRPS, cpu, vsCPU, us(r.workerCPUPerReq), 100*r.idle, p50, p99, vsP99, r.openErrors)
	}
	b.WriteString(renderPairedRatios(results, byName))
	fmt.Fprintf(&b, "\n![throughput](%s.svg)\n", filepath.Base(cmp(o.out, "proxy")))
	return b.String()
}

func renderSVG(o options, results []result) string {
	bars := make([]benchutil.Bar, len(results))
	for i, r := range results {
		bars[i] = benchutil.Bar{Label: r.name, Value: r.rps, Text: fmt.Sprintf("%.0f", r.rps),
			Highlight: strings.HasPrefix(r.name, "warmpool"), Skipped: r.skipped != ""}
	}
	title := "Closed-loop throughput (wrk -t2 -c64), requests/s"
	if o.connClose {
		title = "Closed-loop throughput, a new connection per request (Connection: close), requests/s"
	}
	return benchutil.BarChart(title, bars, false)
}

// nginxFor is the nginx run r is compared with: the one in front of the same kind of workers.
func nginxFor(r result, byName map[string]*result) *result {
	if strings.HasSuffix(r.name, "unix sockets") {
		return byName["nginx, unix sockets"]
	}
	return byName["nginx"]
}

// renderPairedRatios compares each target's throughput with nginx's round by round: both ran
// in the same round, minutes apart at most, so the ratio of the pair cancels the machine's
// slow spells better than the ratio of two medians.
func renderPairedRatios(results []result, byName map[string]*result) string {
	var b strings.Builder
	for _, r := range results {
		ng := nginxFor(r, byName)
		if r.skipped != "" || ng == nil || ng.name == r.name || len(r.rounds) < 2 || len(r.rounds) != len(ng.rounds) {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\nThroughput against nginx round by round (each round's pair ran minutes apart at most):\n\n")
			b.WriteString("| target | median ratio | lowest | highest | rounds at or above 1.0x |\n|---|---:|---:|---:|---:|\n")
		}
		ratios := make([]float64, len(r.rounds))
		atLeast := 0
		for k := range r.rounds {
			ratios[k] = r.rounds[k] / ng.rounds[k]
			if ratios[k] >= 1 {
				atLeast++
			}
		}
		fmt.Fprintf(&b, "| %s | %.2fx | %.2fx | %.2fx | %d of %d |\n", r.name, median(ratios), slices.Min(ratios), slices.Max(ratios), atLeast, len(ratios))
	}
	return b.String()
}

// extraFlags are the command's flags beyond the always-printed ones.
func extraFlags(o options) string {
	var s string
	if o.connClose {
		s += " -connection-close"
	}
	if len(o.only) > 0 {
		s += fmt.Sprintf(" -targets %q", strings.Join(o.only, ","))
	}
	return s
}

func cmp(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}
