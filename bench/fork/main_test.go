package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs every way for about a second so the harness does not rot. No thresholds but
// the ones no way may miss: no error, no request that met a cold worker.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts warmpool with a Django site eleven times")
	}
	o := options{rate: 40, rounds: 1, duration: time.Second, warmFor: 500 * time.Millisecond, maxRequests: []int{0, 10},
		memWorkers: 2, memRequests: 20, tputFor: time.Second, python: "/usr/bin/python3", ways: ways, asgi: true}
	if why := needs(o.python); why != "" {
		t.Skip(why + " (CI installs them)")
	}
	if why := asgiNeeds(o.python); why != "" {
		t.Skip(why + " (CI installs them)")
	}
	rep, err := run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.latency) != len(ways)*2 || len(rep.memory) != len(ways) || len(rep.throughput) != 2 {
		t.Fatalf("results: %d latency, %d memory, %d throughput", len(rep.latency), len(rep.memory), len(rep.throughput))
	}
	for _, r := range rep.latency {
		if r.sent != 40 || r.errors != 0 || r.cold != 0 {
			t.Errorf("%s at max_requests %d: sent %d, %d errors (%s), %d cold", r.way.name, r.maxRequests, r.sent, r.errors, r.firstErr, r.cold)
		}
	}
	for _, r := range rep.memory {
		if len(r.total) != 1 || r.total[0] <= 0 {
			t.Errorf("memory of %s: %v", r.way.name, r.total)
		}
	}
	for _, r := range rep.throughput {
		if r.way.python && (len(r.planCPU) != 1 || r.planCPU[0] <= 0) {
			t.Errorf("the warm-up plan's CPU on the warm %s worker: %v", r.way.name, r.planCPU)
		}
	}
	md := render(o, rep)
	for _, r := range rep.asgi {
		if r.sent != 40 || r.errors != 0 || r.startups != 1 || len(r.forkCPU) == 0 || len(r.freshCPU) == 0 || r.forkPSS <= 0 || r.freshPSS <= 0 {
			t.Errorf("the ASGI way, %s: %+v", r.app, r)
		}
	}
	for _, want := range []string{"| fork | 10 |", "| gunicorn | none |", "## Memory", "## Targets (issue 12)", "## The ASGI way (issue 22)", "| fastapi_app |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
