package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs the scenarios briefly so the harness does not rot: each gives its row.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs warmpool under faults")
	}
	for _, tool := range []string{"wrk", "uwsgi", python} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install wrk uwsgi uwsgi-plugin-python3 python3-waitress; CI installs them)", tool)
		}
	}
	rows, err := run(context.Background(), "", "saturation-fork,sigstop-template,crash-loop,stop-busy", 4*time.Second, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Fatalf("%d rows: %+v", len(rows), rows)
	}
	for _, r := range rows {
		if r.result == "" || strings.Contains(r.result, "0s / 0s") {
			t.Errorf("row without a result: %+v", r)
		}
	}
	if md := render(rows); !strings.Contains(md, "| saturation, warm fork") {
		t.Errorf("markdown: %s", md)
	}
}
