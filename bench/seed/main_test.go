package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs every scenario for one second at a low rate, so the harness does not rot.
// It checks that the harness works, not the figures.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds warmpool and runs it three times")
	}
	o := options{duration: time.Second, rounds: 1, rate: 40, maxRequests: 20, scenarios: []string{"warmup-on", "warmup-off", "no-recycling"}}
	results, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 3 {
		t.Fatalf("want 3 results, got %d", len(results))
	}
	for _, r := range results {
		if r.sent != 40 || r.p99 <= 0 {
			t.Errorf("%s: sent %d p99 %s", r.name, r.sent, r.p99)
		}
	}
	if table := render(o, results); !strings.Contains(table, "| warmup-off |") {
		t.Errorf("table: %s", table)
	}
}
