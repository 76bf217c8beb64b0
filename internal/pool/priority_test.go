package pool_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"warmpool/internal/config"
	"warmpool/internal/testutil"
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

// A replacement for a worker that still serves boots in the idle CPU class; a worker the pool
// is missing boots at warmup.nice, and an idle replacement is raised to it once the worker it
// replaces is gone. Admitted workers run at normal priority.
func TestReplacementsBootIdleUntilTheyAreNeeded(t *testing.T) {
	cfg := slowBootConfig(t, 3)
	cfg.Warmup.Nice = 9
	h := start(t, cfg)

	lowered := testutil.Msg("booting worker's CPU priority lowered", "worker", "1")
	h.logs.Wait(lowered, 10*time.Second)
	first := h.logs.Wait(testutil.Msg("worker spawned", "worker", "1"), time.Second)
	pid, _ := strconv.Atoi(first.Attrs["pid"])
	if policy, nice := schedOf(t, pid); policy != schedNormal || nice != 9 {
		t.Errorf("first worker boots with policy %d nice %d, want normal at warmup.nice 9", policy, nice)
	}
	h.waitReady()
	if policy, nice := schedOf(t, pid); policy != schedNormal || nice != 0 {
		t.Errorf("admitted worker runs with policy %d nice %d, want normal at nice 0", policy, nice)
	}

	for range 3 { // the worker is due: its replacement boots while it serves
		h.get("/")
	}
	rec := h.logs.Wait(testutil.Msg("booting worker's CPU priority lowered", "worker", "2"), 10*time.Second)
	if rec.Attrs["idle_class"] != "true" {
		t.Fatalf("replacement lowered as %v, want the idle class", rec.Attrs)
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
	h.logs.Wait(testutil.Msg("booting replacement raised from the idle CPU class to warmup.nice", "worker", "2"), 10*time.Second)
	if policy, nice := schedOf(t, pid2); policy != schedNormal || nice != 9 {
		t.Errorf("raised replacement runs with policy %d nice %d, want normal at warmup.nice 9", policy, nice)
	}
	h.logs.Wait(testutil.Msg("worker admitted into rotation", "worker", "2"), 10*time.Second)
	if policy, nice := schedOf(t, pid2); policy != schedNormal || nice != 0 {
		t.Errorf("admitted replacement runs with policy %d nice %d, want normal at nice 0", policy, nice)
	}
}

// An idle replacement that has not passed its warm-up by half its warmup.timeout is raised to
// warmup.nice: a busy machine slows recycling, and never starves a replacement into a failure.
func TestIdleReplacementIsRaisedAtHalfItsWarmupTimeout(t *testing.T) {
	cfg := slowBootConfig(t, 2)
	cfg.Warmup.Timeout = config.Duration{Duration: time.Second}
	h := start(t, cfg)
	h.waitReady()
	for range 2 {
		h.get("/")
	}
	raised := h.logs.Wait(testutil.Msg("booting replacement raised from the idle CPU class to warmup.nice", "worker", "2"), 10*time.Second)
	if raised.Attrs["why"] != "half its warmup.timeout passed" {
		t.Errorf("raised because %q", raised.Attrs["why"])
	}
	h.logs.Wait(testutil.Msg("worker admitted into rotation", "worker", "2"), 10*time.Second)
}
