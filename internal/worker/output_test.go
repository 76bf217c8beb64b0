package worker

import (
	"log/slog"
	"strings"
	"testing"

	"warmpool/internal/testutil"
)

// A Python traceback is one record; the lines around it are one each.
func TestTracebackIsOneRecord(t *testing.T) {
	logs := testutil.NewLogs(t)
	l := newLineLogger(logs.Logger(), "stderr", "info", nil)
	l.Write([]byte("before\n[ERROR] Error handling request /x\nTraceback (most recent call last):\n" +
		"  File \"app.py\", line 3, in view\n    boom()\n"))
	l.Write([]byte("ValueError: boom\nafter\n"))
	var msgs []string
	for _, r := range logs.All(func(testutil.Record) bool { return true }) {
		msgs = append(msgs, r.Message)
	}
	want := []string{"before", "[ERROR] Error handling request /x",
		"Traceback (most recent call last):\n  File \"app.py\", line 3, in view\n    boom()\nValueError: boom", "after"}
	if strings.Join(msgs, "|") != strings.Join(want, "|") {
		t.Fatalf("records:\n%q\nwant\n%q", msgs, want)
	}
}

// worker.log_output: "debug" logs at debug level, "off" logs nothing.
func TestLogOutputLevels(t *testing.T) {
	logs := testutil.NewLogs(t)
	newLineLogger(logs.Logger(), "stdout", "debug", nil).Write([]byte("quiet\n"))
	newLineLogger(logs.Logger(), "stdout", "off", nil).Write([]byte("dropped\n"))
	got := logs.All(func(testutil.Record) bool { return true })
	if len(got) != 1 || got[0].Message != "quiet" || got[0].Level != slog.LevelDebug {
		t.Fatalf("records: %+v", got)
	}
}
