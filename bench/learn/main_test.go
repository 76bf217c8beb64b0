package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs every scenario for about a second so the harness does not rot. No thresholds
// but the one no scenario may miss: no error.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts warmpool with a Django site six times")
	}
	o := options{rate: 40, rounds: 1, duration: time.Second, warmFor: 500 * time.Millisecond, learnFor: 2 * time.Second,
		maxRequests: []int{10}, steady: true, python: "/usr/bin/python3", scenarios: scenarios}
	if why := needs(o.python); why != "" {
		t.Skip(why + " (CI installs them)")
	}
	rep, err := run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.results) != len(scenarios) || len(rep.steady) != 2 {
		t.Fatalf("results: %d scenarios, %d steady", len(rep.results), len(rep.steady))
	}
	for _, r := range append(rep.results, rep.steady...) {
		if r.sent != 40 || r.errors != 0 {
			t.Errorf("%s at max_requests %d: sent %d, %d errors (%s)", r.sc.name, r.maxRequests, r.sent, r.errors, r.firstErr)
		}
	}
	md := render(o, rep)
	for _, want := range []string{"## Targets (issue 23)", "| restarted | 10 |", "## P99 per route", "## The steady state"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
