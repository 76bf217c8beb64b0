package main

import (
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs every target for about a second so the harness does not rot. No thresholds.
func TestSmoke(t *testing.T) {
	t.Run("keep-alive", func(t *testing.T) { smoke(t, false) })
	t.Run("connection close", func(t *testing.T) { smoke(t, true) })
}

func smoke(t *testing.T, connClose bool) {
	if testing.Short() {
		t.Skip("builds two binaries and runs four targets")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk is not installed: apt-get install wrk (CI installs it)")
	}
	o := options{duration: time.Second, runs: 1, rate: 100, loopFor: time.Second, connClose: connClose}
	results, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(targets) {
		t.Fatalf("%d results for %d targets", len(results), len(targets))
	}
	for _, r := range results {
		if r.skipped != "" {
			t.Logf("%s skipped: %s", r.name, r.skipped)
			continue
		}
		if r.rps <= 0 || (r.p99 <= 0) != connClose || r.openErrors != 0 {
			t.Errorf("%s: rps %.0f p99 %s errors %d", r.name, r.rps, r.p99, r.openErrors)
		}
		if r.name != "direct" && r.cpuPerReq <= 0 {
			t.Errorf("%s: no CPU measured", r.name)
		}
		if r.idle < 0 || r.idle > 1 {
			t.Errorf("%s: idle share %v out of [0, 1]", r.name, r.idle)
		}
	}
	if md := renderMarkdown(o, results); !strings.Contains(md, "| warmpool |") {
		t.Errorf("markdown: %s", md)
	}
	if svg := renderSVG(o, results); !strings.HasPrefix(svg, "<svg") {
		t.Errorf("svg: %s", svg)
	}
}

// Each target's rounds are paired with nginx's of the same round, by the kind of workers.
func TestPairedRatios(t *testing.T) {
	results := []result{
		{name: "warmpool", rounds: []float64{90, 110, 100}},
		{name: "nginx", rounds: []float64{100, 100, 125}},
		{name: "warmpool, unix sockets", rounds: []float64{50, 60, 70}},
		{name: "nginx, unix sockets", rounds: []float64{100, 50, 70}},
		{name: "haproxy", skipped: "not installed"},
	}
	byName := map[string]*result{}
	for i := range results {
		byName[results[i].name] = &results[i]
	}
	got := renderPairedRatios(results, byName)
	for _, want := range []string{
		"| warmpool | 0.90x | 0.80x | 1.10x | 1 of 3 |",
		"| warmpool, unix sockets | 1.00x | 0.50x | 1.20x | 2 of 3 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "| nginx |") || strings.Contains(got, "haproxy") {
		t.Errorf("nginx against itself, or a skipped target:\n%s", got)
	}
}
