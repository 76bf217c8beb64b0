package pool_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"warmpool/internal/config"
	"warmpool/internal/learn"
	"warmpool/internal/pool"
	"warmpool/internal/pyfork"
	"warmpool/internal/telemetry"
	"warmpool/internal/testutil"
	"warmpool/internal/testworker"
)

// These tests run the pool's side of the template protocol against a fake template in Go (the
// test binary, testworker.EnvFakeTemplate): no Python needed, and each fault on demand.

// fakeTemplateConfig is a [worker.python] app whose "interpreter" is the test binary, acting as
// a fake template with the given behaviours; its fresh processes are test workers.
func fakeTemplateConfig(behaviours string) *config.Config {
	cfg := baseConfig()
	cfg.Worker.Command = nil
	cfg.Worker.Python = config.Python{App: "fake:app", Interface: config.InterfaceWSGI, Executable: os.Args[0], Lifespan: config.LifespanTemplate}
	cfg.Worker.Env[testworker.EnvFakeTemplate] = behaviours
	cfg.Warmup.Timeout = config.Duration{Duration: 10 * time.Second}
	return cfg
}

// The fake speaks the protocol: workers are forks, adopted by warmpool, and serve.
func TestFakeTemplateForksWorkers(t *testing.T) {
	h := start(t, fakeTemplateConfig("ok"))
	h.waitReady()
	st := h.statusJSON()
	if tpl := readyTemplate(st); tpl == nil {
		t.Fatalf("no ready template: %+v", st.Templates)
	}
	for _, w := range st.Workers {
		if w.Origin != "fork" {
			t.Errorf("worker %d started as %q, want a fork", w.ID, w.Origin)
		}
	}
	if r := h.get("/"); r.status != 200 {
		t.Fatalf("%d %s %v", r.status, r.body, r.err)
	}
}

// A template that speaks another protocol version is refused with both versions named, and
// workers start fresh.
func TestTemplateOfAnotherProtocolVersionIsRefused(t *testing.T) {
	h := start(t, fakeTemplateConfig("version=99"))
	rec := h.logs.Wait(testutil.MsgPrefix("the template failed to boot"), 10*time.Second)
	if want := fmt.Sprintf("control protocol version 99 and this warmpool version %d", pyfork.ProtocolVersion); !strings.Contains(rec.Attrs["error"], want) {
		t.Errorf("error: %s", rec.Attrs["error"])
	}
	h.waitReady()
	if r := h.get("/"); r.status != 200 {
		t.Fatalf("%d %s %v", r.status, r.body, r.err)
	}
}

// A template that stays alive but stops answering its heartbeat is killed and restarted warm;
// the workers serve on.
func TestTemplateThatStopsAnsweringItsHeartbeatIsRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the heartbeat")
	}
	h := start(t, fakeTemplateConfig("no-pong"))
	h.waitReady()
	first := readyTemplate(h.statusJSON())
	rec := h.logs.Wait(testutil.MsgPrefix("the template does not answer"), 10*time.Second)
	if !strings.Contains(rec.Attrs["reason"], "no answer to its heartbeat within 2s") {
		t.Errorf("reason: %s", rec.Attrs["reason"])
	}
	h.waitStatus("a new ready template", func(st pool.Status) bool {
		tpl := readyTemplate(st)
		return tpl != nil && tpl.PID != first.PID && tpl.Restarts == 1
	})
	if r := h.get("/"); r.status != 200 {
		t.Fatalf("%d %s %v", r.status, r.body, r.err)
	}
	if n := h.counter("warmpool_python_template_failures_total", map[string]string{"reason": "unresponsive"}); n < 1 {
		t.Errorf("warmpool_python_template_failures_total{reason=unresponsive} = %v", n)
	}
}

// A fork that is never answered is given up within the fork timeout (not warmup.timeout): the
// worker starts fresh, and the template is killed and restarted.
func TestForkThatIsNeverAnsweredFallsBackToAFreshProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the 5 s fork timeout")
	}
	cfg := fakeTemplateConfig("no-fork-answer")
	cfg.Warmup.Timeout = config.Duration{Duration: 60 * time.Second}
	began := time.Now()
	h := start(t, cfg)
	rec := h.logs.Wait(testutil.MsgPrefix("starting a fresh Python worker process", "reason", "fork_failed"), 20*time.Second)
	if waited := time.Since(began); waited > 15*time.Second {
		t.Errorf("the fork was given up after %s; warmup.timeout is 60s, the fork timeout 5s", waited)
	}
	if !strings.Contains(rec.Attrs["why"], "context deadline exceeded") {
		t.Errorf("why: %s", rec.Attrs["why"])
	}
	h.waitReady()
	h.logs.Wait(testutil.MsgPrefix("the template died"), 10*time.Second)
}

// A template that fails at import is reported with its own output (the SyntaxError), not with
// the control socket's end ("EOF"), and restarted with backoff while workers start fresh.
func TestTemplateImportFailureIsReportedWithItsOutput(t *testing.T) {
	h := start(t, fakeTemplateConfig("fail-import"))
	rec := h.logs.Wait(testutil.MsgPrefix("the template failed to boot"), 10*time.Second)
	if e := rec.Attrs["error"]; !strings.Contains(e, "SyntaxError: invalid syntax") || !strings.Contains(e, "the template exited: exit status 1") {
		t.Errorf("error: %s", e)
	}
	h.waitReady()
	st := h.statusJSON()
	if len(st.Templates) != 1 || st.Templates[0].State != pyfork.TemplateRestarting || !strings.Contains(st.Templates[0].Problem, "SyntaxError") {
		t.Errorf("templates: %+v", st.Templates)
	}
}

// A reload supersedes a generation whose template keeps failing: it is stopped at once instead
// of respawning templates beside the new one.
func TestSupersededFailingTemplateIsStoppedAtOnce(t *testing.T) {
	h := start(t, fakeTemplateConfig("fail-import"))
	h.logs.Wait(testutil.MsgPrefix("the template failed to boot", "generation", "1"), 10*time.Second)
	h.pool.Reload()
	h.logs.Wait(testutil.MsgPrefix("the template failed", "generation", "2"), 10*time.Second)
	h.waitStatus("only generation 2's template", func(st pool.Status) bool {
		return len(st.Templates) == 1 && st.Templates[0].Generation == 2
	})
	before := len(h.logs.All(testutil.MsgPrefix("the template failed to boot", "generation", "1")))
	h.logs.WaitN(testutil.MsgPrefix("the template failed", "generation", "2"), 3, 10*time.Second)
	if after := len(h.logs.All(testutil.MsgPrefix("the template failed to boot", "generation", "1"))); after != before {
		t.Errorf("generation 1's template failed %d more times after it was superseded", after-before)
	}
}

// A crash-looping template is logged once in full, then one short line per repeat.
func TestCrashLoopingTemplateIsLoggedOnceInFull(t *testing.T) {
	h := start(t, fakeTemplateConfig("fail-import"))
	h.logs.WaitN(testutil.MsgPrefix("the template failed to boot again, the same way"), 2, 10*time.Second)
	if n := len(h.logs.All(testutil.Msg("the template failed to boot; workers start as fresh processes meanwhile"))); n != 1 {
		t.Errorf("logged in full %d times", n)
	}
}

// A launch cancelled while the template forks (a scale-down, a reload, a shutdown) leaves the
// template alive: the answer is still read, and the forked child, which nobody will release,
// is killed and reaped. (The template was killed instead, and restarted: during a shutdown the
// restarted one even ran an ASGI app's lifespan again.)
func TestCancelledLaunchLeavesTheTemplateAlive(t *testing.T) {
	cfg := fakeTemplateConfig("fork-delay=400ms")
	cfg.Worker.Count = 1
	cfg.MinReady = 1
	h := start(t, cfg)
	h.waitReady()
	tpl := readyTemplate(h.statusJSON())
	h.pool.Scale(1)
	h.logs.Wait(testutil.Msg("scaling the pool", "to", "2"), 5*time.Second)
	h.pool.Scale(-1) // cancels the boot whose fork is under way
	h.logs.Wait(testutil.Msg("worker boot cancelled", "worker", "2"), 10*time.Second)
	h.pool.Scale(1) // the template still forks
	h.logs.Wait(testutil.Msg(admitted, "worker", "3"), 10*time.Second)
	if died := h.logs.All(testutil.MsgPrefix("the template died")); len(died) > 0 {
		t.Fatalf("the template was killed: %v", died[0].Attrs)
	}
	if now := readyTemplate(h.statusJSON()); now == nil || now.PID != tpl.PID {
		t.Fatalf("template now %+v, was pid %d", now, tpl.PID)
	}
}

// A template rebuild with what was learned that fails (here a learned request makes the new
// template exit) changes nothing: the generation and its template stay, and workers are still
// forks of it.
func TestFailedRebuildLeavesTheTemplateThatWorks(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the learner's first rebuild (5 s)")
	}
	cfg := fakeTemplateConfig("ok,exit-on=/heavy")
	cfg.Worker.MaxRequests = 5
	var p *pool.Pool
	l := learn.New(learn.Options{Python: true, OnRebuild: func() { p.Rebuild() }})
	h := startWith(t, cfg, func(o *pool.Options) { o.Learner = l })
	p = h.pool
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(t.Context()) })
	h.waitReady()
	for w := 1; w <= 2; w++ { // two new workers met GET /heavy 300 ms cold
		l.ObserveFirst(&telemetry.Request{Method: "GET", Path: "/heavy", Status: 200, Upstream: 300 * time.Millisecond, WorkerID: w,
			FirstRequests: true}, 2*time.Millisecond, true)
	}
	rec := h.logs.Wait(testutil.Msg("the template rebuild failed: the template that worked keeps forking the workers"), 20*time.Second)
	if !strings.Contains(rec.Attrs["error"], "the template exited") || !strings.Contains(rec.Attrs["error"], "exiting on /heavy") {
		t.Errorf("error: %s", rec.Attrs["error"])
	}
	st := h.statusJSON()
	if st.Generation != 1 || readyTemplate(st) == nil || readyTemplate(st).Generation != 1 {
		t.Fatalf("generation %d, templates %+v", st.Generation, st.Templates)
	}
	recycled := len(h.logs.All(testutil.Msg("worker admitted into rotation")))
	for i := 0; len(h.logs.All(testutil.Msg("worker admitted into rotation"))) < recycled+2; i++ {
		if i > 200 {
			t.Fatal("no recycle")
		}
		if r := h.get("/"); r.status != 200 {
			t.Fatalf("%d %s %v", r.status, r.body, r.err)
		}
	}
	for _, w := range h.statusJSON().Workers {
		if w.AdmittedAt == nil {
			continue // still booting
		}
		if w.Origin != "fork" || w.Generation != 1 {
			t.Errorf("worker %d: %s of generation %d, want a fork of generation 1", w.ID, w.Origin, w.Generation)
		}
	}
	if l.Status().Rebuilding {
		t.Error("the learner still counts a rebuild under way")
	}
}
