package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"warmpool/internal/guard"
	"warmpool/internal/testworker"
)

// envMain makes the re-executed test binary act as the warmpool command.
const envMain = "WP_TEST_MAIN"

func TestMain(m *testing.M) {
	guard.RunIfKeeper()
	if testworker.Active() {
		testworker.Main()
		return
	}
	if os.Getenv(envMain) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(testworker.IsolateLearnedState()))
}

// Help that was asked for goes to stdout with exit 0; a mistake goes to stderr with exit 2.
func TestHelpGoesToStdout(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"check", "--help"}, {"run", "-h"}, {"import", "--help"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 0 || stdout.Len() == 0 || stderr.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %d bytes, stderr %q", args, code, stdout.Len(), stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(nil, &stdout, &stderr); code != 2 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "Usage") {
		t.Errorf("no arguments: exit %d, stdout %q", code, stdout.String())
	}
}

// Without a config file, the problems are followed by where to get one.
func TestNoConfigPointsToInitAndImport(t *testing.T) {
	t.Chdir(t.TempDir())
	var stdout, stderr bytes.Buffer
	code := run([]string{"check"}, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "no config file") || !strings.Contains(stderr.String(), "warmpool init") ||
		!strings.Contains(stderr.String(), "warmpool import") || !strings.Contains(stderr.String(), "problem(s):\n  - ") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}
