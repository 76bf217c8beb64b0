package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs every server for about a second so the harness does not rot. No thresholds.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six servers")
	}
	for _, bin := range []string{"uwsgi", "gunicorn"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed: apt-get install uwsgi uwsgi-plugin-python3 gunicorn (CI installs them)", bin)
		}
	}
	o := options{rate: 40, rounds: 1, duration: time.Second, warmFor: 500 * time.Millisecond, maxRequests: 20}
	results, err := run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(servers) {
		t.Fatalf("%d results for %d servers", len(results), len(servers))
	}
	for _, r := range results {
		if r.skipped != "" || r.sent != 40 || r.p50 <= 0 {
			t.Errorf("%s: skipped %q sent %d p50 %s", r.name, r.skipped, r.sent, r.p50)
		}
		if strings.HasPrefix(r.name, "warmpool") && r.errors != 0 {
			t.Errorf("%s: %d errors (%s)", r.name, r.errors, r.firstErr)
		}
	}
	if md := render(o, results); !strings.Contains(md, "| warmpool + gunicorn |") {
		t.Errorf("markdown: %s", md)
	}
	if svg := renderSVG(results); !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "warmpool + uwsgi") {
		t.Errorf("svg: %s", svg)
	}
}
