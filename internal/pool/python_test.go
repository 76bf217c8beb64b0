package pool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"warmpool/internal/config"
	"warmpool/internal/pool"
	"warmpool/internal/pyfork"
	"warmpool/internal/testutil"
	"warmpool/internal/worker"
)

// pythonApps holds the test apps of the warm-fork mode.
var pythonApps, _ = filepath.Abs("../pyfork/testdata")

// pythonFor returns an interpreter that has the servers a Python worker uses (waitress and
// uvicorn), or skips: CI installs Debian's python3-waitress and python3-uvicorn.
func pythonFor(t *testing.T) string {
	t.Helper()
	for _, exe := range []string{"/usr/bin/python3", "python3"} {
		if err := exec.Command(exe, "-c", "import waitress, uvicorn").Run(); err == nil {
			return exe
		}
	}
	t.Skip("no python3 with waitress and uvicorn here (Debian: apt-get install python3-waitress python3-uvicorn); the warm-fork tests need them")
	return ""
}

// pythonConfig serves app (module:callable in pyfork/testdata) from a warm template, with the
// harness's pool settings.
func pythonConfig(t *testing.T, app string) *config.Config {
	cfg := baseConfig()
	cfg.Worker.Command = nil
	cfg.Worker.Python = config.Python{App: app, Interface: config.InterfaceWSGI, Executable: pythonFor(t), Lifespan: config.LifespanTemplate,
		PostFork: "hooks:post_fork", PreFork: "hooks:pre_fork"}
	cfg.Worker.Dir = pythonApps
	cfg.Worker.Env = map[string]string{"HOOK_LOG": filepath.Join(t.TempDir(), "hooks.log"), "COLD_SECONDS": "0.2"}
	cfg.Warmup.Timeout = config.Duration{Duration: 20 * time.Second}
	return cfg
}

// appReply is what forkapp.py answers.
type appReply struct {
	PID      int      `json:"pid"`
	WarmedIn int      `json:"warmed_in"`
	WorkerID string   `json:"worker_id"`
	Random   float64  `json:"random"`
	Token    string   `json:"token"`
	Imported []string `json:"imported"`
}

func (h *harness) getApp(path string) appReply {
	h.t.Helper()
	r := h.get(path)
	if r.err != nil || r.status != 200 {
		h.t.Fatalf("GET %s: %v %d %s", path, r.err, r.status, r.body)
	}
	var a appReply
	if err := json.Unmarshal([]byte(r.body), &a); err != nil {
		h.t.Fatalf("GET %s: %v in %q", path, err, r.body)
	}
	return a
}

// hookCalls reads the hooks' log: "post_fork PID WORKER_ID" lines by hook name.
func hookCalls(t *testing.T, cfg *config.Config) map[string][]string {
	data, err := os.ReadFile(cfg.Worker.Env["HOOK_LOG"])
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for line := range strings.Lines(string(data)) {
		name, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		out[name] = append(out[name], rest)
	}
	return out
}

func readyTemplate(st pool.Status) *pyfork.TemplateStatus {
	for i := range st.Templates {
		if st.Templates[i].State == pyfork.TemplateReady {
			return &st.Templates[i]
		}
	}
	return nil
}

// Every worker, first start and recycle alike, is a fork of the warm template: it never pays
// the app's cold path itself, post_fork runs once in each, pre_fork once in the template.
func TestPythonWorkersAreForksOfTheWarmTemplate(t *testing.T) {
	cfg := pythonConfig(t, "forkapp:application")
	cfg.Worker.MaxRequests = 10
	h := start(t, cfg)
	h.waitReady()
	st := h.statusJSON()
	tpl := readyTemplate(st)
	if !st.Python || tpl == nil || tpl.PID == 0 {
		t.Fatalf("status shows no ready template with its pid: %+v", st.Templates)
	}
	// Requests until two workers were recycled (bounded in count).
	recycled := testutil.Msg("worker stopped", "reason", "recycled: max_requests")
	seen := map[int]bool{}
	for i := 0; i < 2000 && len(h.logs.All(recycled)) < 2; i++ {
		a := h.getApp("/")
		if a.WarmedIn != tpl.PID {
			t.Fatalf("worker pid %d built its warm state itself (warmed_in %d), not the template %d", a.PID, a.WarmedIn, tpl.PID)
		}
		seen[a.PID] = true
	}
	for range 8 { // the replacements serve
		a := h.getApp("/")
		if a.WarmedIn != tpl.PID {
			t.Fatalf("worker pid %d built its warm state itself (warmed_in %d), not the template %d", a.PID, a.WarmedIn, tpl.PID)
		}
		seen[a.PID] = true
	}
	if n := len(h.logs.All(recycled)); n < 2 || len(seen) < 3 {
		t.Fatalf("%d recycles, %d worker processes served; want 2 recycles and their replacements serving", n, len(seen))
	}
	for _, w := range h.statusJSON().Workers {
		if w.AdmittedAt == nil {
			continue // a replacement still starting
		}
		if w.Origin != "fork" {
			t.Errorf("worker %d: origin %q, want a fork", w.ID, w.Origin)
		}
	}
	calls := hookCalls(t, cfg)
	if len(calls["pre_fork"]) != 1 {
		t.Errorf("pre_fork ran %d times, want once: %q", len(calls["pre_fork"]), calls["pre_fork"])
	}
	spawned := len(h.logs.All(testutil.Msg("worker spawned", "origin", "fork")))
	pids := map[string]bool{}
	for _, c := range calls["post_fork"] {
		pid, _, _ := strings.Cut(c, " ")
		if pids[pid] {
			t.Errorf("post_fork ran twice in process %s", pid)
		}
		pids[pid] = true
	}
	// A worker spawned during the last recycle may not have run its hook yet.
	if n := len(calls["post_fork"]); n < spawned-1 || n > spawned {
		t.Errorf("post_fork ran %d times for %d forked workers", n, spawned)
	}
}

// A forked worker finds everything it runs imported by its template: an import after the fork
// is paid again by every worker, and its pages are never shared. (waitress's start-up imported
// the idna codec in every child until the template ran that step itself.)
func TestForkedWorkersImportNothingTheirTemplateDidNot(t *testing.T) {
	cfg := pythonConfig(t, "forkapp:application")
	h := start(t, cfg)
	h.waitReady()
	byPID := map[int][]string{}
	for i := 0; i < 40 && len(byPID) < 2; i++ { // the warm-up has reached each worker's threads
		a := h.getApp("/imported")
		if a.Imported == nil {
			t.Fatalf("worker pid %d is no fork", a.PID)
		}
		byPID[a.PID] = a.Imported
	}
	if len(byPID) < 2 {
		t.Fatalf("40 requests reached %d worker(s)", len(byPID))
	}
	for pid, imported := range byPID {
		if len(imported) > 0 {
			t.Errorf("worker pid %d imported after its fork: %s", pid, strings.Join(imported, ", "))
		}
	}
}

// The template runs at warmup.nice once workers serve, and never in the idle class (its
// heartbeat must be answered on a busy machine); a replacement that is not needed yet is forked
// and then put in the idle class; a fork in rotation runs at normal priority.
func TestTemplateAndBootingForksYieldTheCPU(t *testing.T) {
	if ok, why := worker.CanRestorePriority(); !ok {
		t.Skip("warmpool cannot restore priorities here, so it lowers none:", why)
	}
	cfg := pythonConfig(t, "forkapp:application")
	cfg.Warmup.Nice = 7
	h := start(t, cfg)
	h.waitReady()
	st := h.statusJSON()
	tpl := readyTemplate(st)
	if tpl == nil {
		t.Fatalf("no ready template: %+v", st.Templates)
	}
	if policy, n := schedOf(t, tpl.PID); policy != schedNormal || n != 7 {
		t.Errorf("template pid %d runs with policy %d at nice %d, want normal at warmup.nice 7", tpl.PID, policy, n)
	}
	for _, w := range st.Workers {
		if policy, n := schedOf(t, w.PID); w.AdmittedAt != nil && (policy != schedNormal || n != 0) {
			t.Errorf("worker %d (pid %d) in rotation runs with policy %d at nice %d, want normal at 0", w.ID, w.PID, policy, n)
		}
	}
	// A reload: the new generation's template boots while workers serve, at warmup.nice, and
	// forks replacements that are not needed yet; each is put in the idle class.
	h.pool.Reload()
	rec := h.logs.Wait(testutil.Msg("booting worker's CPU priority set", "worker", "3"), 20*time.Second)
	if rec.Attrs["idle_class"] != "true" {
		t.Errorf("the replacement was set as %v, want the idle class", rec.Attrs)
	}
	st = h.waitStatus("generation 2's template alone", func(st pool.Status) bool {
		return len(st.Templates) == 1 && st.Templates[0].Generation == 2 && st.Templates[0].State == pyfork.TemplateReady
	})
	tpl = readyTemplate(st)
	if policy, n := schedOf(t, tpl.PID); policy != schedNormal || n != 7 {
		t.Errorf("template of generation 2 (pid %d) runs with policy %d at nice %d, want normal at warmup.nice 7", tpl.PID, policy, n)
	}
}

// Forked children do not share random state: random reseeds itself at fork, secrets reads the
// OS, and two workers never hand out the same values.
func TestForkedWorkersDrawDifferentRandomValues(t *testing.T) {
	cfg := pythonConfig(t, "forkapp:application")
	h := start(t, cfg)
	h.waitReady()
	byPID := map[int]appReply{}
	for i := 0; i < 40 && len(byPID) < 2; i++ {
		a := h.getApp("/random")
		if _, ok := byPID[a.PID]; !ok {
			byPID[a.PID] = a
		}
	}
	if len(byPID) < 2 {
		t.Fatalf("40 requests reached %d worker(s)", len(byPID))
	}
	var first *appReply
	for _, a := range byPID {
		if first == nil {
			first = &a
			continue
		}
		if a.Random == first.Random || a.Token == first.Token {
			t.Fatalf("workers %d and %d drew the same values: %+v and %+v", first.PID, a.PID, *first, a)
		}
	}
}

// An app that starts a thread at import cannot be forked safely: the template refuses, naming
// the thread, and every worker starts as a fresh process instead, loudly.
func TestTemplateWithAThreadRefusesAndWorkersStartFresh(t *testing.T) {
	cfg := pythonConfig(t, "threadapp:application")
	h := start(t, cfg)
	h.waitReady()
	st := h.waitStatus("the template's refusal", func(st pool.Status) bool {
		return len(st.Templates) == 1 && st.Templates[0].State == pyfork.TemplateRefused
	})
	problem := st.Templates[0].Problem
	for _, want := range []string{"metrics-flusher", "threadapp._flush_metrics_forever"} {
		if !strings.Contains(problem, want) {
			t.Errorf("the template's problem does not name %q: %s", want, problem)
		}
	}
	warn := h.logs.Wait(testutil.MsgPrefix("the template cannot fork"), 5*time.Second)
	if !strings.Contains(warn.Attrs["reason"], "metrics-flusher") || warn.Level.String() != "WARN" {
		t.Errorf("the refusal is not a WARN naming the thread: %v", warn)
	}
	h.logs.Wait(testutil.MsgPrefix("starting a fresh Python worker process", "reason", "threads"), 5*time.Second)
	for _, w := range st.Workers {
		if w.Origin != "fresh" {
			t.Errorf("worker %d: origin %q, want fresh", w.ID, w.Origin)
		}
	}
	if r := h.get("/"); r.status != 200 || r.body != "ok\n" {
		t.Fatalf("a fresh worker answered %d %q", r.status, r.body)
	}
	if n := h.counter("warmpool_python_fork_fallbacks_total", map[string]string{"reason": "threads"}); n != 2 {
		t.Errorf("warmpool_python_fork_fallbacks_total{reason=threads} = %v, want 2", n)
	}
	if n := h.counter("warmpool_python_forks_total", nil); n != 0 {
		t.Errorf("warmpool_python_forks_total = %v, want 0", n)
	}
}

// A template that is not ready within warmup.timeout (here its pre_fork hangs) does not hold up
// the workers: they start as fresh processes, and the template is restarted.
func TestWorkersStartFreshWhenNoTemplateIsReadyInTime(t *testing.T) {
	cfg := pythonConfig(t, "forkapp:application")
	cfg.Worker.Python.PreFork = "hooks:hang"
	cfg.Warmup.Timeout = config.Duration{Duration: 2 * time.Second}
	h := start(t, cfg)
	h.waitReady()
	st := h.statusJSON()
	for _, w := range st.Workers {
		if w.Origin != "fresh" {
			t.Errorf("worker %d: origin %q, want fresh", w.ID, w.Origin)
		}
	}
	if n := h.counter("warmpool_python_fork_fallbacks_total", map[string]string{"reason": "template_unavailable"}); n != 2 {
		t.Errorf("warmpool_python_fork_fallbacks_total{reason=template_unavailable} = %v, want 2", n)
	}
	h.logs.Wait(testutil.MsgPrefix("the template failed to boot"), 10*time.Second)
	if a := h.getApp("/"); a.WarmedIn != a.PID {
		t.Errorf("a fresh worker (pid %d) reports its warm state from %d", a.PID, a.WarmedIn)
	}
}

// A template that dies is restarted warm with backoff; the workers keep serving, and no
// request fails meanwhile.
func TestKilledTemplateIsReplacedWithoutAFailedRequest(t *testing.T) {
	cfg := pythonConfig(t, "forkapp:application")
	cfg.Worker.MaxRequests = 15
	h := start(t, cfg)
	h.waitReady()
	old := readyTemplate(h.statusJSON())
	if old == nil {
		t.Fatal("no ready template")
	}
	var (
		mu       sync.Mutex
		failures []string
		served   int
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for range 2000 {
				select {
				case <-stop:
					return
				default:
				}
				r := h.get("/")
				mu.Lock()
				served++
				if r.err != nil || r.status != 200 {
					failures = append(failures, r.body+errString(r.err))
				}
				mu.Unlock()
			}
		})
	}
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.logs.Wait(testutil.MsgPrefix("the template died"), 10*time.Second)
	st := h.waitStatus("a new ready template", func(st pool.Status) bool {
		tpl := readyTemplate(st)
		return tpl != nil && tpl.PID != old.PID
	})
	// Recycles after the restart fork from the new template again.
	forks := len(h.logs.All(testutil.Msg("worker spawned", "origin", "fork")))
	h.logs.WaitN(testutil.Msg("worker spawned", "origin", "fork"), forks+2, 15*time.Second)
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed while the template was replaced: %q", len(failures), served, failures[:min(5, len(failures))])
	}
	if tpl := readyTemplate(st); tpl.Restarts != 1 {
		t.Errorf("template restarts = %d, want 1", tpl.Restarts)
	}
	if n := h.counter("warmpool_python_template_failures_total", map[string]string{"reason": "exited"}); n != 1 {
		t.Errorf("warmpool_python_template_failures_total{reason=exited} = %v, want 1", n)
	}
}

// A template that stops answering (here: SIGSTOP) holds up no replacement: a launch that finds
// it stopped starts a fresh process at once, and the heartbeat kills the template and restarts
// it warm. Both workers killed: the pool serves again as soon as fresh workers boot. (On main
// at ff1ffd7 every replacement waited the whole warmup.timeout, and /status showed the stopped
// template ready.)
func TestStoppedTemplateDoesNotHoldUpAReplacement(t *testing.T) {
	cfg := pythonConfig(t, "forkapp:application")
	cfg.Warmup.Timeout = config.Duration{Duration: 60 * time.Second}
	h := start(t, cfg)
	h.waitReady()
	st := h.statusJSON()
	tpl := readyTemplate(st)
	if err := syscall.Kill(tpl.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitProcessState(t, tpl.PID, "T")
	for _, w := range st.Workers {
		if err := syscall.Kill(w.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	h.logs.Wait(testutil.MsgPrefix("starting a fresh Python worker process", "reason", "template_unavailable"), 10*time.Second)
	h.waitStatus("two ready workers again", func(st pool.Status) bool { return st.Ready == 2 })
	if r := h.get("/"); r.status != 200 {
		t.Fatalf("after the fresh workers: %d %s %v", r.status, r.body, r.err)
	}
	rec := h.logs.Wait(testutil.MsgPrefix("the template does not answer"), 10*time.Second)
	if !strings.Contains(rec.Attrs["reason"], "stopped") {
		t.Errorf("template killed because %q", rec.Attrs["reason"])
	}
	h.waitStatus("a new ready template", func(st pool.Status) bool {
		n := readyTemplate(st)
		return n != nil && n.PID != tpl.PID
	})
	if n := h.counter("warmpool_python_template_failures_total", map[string]string{"reason": "unresponsive"}); n != 1 {
		t.Errorf("warmpool_python_template_failures_total{reason=unresponsive} = %v, want 1", n)
	}
	if n := len(h.logs.All(testutil.MsgPrefix("starting a fresh Python worker process", "reason", "fork_failed"))); n != 0 {
		t.Errorf("%d workers waited for a fork from the stopped template", n)
	}
}

// waitProcessState waits until pid is in state (a letter of /proc/PID/stat): signals are
// delivered asynchronously.
func waitProcessState(t *testing.T, pid int, state string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); len(f) > 0 && f[0] == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d never reached state %s", pid, state)
		}
		time.Sleep(time.Millisecond)
	}
}

// A forked worker that crashes is a crash like any other: its exit status is known (warmpool
// adopted and reaped it) and a warm fork replaces it.
func TestCrashedForkIsReapedWithItsStatusAndReplaced(t *testing.T) {
	cfg := pythonConfig(t, "forkapp:application")
	h := start(t, cfg)
	h.waitReady()
	h.get("/crash")
	crash := h.logs.Wait(testutil.MsgPrefix("worker exited unexpectedly"), 10*time.Second)
	if crash.Attrs["exit"] != "exit status 3" {
		t.Errorf("crash logged with exit %q, want exit status 3", crash.Attrs["exit"])
	}
	h.waitStatus("two ready workers again", func(st pool.Status) bool { return st.Ready == 2 })
	if a := h.getApp("/"); a.WarmedIn == a.PID {
		t.Errorf("the replacement built its warm state itself")
	}
}

// SIGHUP's reload starts a new template generation; the workers roll to its forks and the old
// template exits once the new one is warm.
func TestReloadRollsWorkersToTheNewTemplate(t *testing.T) {
	cfg := pythonConfig(t, "forkapp:application")
	h := start(t, cfg)
	h.waitReady()
	old := readyTemplate(h.statusJSON())
	h.pool.Reload()
	st := h.waitStatus("generation 2 workers forked from the generation 2 template", func(st pool.Status) bool {
		if len(st.Templates) != 1 || st.Templates[0].Generation != 2 || st.Ready != 2 {
			return false
		}
		for _, w := range st.Workers {
			if w.Generation != 2 || w.Origin != "fork" {
				return false
			}
		}
		return true
	})
	if st.Templates[0].PID == old.PID {
		t.Fatal("the new generation uses the old template")
	}
	if err := syscall.Kill(old.PID, 0); err == nil {
		// Reaped by the pool's process: gone from the table once its Wait returned.
		t.Errorf("the old template (pid %d) still runs", old.PID)
	}
	if a := h.getApp("/"); a.WarmedIn != st.Templates[0].PID {
		t.Errorf("served warm by %d, want the new template's state (%d)", a.WarmedIn, st.Templates[0].PID)
	}
}

// An ASGI app is forked the same way and served by uvicorn in the child.
func TestASGIWorkersAreForksOfTheWarmTemplate(t *testing.T) {
	cfg := pythonConfig(t, "asgiapp:application")
	cfg.Worker.Python.Interface = config.InterfaceASGI
	h := start(t, cfg)
	h.waitReady()
	tpl := readyTemplate(h.statusJSON())
	if tpl == nil {
		t.Fatal("no ready template")
	}
	for range 4 {
		a := h.getApp("/")
		if a.WarmedIn != tpl.PID {
			t.Fatalf("ASGI worker %d warmed itself (%d), not in the template %d", a.PID, a.WarmedIn, tpl.PID)
		}
		if a.Imported == nil {
			t.Fatalf("ASGI worker %d is no fork", a.PID)
		}
		if len(a.Imported) > 0 {
			t.Errorf("ASGI worker %d imported after its fork: %s", a.PID, strings.Join(a.Imported, ", "))
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return " " + err.Error()
}

// An app environment without its server package (here waitress is shadowed) cannot heal by
// retrying: the template and the fresh workers exit with the helper's "unfixable" status, the
// template is not restarted, and the pool stops its retries with one line naming the fix.
// (Issue 21: a missing waitress looped forever.)
func TestMissingServerPackageStopsTheRetries(t *testing.T) {
	cfg := pythonConfig(t, "forkapp:application")
	cfg.Worker.Env["PYTHONPATH"] = filepath.Join(pythonApps, "nowaitress")
	h := start(t, cfg)
	h.logs.Wait(testutil.MsgPrefix("the template cannot start, and retrying will not change that"), 20*time.Second)
	stop := h.logs.Wait(testutil.MsgPrefix("workers cannot start, and retrying will not change that"), 20*time.Second)
	if !strings.Contains(stop.Attrs["reason"], "cannot import waitress") || !strings.Contains(stop.Attrs["reason"], "pip install waitress") {
		t.Errorf("reason: %q", stop.Attrs["reason"])
	}
	st := h.waitStatus("the retries stopped", func(st pool.Status) bool { return strings.HasPrefix(st.Problem, "retries stopped") })
	if len(st.Templates) != 1 || st.Templates[0].State != pyfork.TemplateFailed {
		t.Errorf("templates: %+v", st.Templates)
	}
	if n := len(h.logs.All(testutil.MsgPrefix("the template failed to boot"))); n != 1 {
		t.Errorf("the template was tried %d times", n)
	}
}

// pythonWithModules skips unless the interpreter the tests use can import the modules.
func pythonWithModules(t *testing.T, cfg *config.Config, modules ...string) {
	t.Helper()
	if err := exec.Command(cfg.Worker.Python.Executable, "-c", "import "+strings.Join(modules, ", ")).Run(); err != nil {
		t.Skipf("%s cannot import %s (Debian: apt-get install python3-starlette python3-fastapi; CI installs them)", cfg.Worker.Python.Executable, strings.Join(modules, ", "))
	}
}

// lifespanEvents reads $LIFESPAN_LOG: the pids that ran the app's lifespan startup and shutdown.
func lifespanEvents(t *testing.T, cfg *config.Config) (startups, shutdowns []int) {
	t.Helper()
	data, err := os.ReadFile(cfg.Worker.Env["LIFESPAN_LOG"])
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		event, pid, _ := strings.Cut(line, " ")
		n, _ := strconv.Atoi(pid)
		switch event {
		case "startup":
			startups = append(startups, n)
		case "shutdown":
			shutdowns = append(shutdowns, n)
		}
	}
	return startups, shutdowns
}

// lifespanReply is what lifespanapp.py and fastapiapp.py answer.
type lifespanReply struct {
	PID     int `json:"pid"`
	BuiltIn int `json:"built_in"`
	Weights int `json:"weights"`
}

// An ASGI app's lifespan startup runs once, in the template: every worker, first start and
// recycle alike, serves with the state it made and runs no startup of its own; the shutdown
// runs in the template when it retires. Starlette's lifespan and FastAPI 0.92's on_event
// handlers alike (issue 22: every child ran the startup again).
func TestASGILifespanRunsOnceInTheTemplate(t *testing.T) {
	for _, app := range []struct{ spec, module string }{{"lifespanapp:application", "starlette"}, {"fastapiapp:application", "fastapi"}} {
		t.Run(app.module, func(t *testing.T) {
			cfg := pythonConfig(t, app.spec)
			pythonWithModules(t, cfg, app.module)
			cfg.Worker.Python.Interface = config.InterfaceASGI
			cfg.Worker.MaxRequests = 5
			cfg.Worker.Env["LIFESPAN_LOG"] = filepath.Join(t.TempDir(), "lifespan.log")
			h := start(t, cfg)
			h.waitReady()
			tpl := readyTemplate(h.statusJSON())
			if tpl == nil {
				t.Fatal("no ready template")
			}
			pids := map[int]bool{}
			for range 24 { // 2 workers recycled every 5 requests: some answers come from replacements
				r := h.get("/")
				if r.err != nil || r.status != 200 {
					t.Fatalf("%v %d %s", r.err, r.status, r.body)
				}
				var a lifespanReply
				if err := json.Unmarshal([]byte(r.body), &a); err != nil {
					t.Fatalf("%v in %q", err, r.body)
				}
				if a.PID == tpl.PID || a.BuiltIn != tpl.PID {
					t.Fatalf("worker %d serves state built in %d; the template is %d", a.PID, a.BuiltIn, tpl.PID)
				}
				pids[a.PID] = true
			}
			if len(pids) < 3 {
				t.Errorf("only %d workers answered: recycles did not happen", len(pids))
			}
			if startups, _ := lifespanEvents(t, cfg); len(startups) != 1 || startups[0] != tpl.PID {
				t.Fatalf("lifespan startups in %v, want once, in the template %d", startups, tpl.PID)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := h.pool.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if _, shutdowns := lifespanEvents(t, cfg); len(shutdowns) != 1 || shutdowns[0] != tpl.PID {
				t.Fatalf("lifespan shutdowns in %v, want once, in the retiring template %d", shutdowns, tpl.PID)
			}
		})
	}
}

// lifespan = "worker" keeps a lifespan per process: the template runs one for its warm-up, and
// each worker its own.
func TestASGILifespanPerWorkerWhenAsked(t *testing.T) {
	cfg := pythonConfig(t, "lifespanapp:application")
	pythonWithModules(t, cfg, "starlette")
	cfg.Worker.Python.Interface = config.InterfaceASGI
	cfg.Worker.Python.Lifespan = config.LifespanWorker
	cfg.Worker.Env["LIFESPAN_LOG"] = filepath.Join(t.TempDir(), "lifespan.log")
	h := start(t, cfg)
	h.waitReady()
	st := h.statusJSON()
	tpl := readyTemplate(st)
	for range 6 {
		r := h.get("/")
		var a lifespanReply
		if err := json.Unmarshal([]byte(r.body), &a); err != nil || a.BuiltIn != a.PID {
			t.Fatalf("worker %d serves state built in %d (%v, %q)", a.PID, a.BuiltIn, err, r.body)
		}
	}
	startups, _ := lifespanEvents(t, cfg)
	want := []int{tpl.PID}
	for _, w := range st.Workers {
		want = append(want, w.PID)
	}
	slices.Sort(startups)
	slices.Sort(want)
	if !slices.Equal(startups, want) {
		t.Fatalf("lifespan startups in %v, want the template and each worker: %v", startups, want)
	}
}

// peerListener accepts connections on 127.0.0.1 and holds them open until the test ends.
func peerListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// A template that holds a connection (a client opened at import, or in the lifespan's
// startup) refuses to fork, naming each one: every worker would share it and interleave its
// traffic. Workers start fresh, loudly and counted, until the app closes it in pre_fork or the
// operator allows it by its peer. WSGI and ASGI alike (issue 22: one TCP connection carried
// writes from three processes).
func TestTemplateHoldingAConnectionRefusesToFork(t *testing.T) {
	for _, app := range []struct{ spec, iface string }{{"sockapp:application", config.InterfaceWSGI}, {"sockapp:asgi_application", config.InterfaceASGI}} {
		t.Run(app.iface, func(t *testing.T) {
			peer := peerListener(t)
			cfg := pythonConfig(t, app.spec)
			cfg.Worker.Python.Interface = app.iface
			cfg.Worker.Env["SOCK_PEER"] = peer
			h := start(t, cfg)
			rec := h.logs.Wait(testutil.MsgPrefix("the template cannot fork"), 20*time.Second)
			reason := rec.Attrs["reason"]
			if n := strings.Count(reason, "(tcp to "+peer+")"); n != map[string]int{"wsgi": 1, "asgi": 2}[app.iface] {
				t.Errorf("refusal names %d connections to %s: %s", n, peer, reason)
			}
			if !strings.Contains(reason, "allow_inherited_sockets") {
				t.Errorf("refusal does not say what to do: %s", reason)
			}
			h.waitReady()
			for _, w := range h.statusJSON().Workers {
				if w.Origin != "fresh" {
					t.Errorf("worker %d started as %q, want fresh", w.ID, w.Origin)
				}
			}
			if n := h.counter("warmpool_python_fork_fallbacks_total", map[string]string{"reason": "sockets"}); n < 2 {
				t.Errorf("warmpool_python_fork_fallbacks_total{reason=sockets} = %v", n)
			}
		})
	}
}

// A connection the operator allows by its peer does not keep the template from forking.
func TestAllowedInheritedConnectionIsForked(t *testing.T) {
	peer := peerListener(t)
	cfg := pythonConfig(t, "sockapp:application")
	cfg.Worker.Env["SOCK_PEER"] = peer
	cfg.Worker.Python.AllowInheritedSockets = []string{peer}
	h := start(t, cfg)
	h.waitReady()
	for _, w := range h.statusJSON().Workers {
		if w.Origin != "fork" {
			t.Errorf("worker %d started as %q, want a fork", w.ID, w.Origin)
		}
	}
}
