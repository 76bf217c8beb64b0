package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs both attacks with a few clients so the harness does not rot: every slow head
// gets its 431, and plain requests are served meanwhile.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs warmpool")
	}
	results, err := run(context.Background(), options{conns: 20, duration: 2 * time.Second}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 {
		t.Fatalf("%d results", len(results))
	}
	heads, idle := results[0], results[1]
	if heads.answered[431] != 20 || heads.peak <= 0 || heads.plainOK == 0 || heads.plainFailed != 0 {
		t.Errorf("slow heads: %+v", heads)
	}
	if idle.pending != 20 || idle.plainOK == 0 {
		t.Errorf("idle connections: %+v", idle)
	}
	if md := render(options{conns: 20, duration: 2 * time.Second}, results); !strings.Contains(md, "| this build | slow endless heads |") {
		t.Errorf("markdown: %s", md)
	}
}
