package pool_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"warmpool/internal/config"
	"warmpool/internal/testutil"
	"warmpool/internal/testworker"
	"warmpool/internal/worker"
)

// schedOf reads the scheduling policy and nice value of every thread of a process (fields 41
// and 19 of /proc/PID/task/TID/stat); it fails the test on a thread that differs from the rest.
func schedOf(t *testing.T, pid int) (policy, nice int) {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for i, task := range tasks {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		p, _ := strconv.Atoi(f[38])
		n, _ := strconv.Atoi(f[16])
		if i > 0 && (p != policy || n != nice) {
			t.Fatalf("pid %d: thread %s has policy %d nice %d, another policy %d nice %d", pid, task.Name(), p, n, policy, nice)
		}
		policy, nice = p, n
	}
	return policy, nice
}

const schedNormal, schedIdle = 0, 5

// slowBootConfig is one worker due after maxRequests, with a warm-up slow enough (0.7 s) that
// each boot can be looked at while it lasts; it skips where warmpool lowers no priority.
func slowBootConfig(t *testing.T, maxRequests int) *config.Config {
	if ok, why := worker.CanRestorePriority(); !ok {
		t.Skip("warmpool cannot restore priorities here, so it lowers none:", why)
	}
	cfg := baseConfig()
	cfg.Worker.Count = 1
	cfg.Worker.MaxRequests = maxRequests
	cfg.Warmup.Requests = []config.WarmupRequest{{Method: "GET", Path: "/sleep?ms=700", Repeat: 1}}
	return cfg
}

// setPriorityLog is the debug record of a boot's priority being set, for worker id.
func setPriorityLog(id string) testutil.Match {
	return testutil.Msg("booting worker's CPU priority set", "worker", id)
}

// The first start boots at normal priority (nothing serves yet: everything waits for it). A
// replacement for a worker that still serves below its limit boots in the idle CPU class, and
// is raised to normal priority once the worker it replaces is gone. Admitted workers run at
// normal priority.
func TestReplacementsBootIdleUntilTheyAreNeeded(t *testing.T) {
	cfg := slowBootConfig(t, 0)
	cfg.Warmup.Nice = 9
	h := start(t, cfg)

	h.logs.Wait(setPriorityLog("1"), 10*time.Second)
	first := h.logs.Wait(testutil.Msg("worker spawned", "worker", "1"), time.Second)
	pid, _ := strconv.Atoi(first.Attrs["pid"])
	if policy, nice := schedOf(t, pid); policy != schedNormal || nice != 0 {
		t.Errorf("first worker boots with policy %d nice %d, want normal priority: nothing serves yet", policy, nice)
	}
	h.waitReady()

	h.pool.Reload() // the worker is due, below any limit: its replacement boots while it serves
	rec := h.logs.Wait(setPriorityLog("2"), 10*time.Second)
	if rec.Attrs["idle_class"] != "true" {
		t.Fatalf("replacement set as %v, want the idle class", rec.Attrs)
	}
	second := h.logs.Wait(testutil.Msg("worker spawned", "worker", "2"), time.Second)
	pid2, _ := strconv.Atoi(second.Attrs["pid"])
	if policy, _ := schedOf(t, pid2); policy != schedIdle {
		t.Fatalf("replacement boots with policy %d, want SCHED_IDLE (%d)", policy, schedIdle)
	}

	// The worker it replaces dies: the replacement is needed now.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.logs.Wait(testutil.Msg("booting replacement's CPU priority raised", "worker", "2", "to", "normal priority"), 10*time.Second)
	if policy, nice := schedOf(t, pid2); policy != schedNormal || nice != 0 {
		t.Errorf("raised replacement runs with policy %d nice %d, want normal priority", policy, nice)
	}
	h.logs.Wait(testutil.Msg("worker admitted into rotation", "worker", "2"), 10*time.Second)
	if policy, nice := schedOf(t, pid2); policy != schedNormal || nice != 0 {
		t.Errorf("admitted replacement runs with policy %d nice %d, want normal at nice 0", policy, nice)
	}
}

// A replacement started early (max_requests' lead) boots in the idle class while the worker it
// replaces serves below its limit, and is raised to normal priority the moment that worker
// reaches max_requests: under saturation the idle class would get no CPU, and the worker would
// serve far past its limit (issue 21: 3568 requests against a limit of 205).
func TestEarlyReplacementIsRaisedWhenItsPredecessorReachesItsLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("three slow boots in a row")
	}
	cfg := slowBootConfig(t, 10)
	cfg.Worker.Env[testworker.EnvStopDelay] = "1s" // a drained worker lives on a moment, to be looked at
	h := start(t, cfg)
	h.waitReady()
	// The first recycle teaches the lead: worker 1 serves 16 requests against its limit of 10
	// while its replacement warms (0.7 s), so the next replacement starts 3 requests early.
	for range 16 {
		h.get("/")
	}
	h.logs.Wait(testutil.Msg("draining worker", "worker", "1"), 10*time.Second)
	// Worker 2 was admitted before the lead was learned: it is due at its limit, and its
	// replacement is needed at once.
	for range 10 {
		h.get("/")
	}
	if rec := h.logs.Wait(setPriorityLog("3"), 10*time.Second); rec.Attrs["idle_class"] != "false" || rec.Attrs["nice"] != "0" {
		t.Fatalf("replacement of a worker at its limit set as %v, want normal priority", rec.Attrs)
	}
	h.logs.Wait(testutil.Msg("draining worker", "worker", "2"), 10*time.Second)
	for range 7 { // worker 3 is due at 10-3: its replacement starts early, idle
		h.get("/")
	}
	rec := h.logs.Wait(setPriorityLog("4"), 10*time.Second)
	if rec.Attrs["idle_class"] != "true" {
		t.Fatalf("early replacement set as %v, want the idle class", rec.Attrs)
	}
	if len(h.logs.All(testutil.Msg("booting replacement's CPU priority raised", "worker", "4"))) > 0 {
		t.Fatal("the early replacement was raised before its predecessor reached its limit")
	}
	for range 3 { // worker 3 reaches max_requests
		h.get("/")
	}
	raised := h.logs.Wait(testutil.Msg("booting replacement's CPU priority raised", "worker", "4"), 10*time.Second)
	if raised.Attrs["to"] != "normal priority" {
		t.Errorf("raised to %q, want normal priority", raised.Attrs["to"])
	}
	// Past its limit, worker 3 yields the CPU to its replacement (warmup.nice) until it drains,
	// and drains at normal priority.
	pid3 := workerPID(h, 3)
	if policy, nice := schedOf(t, pid3); policy != schedNormal || nice != cfg.Warmup.Nice {
		t.Errorf("worker past its limit runs with policy %d nice %d, want normal at warmup.nice %d", policy, nice, cfg.Warmup.Nice)
	}
	h.logs.Wait(testutil.Msg("worker admitted into rotation", "worker", "4"), 10*time.Second)
	h.logs.Wait(testutil.Msg("draining worker", "worker", "3"), 10*time.Second)
	if policy, nice := schedOf(t, pid3); policy != schedNormal || nice != 0 {
		t.Errorf("draining worker runs with policy %d nice %d, want normal priority", policy, nice)
	}
}

// An idle replacement that has not passed its warm-up by half its warmup.timeout is raised to
// warmup.nice: a busy machine slows recycling, and never starves a replacement into a failure.
func TestIdleReplacementIsRaisedAtHalfItsWarmupTimeout(t *testing.T) {
	cfg := slowBootConfig(t, 0)
	// The warm-up (1.5 s) outlasts half the timeout (1.25 s), with a second to spare after it
	// for a replacement that got no CPU before its raise (a loaded CI machine).
	cfg.Warmup.Requests = []config.WarmupRequest{{Method: "GET", Path: "/sleep?ms=1500", Repeat: 1}}
	cfg.Warmup.Timeout = config.Duration{Duration: 2500 * time.Millisecond}
	h := start(t, cfg)
	h.waitReady()
	h.pool.Reload()
	raised := h.logs.Wait(testutil.Msg("booting replacement's CPU priority raised", "worker", "2"), 10*time.Second)
	if raised.Attrs["why"] != "half its warmup.timeout passed" || raised.Attrs["to"] != "warmup.nice" {
		t.Errorf("raised to %q because %q", raised.Attrs["to"], raised.Attrs["why"])
	}
	h.logs.Wait(testutil.Msg("worker admitted into rotation", "worker", "2"), 10*time.Second)
}

// Workers stop at normal priority, at a shutdown too: in the idle class a busy machine kept a
// stopping pool waiting for CPU (an idle 4-worker uWSGI pool took 16 s to stop).
func TestDrainedWorkersStopAtNormalPriority(t *testing.T) {
	cfg := slowBootConfig(t, 0)
	cfg.Worker.Count = 2
	// The worker takes 1 s to exit after SIGTERM, so its priority can be read while it stops.
	cfg.Worker.Env[testworker.EnvStopDelay] = "1s"
	h := start(t, cfg)
	h.waitReady()
	pids := []int{workerPID(h, 1), workerPID(h, 2)}
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		closed <- h.pool.Close(ctx)
	}()
	for _, id := range []string{"1", "2"} {
		h.logs.Wait(testutil.Msg("draining worker", "worker", id, "reason", "shutdown"), 10*time.Second)
	}
	h.logs.Wait(testutil.Contains("stopping on SIGTERM"), 10*time.Second)
	for _, pid := range pids {
		if policy, nice := schedOf(t, pid); policy != schedNormal || nice != 0 {
			t.Errorf("worker pid %d stops with policy %d nice %d, want normal priority", pid, policy, nice)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
