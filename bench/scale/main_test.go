package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs two small pools for a second per phase so the harness does not rot.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs warmpool")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk is not installed: apt-get install wrk (CI installs it)")
	}
	results, err := run(context.Background(), []int{1, 2}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.idleRSS <= 0 || r.loadRPS <= 0 || r.recycled != r.workers {
			t.Errorf("%d workers: %+v", r.workers, r)
		}
	}
	if md := render(results); !strings.Contains(md, "| 2 |") {
		t.Errorf("markdown: %s", md)
	}
	if svg := renderSVG(results); !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "2 workers: warmpool") {
		t.Errorf("svg: %s", svg)
	}
}
