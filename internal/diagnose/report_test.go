package diagnose

import (
	"strings"
	"testing"
	"time"
)

// The report never says both that the warm-up does not reach the code and that the plan
// covers every request: a warm-up answered with an error is fast, and still warms nothing.
func TestReportDoesNotContradictItself(t *testing.T) {
	steady := 2 * time.Millisecond
	r := &Report{WarmupEnabled: true, Factor: 3, Floor: 20 * time.Millisecond, Rows: []Row{
		{Probe: Probe{Method: "GET", Path: "/", Host: "localhost", FromPlan: true}, Cold: Measure{Took: time.Second, Status: 400},
			Warmed: Measure{Took: steady, Status: 400}, Steady: steady, Covered: true},
		{Probe: Probe{Method: "GET", Path: "/api", Host: "app.example.com"}, Cold: Measure{Took: time.Second, Status: 200},
			Warmed: Measure{Took: steady, Status: 200}, Steady: steady, Covered: true},
	}}
	var b strings.Builder
	r.Write(&b)
	out := b.String()
	if !strings.Contains(out, "does not reach the code") || strings.Contains(out, "covers every request") {
		t.Fatalf("report:\n%s", out)
	}
	r.Rows = r.Rows[1:]
	b.Reset()
	r.Write(&b)
	if !strings.Contains(b.String(), "covers every request") {
		t.Fatalf("report with no error answer:\n%s", b.String())
	}
}
