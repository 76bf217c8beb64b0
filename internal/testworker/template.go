package testworker

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"warmpool/internal/pyfork"
)

// EnvFakeTemplate makes the test binary, run as a [worker.python] executable, a fake template
// written in Go that speaks warmpool's control protocol (internal/pyfork/protocol.go), so that
// the pool's side (await, backoff, heartbeat, fork timeout, retire) is tested without Python.
// Its value lists behaviours, comma-separated:
//
//	ok              speak the protocol as helper.py does
//	version=N       say protocol version N in hello
//	fail-import     print a traceback ending in a SyntaxError and exit 1 after hello
//	no-pong         never answer a heartbeat (the process stays alive and running)
//	no-fork-answer  never answer a fork
//	fork-delay=D    answer each fork after D (a slow fork)
//	exit-on=PATH    exit 1 when its warm-up asks for PATH (a template that a learned request breaks)
//
// Run with mode "serve" (a fresh process) it is a test worker.
const EnvFakeTemplate = "TW_FAKE_TEMPLATE"

// envFakeMiddle runs the binary as the fake fork's intermediate process.
const envFakeMiddle = "TW_FAKE_MIDDLE"

func fakeTemplateActive() bool { return os.Getenv(EnvFakeTemplate) != "" }

// fakeTemplateMain runs the fake in the mode of its argv (helper template|serve ...).
func fakeTemplateMain() {
	if os.Getenv(envFakeMiddle) != "" {
		fakeMiddle()
		return
	}
	if len(os.Args) < 3 || os.Args[2] != "template" {
		os.Setenv(EnvActive, "1")
		os.Setenv(EnvListenFD, "1")
		Main() // a fresh process: warmpool passes its socket as for any worker
		return
	}
	has := func(b string) bool { return slices.Contains(strings.Split(os.Getenv(EnvFakeTemplate), ","), b) }
	version := pyfork.ProtocolVersion
	var forkDelay time.Duration
	var exitOn string
	for _, b := range strings.Split(os.Getenv(EnvFakeTemplate), ",") {
		if v, ok := strings.CutPrefix(b, "exit-on="); ok {
			exitOn = v
		}
		if v, ok := strings.CutPrefix(b, "version="); ok {
			version, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(b, "fork-delay="); ok {
			forkDelay, _ = time.ParseDuration(v)
		}
	}
	ctl, err := pyfork.NewTemplateConn(os.NewFile(4, "control"))
	if err != nil {
		fail("control socket: %v", err)
	}
	must(ctl.Send(pyfork.Hello{Version: version, PID: os.Getpid()}))
	if has("fail-import") {
		fmt.Fprint(os.Stderr, "Traceback (most recent call last):\n  File \"/srv/app/views.py\", line 3\n    def broken(:\n               ^\nSyntaxError: invalid syntax\n")
		os.Exit(1)
	}
	listener, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		fail("listener: %v", err)
	}
	must(ctl.Send(pyfork.Imported{}))
	// The warm-up: every request answers 200 until warmpool says prepare.
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if exitOn != "" && r.URL.Path == exitOn {
			fmt.Fprintf(os.Stderr, "fake template: exiting on %s\n", exitOn)
			os.Exit(1)
		}
		fmt.Fprintln(w, "fake template")
	})}
	go srv.Serve(listener)
	ctx := context.Background()
	m, files, err := ctl.Receive(ctx)
	if err != nil {
		os.Exit(0)
	}
	closeFiles(files)
	if _, ok := m.(pyfork.Prepare); !ok {
		fail("expected prepare, got %q", m.Kind())
	}
	srv.Close()
	must(ctl.Send(pyfork.Prepared{OK: true, Threads: []pyfork.Thread{}, Closed: []string{}}))
	for {
		m, files, err := ctl.Receive(ctx)
		if err != nil {
			os.Exit(0) // warmpool closed the socket: the template's end
		}
		switch m := m.(type) {
		case pyfork.Ping:
			if !has("no-pong") {
				must(ctl.Send(pyfork.Pong{Seq: m.Seq}))
			}
		case pyfork.Fork:
			if has("no-fork-answer") {
				closeFiles(files)
				continue
			}
			time.Sleep(forkDelay)
			pid, err := fakeFork(m, files)
			closeFiles(files)
			if err != nil {
				must(ctl.Send(pyfork.Failed{Error: err.Error()}))
				continue
			}
			must(ctl.Send(pyfork.Forked{PID: pid}))
		case pyfork.Release:
		default:
			closeFiles(files)
			must(ctl.Send(pyfork.Failed{Error: "cannot " + m.Kind() + " now"}))
		}
	}
}

// fakeFork starts a test worker as helper.py's double fork does: through an intermediate
// process that exits at once, so that warmpool (a child subreaper) adopts the worker.
func fakeFork(m pyfork.Fork, files []*os.File) (int, error) {
	if len(files) != 3 {
		return 0, fmt.Errorf("a fork needs 3 descriptors, got %d", len(files))
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envFakeMiddle+"=1", EnvActive+"=1", EnvListenFD+"=1")
	for k, v := range m.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.ExtraFiles = files // the listener at 3, stdout at 4, stderr at 5
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("intermediate process: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(out)))
}

// fakeMiddle starts the worker in a process group of its own, prints its pid and exits.
func fakeMiddle() {
	cmd := exec.Command(os.Args[0])
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, envFakeMiddle+"=") || strings.HasPrefix(kv, EnvFakeTemplate+"=")
	})
	cmd.Stdout, cmd.Stderr = os.NewFile(4, "stdout"), os.NewFile(5, "stderr")
	cmd.ExtraFiles = []*os.File{os.NewFile(3, "listener")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fail("start the worker: %v", err)
	}
	fmt.Println(cmd.Process.Pid)
	os.Exit(0)
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func must(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fake template: "+format+"\n", args...)
	os.Exit(2)
}
