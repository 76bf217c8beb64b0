package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"warmpool/internal/config"
	"warmpool/internal/learn"
	"warmpool/internal/telemetry"
)

var update = flag.Bool("update", false, "rewrite golden files")

// The output of `warmpool check`: every value with its source (file:line, env, flag, default)
// and the warm-up plan.
func TestCheckGolden(t *testing.T) {
	t.Setenv("WARMPOOL_PROXY_QUEUE_SIZE", "256")
	// The config's gunicorn is found whether or not this machine has it: check warns otherwise.
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "gunicorn"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	var out bytes.Buffer
	err := (&checkCommand{stdout: &out}).Run(context.Background(),
		[]string{"--config", "testdata/check.toml", "--set", "worker.graceful_timeout=45s"})
	if err != nil {
		t.Fatal(err)
	}
	golden := "testdata/check.golden"
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(want) {
		t.Fatalf("check output differs from %s (go test -run TestCheckGolden -update to accept):\n%s", golden, out.String())
	}
}

// Secrets in the config (worker.env values, warm-up header values but Host and the like, a
// warm-up body) are masked with their length unless --show-secrets: check's output is kept
// (the systemd unit runs it before each start, so it lands in the journal).
func TestCheckMasksSecretsUnlessAsked(t *testing.T) {
	secrets := []string{"hunter2", "app.settings", "warm-up-token", `\"warm\"`} // the body is shown quoted
	for _, show := range []bool{false, true} {
		args := []string{"--config", "testdata/check.toml"}
		if show {
			args = append(args, "--show-secrets")
		}
		var out bytes.Buffer
		if err := (&checkCommand{stdout: &out}).Run(context.Background(), args); err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if strings.Contains(out.String(), s) != show {
				t.Errorf("--show-secrets=%v: %q shown: %v\n%s", show, s, !show, out.String())
			}
		}
		for _, clear := range []string{"DATABASE_URL", "Authorization", "app.example.com", "application/json"} {
			if !strings.Contains(out.String(), clear) {
				t.Errorf("--show-secrets=%v: %q not shown", show, clear)
			}
		}
		if masked := strings.Contains(out.String(), "<secret, 29 bytes>"); masked == show { // the database URL
			t.Errorf("--show-secrets=%v: the database URL's mask shown: %v", show, masked)
		}
	}
}

// Config files layer in the order given: a later one's key wins, and check names the file and
// line a value came from (the Helm chart adds the operator's extraConfig so).
func TestConfigFilesLayer(t *testing.T) {
	base := writeConfig(t, "[worker]\ncommand = [\"app\", \"{socket}\"]\ncount = 2\nmax_requests = 100\n\n[[warmup.request]]\npath = \"/\"\nheaders = { Host = \"a.example\" }\n")
	extra := filepath.Join(t.TempDir(), "extra.toml")
	if err := os.WriteFile(extra, []byte("[worker]\ncount = 6\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := (&checkCommand{stdout: &out}).Run(context.Background(), []string{"--config", base, "--config", extra}); err != nil {
		t.Fatal(err)
	}
	lines := map[string]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		if key, _, ok := strings.Cut(line, " "); ok {
			lines[key] = strings.Join(strings.Fields(line), " ")
		}
	}
	for key, want := range map[string]string{
		"worker.count":        "worker.count = 6 # " + extra + ":2",
		"worker.max_requests": "worker.max_requests = 100 # " + base + ":4",
	} {
		if lines[key] != want {
			t.Errorf("%s: %q, want %q", key, lines[key], want)
		}
	}
}

func TestCheckListsEveryProblemAndExits2(t *testing.T) {
	path := writeConfig(t, `[worker]
command = ["app"]
count = 0
max_requestz = 3
`)
	var stdout, stderr bytes.Buffer
	code := run([]string{"check", "--config", path}, &stdout, &stderr)
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, stderr.String())
	}
	msg := stderr.String()
	// Decoding problems and rule problems are listed together.
	for _, want := range []string{
		path + `:4: unknown key "worker.max_requestz" (did you mean "worker.max_requests"?)`,
		`worker.command = ["app"] (` + path + `:2) uses neither {socket} nor {port}`,
		`worker.count = 0 (` + path + `:3): must be at least 1`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("stderr lacks %q:\n%s", want, msg)
		}
	}
	path = writeConfig(t, `[worker]
command = ["app"]
count = 0
`)
	stderr.Reset()
	if code := run([]string{"check", "--config", path}, &stdout, &stderr); code != 2 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"problem(s):", "uses neither {socket} nor {port}", "worker.count = 0", "warm-up plan is empty"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	var out bytes.Buffer
	if err := (&checkCommand{stdout: &out}).Run(context.Background(), []string{"--config", "../../examples/demo.toml"}); err != nil {
		t.Fatal(err)
	}
}

// check runs the app's interpreter and says what the fork mode would lack: the server
// (waitress for WSGI) or the app's module, with how to install it; --offline skips it.
func TestCheckTriesThePythonSide(t *testing.T) {
	const debianPython = "/usr/bin/python3" // Debian's, where CI installs python3-waitress
	if _, err := os.Stat(debianPython); err != nil {
		t.Skip("no /usr/bin/python3 on this machine")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "myapp.py"), []byte("def application(environ, start_response):\n    return []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	venv := filepath.Join(t.TempDir(), "venv") // an environment without waitress
	if out, err := exec.Command(debianPython, "-m", "venv", "--without-pip", venv).CombinedOutput(); err != nil {
		t.Fatalf("venv: %v %s", err, out)
	}
	config := func(executable, app string) string {
		return writeConfig(t, fmt.Sprintf("[worker]\ndir = %q\n[worker.python]\napp = %q\nexecutable = %q\n[[warmup.request]]\npath = \"/\"\nheaders = { Host = \"a.example\" }\n", dir, app, executable))
	}
	check := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"check"}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	code, _, stderr := check("--config", config(filepath.Join(venv, "bin", "python"), "myapp:application"))
	if code != 2 || !strings.Contains(stderr, "cannot import waitress") || !strings.Contains(stderr, "pip install waitress") ||
		!strings.Contains(stderr, "python3-waitress") {
		t.Errorf("an environment without waitress: exit %d\n%s", code, stderr)
	}
	if code, _, _ := check("--offline", "--config", config(filepath.Join(venv, "bin", "python"), "myapp:application")); code != 0 {
		t.Errorf("--offline: exit %d", code)
	}
	if exec.Command(debianPython, "-c", "import waitress").Run() != nil {
		t.Skip("Debian's python3-waitress is not installed: apt-get install python3-waitress")
	}
	code, _, stderr = check("--config", config(debianPython, "nosuchapp.wsgi:application"))
	if code != 2 || !strings.Contains(stderr, "cannot import nosuchapp") {
		t.Errorf("a missing app module: exit %d\n%s", code, stderr)
	}
	code, stdout, stderr := check("--config", config(debianPython, "myapp:application"))
	if code != 0 || !strings.Contains(stdout, "imports waitress and myapp:application") {
		t.Errorf("a working environment: exit %d\n%s%s", code, stdout, stderr)
	}
}

// warmpool init writes warmpool.toml in the app's directory, which check accepts, and never
// overwrites one without --force.
func TestInitWritesAConfigOnce(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.py"), []byte("from fastapi import FastAPI\napp = FastAPI()\n"), 0o644)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"init", "--dir", dir}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "main:app") {
		t.Fatalf("init: exit %d %s%s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"check", "--offline", "--config", filepath.Join(dir, "warmpool.toml")}, &stdout, &stderr); code != 0 {
		t.Fatalf("check: exit %d %s", code, stderr.String())
	}
	before, _ := os.ReadFile(filepath.Join(dir, "warmpool.toml"))
	os.WriteFile(filepath.Join(dir, "warmpool.toml"), []byte("# mine\n"), 0o644)
	stderr.Reset()
	if code := run([]string{"init", "--dir", dir}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "does not overwrite") {
		t.Fatalf("a second init: exit %d %s", code, stderr.String())
	}
	if code := run([]string{"init", "--dir", dir, "--force"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--force: exit %d", code)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "warmpool.toml")); !bytes.Equal(before, after) {
		t.Fatal("--force did not write the starter config again")
	}
}

// `warmpool learned` prints the state file of the config's app as config to commit; another
// app's file, or none, is an error that says so.
func TestLearnedPrintsTheStateAsConfig(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "learned.json")
	cfgPath := writeConfig(t, fmt.Sprintf("[worker]\ncommand = [\"app\", \"{socket}\"]\n[warmup]\nlearn_state = %q\n[[warmup.request]]\npath = \"/\"\n", state))
	var stdout, stderr bytes.Buffer
	if code := run([]string{"learned", "--config", cfgPath}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "nothing learned at "+state) {
		t.Fatalf("no state yet: exit %d, %s", code, stderr.String())
	}
	l, err := config.LoadAndValidate(config.Layers{Files: []string{cfgPath}})
	if err != nil {
		t.Fatal(err)
	}
	learner := learn.New(learn.Options{StatePath: state, Identity: learn.AppIdentity(&l.Config)})
	for w := 1; w <= 2; w++ {
		learner.ObserveFirst(&telemetry.Request{Method: "GET", Path: "/export.csv", Status: 200, Upstream: 300 * time.Millisecond,
			WorkerID: w, FirstRequests: true, Host: []byte("app.example")}, 2*time.Millisecond, true)
	}
	if err := learner.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"learned", "--config", cfgPath}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if out := stdout.String(); !strings.Contains(out, "[[warmup.request]]\npath = \"/export.csv\"\nheaders = { Host = \"app.example\" }") {
		t.Fatalf("%s", out)
	}
	other := writeConfig(t, fmt.Sprintf("[worker]\ncommand = [\"other\", \"{socket}\"]\n[warmup]\nlearn_state = %q\n[[warmup.request]]\npath = \"/\"\n", state))
	stderr.Reset()
	if code := run([]string{"learned", "--config", other}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "belongs to another app") {
		t.Fatalf("another app's state: exit %d, %s", code, stderr.String())
	}
}
