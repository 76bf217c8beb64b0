package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

func diagnoseConfig(t *testing.T, warmupHost string) string {
	return writeConfig(t, fmt.Sprintf(`[worker]
command = [%q, "{socket}"]
env = { WP_TESTWORKER = "1", TW_COLD = "150ms", TW_ALLOWED_HOST = "app.example.com" }

[[warmup.request]]
path = "/"
headers = { Host = %q }
expect = [200, 400]
`, os.Args[0], warmupHost))
}

// The post-mortem: the warm-up request is rejected early by the host check (and its 400 is
// accepted), so the real route stays cold. diagnose must say so and exit non-zero.
func TestDiagnoseCatchesWarmupRejectedByHostCheck(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"diagnose", "--config", diagnoseConfig(t, "localhost"), "--path", "/", "--host", "app.example.com"}, &stdout, &stderr)
	out := stdout.String()
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, stderr.String())
	}
	row := regexp.MustCompile(`GET / \(Host app\.example\.com\) \(--path\)\s+(\d+\.\d) ms \(200\)\s+(\d+\.\d) ms \(200\)\s+\S+ ms\s+NOT COVERED`).FindStringSubmatch(out)
	if row == nil {
		t.Fatalf("the real route is not reported cold:\n%s", out)
	}
	for _, want := range []string{
		"warm-up: passed on the second worker",
		"note: the warm-up request GET / (Host localhost) answers 400",
		"1 of 2 requests stay cold after the warm-up plan (GET / (Host app.example.com))",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestDiagnosePassesWhenTheWarmupReachesTheRoute(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"diagnose", "--config", diagnoseConfig(t, "app.example.com"), "--path", "/other"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "The warm-up plan covers every request measured") {
		t.Fatalf("output:\n%s", stdout.String())
	}
}

// Without --path, a warm-up answered 400 is still a failure of the plan: exit 1, unless told
// that the error answer is intended.
func TestDiagnoseFailsOnErrorAnswersWithoutPaths(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"diagnose", "--config", diagnoseConfig(t, "localhost")}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "warm-up request(s) answered with an error: GET / (Host localhost)") ||
		!strings.Contains(stdout.String(), "1 warm-up request(s) answered with an error") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"diagnose", "--config", diagnoseConfig(t, "localhost"), "--allow-error-answers"}, &stdout, &stderr); code != 0 {
		t.Fatalf("with --allow-error-answers: exit %d\n%s", code, stderr.String())
	}
}
