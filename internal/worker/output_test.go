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
	l := newLineLogger(logs.Logger(), "stderr", "info", nil, nil)
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
	newLineLogger(logs.Logger(), "stdout", "debug", nil, nil).Write([]byte("quiet\n"))
	newLineLogger(logs.Logger(), "stdout", "off", nil, nil).Write([]byte("dropped\n"))
	got := logs.All(func(testutil.Record) bool { return true })
	if len(got) != 1 || got[0].Message != "quiet" || got[0].Level != slog.LevelDebug {
		t.Fatalf("records: %+v", got)
	}
}

// Before its admission a worker's lines are at debug level (a failed boot is reported with its
// last lines at ERROR instead); once admitted, at the log_output level.
func TestOutputBeforeAdmissionIsDebug(t *testing.T) {
	logs := testutil.NewLogs(t)
	var admitted bool
	l := newLineLogger(logs.Logger(), "stderr", "info", nil, func() bool { return admitted })
	l.Write([]byte("Traceback (most recent call last):\n  File \"app.py\", line 1\nSyntaxError: invalid syntax\nbooting\n"))
	admitted = true
	l.Write([]byte("serving\n"))
	got := logs.All(func(testutil.Record) bool { return true })
	if len(got) != 3 || got[0].Level != slog.LevelDebug || got[1].Level != slog.LevelDebug || got[2].Level != slog.LevelInfo || got[2].Message != "serving" {
		t.Fatalf("records: %+v", got)
	}
}
