package pool_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"warmpool/internal/config"
	"warmpool/internal/pool"
	"warmpool/internal/testutil"
	"warmpool/internal/testworker"
)

const admitted = "worker admitted into rotation"

// Recycling under concurrent load: no failed request, no request on a worker whose warm-up had
// not passed, no request that met the cold start, and the rotation never below count.
func TestRecyclingUnderLoadIsWarmAndKeepsCapacity(t *testing.T) {
	cfg := baseConfig()
	cfg.Worker.MaxRequests = 25
	cfg.Worker.MaxRequestsJitter = 5
	// No ceiling: at 800 requests a second a worker reaches twice its 25 while its replacement
	// boots, and the ceiling trades capacity for the limit (TestMaxRequestsCeilingDrains...).
	cfg.Worker.MaxRequestsCeiling = 0
	cfg.Worker.Surge = 2
	h := start(t, cfg)
	h.waitReady()

	// Load runs until four recycles have completed (bounded in requests and time).
	const clients, maxPerClient, wantRecycles = 8, 1000, 4
	recycledStop := testutil.Msg("worker stopped", "reason", "recycled: max_requests")
	var mu sync.Mutex
	workers := map[string]bool{}
	var failures []string
	sent := 0
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range maxPerClient {
				if len(h.logs.All(recycledStop)) >= wantRecycles {
					return
				}
				r := h.get("/sleep?ms=5")
				mu.Lock()
				sent++
				switch {
				case r.err != nil:
					failures = append(failures, r.err.Error())
				case r.status != 200:
					failures = append(failures, strconv.Itoa(r.status)+" "+r.body)
				case r.header.Get(testworker.HeaderWarmupsSeen) != "4":
					failures = append(failures, "served by worker "+r.header.Get(testworker.HeaderID)+" after only "+r.header.Get(testworker.HeaderWarmupsSeen)+" warm-up requests")
				case r.header.Get(testworker.HeaderCold) != "false":
					failures = append(failures, "request met the cold start on worker "+r.header.Get(testworker.HeaderID))
				}
				workers[r.header.Get(testworker.HeaderID)] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if n := len(h.logs.All(recycledStop)); n < wantRecycles {
		t.Fatalf("only %d recycles completed in %d requests with max_requests 25", n, sent)
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed; first: %s", len(failures), sent, failures[0])
	}
	t.Logf("%d distinct workers served %d requests", len(workers), sent)
	h.rot.mu.Lock()
	defer h.rot.mu.Unlock()
	for i, n := range h.rot.sizeAtRemove {
		if n < cfg.Worker.Count+1 {
			t.Errorf("remove #%d happened with %d workers in rotation; a recycle must leave count (%d) behind", i, n, cfg.Worker.Count)
		}
	}
	if h.rot.addedNotWarmed > 0 {
		t.Errorf("%d workers were added to rotation before reaching the ready state", h.rot.addedNotWarmed)
	}
}

// The post-mortem's failure: the warm-up is rejected by a host check. It must be reported
// loudly and the worker must never be admitted; retries back off.
func TestWarmupRejectedWith400IsReportedAndNeverAdmitted(t *testing.T) {
	cfg := baseConfig()
	cfg.Worker.Count = 1
	cfg.Worker.Surge = 1
	cfg.MinReady = 1
	cfg.Worker.Env[testworker.EnvAllowedHost] = "app.example.com"
	cfg.Warmup.Requests[0].Headers = map[string]string{"Host": "localhost"}
	cfg.Proxy.QueueTimeout = config.Duration{Duration: 100 * time.Millisecond}
	h := start(t, cfg)

	fail := h.logs.Wait(testutil.Msg("worker failed its boot or warm-up; it is stopped and never admitted"), 20*time.Second)
	msg := fail.Attrs["error"]
	for _, want := range []string{"GET /", "got status 400", "Invalid HTTP_HOST header"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure log %q does not mention %q", msg, want)
		}
	}
	// What the worker itself logged explains it, in the same record.
	if !strings.Contains(fail.Attrs["output"], "Bad Request: Invalid HTTP_HOST header: 'localhost'") {
		t.Fatalf("worker output: %q", fail.Attrs["output"])
	}
	again := h.logs.WaitN(testutil.MsgPrefix("worker failed its boot again, the same way"), 2, 20*time.Second)
	if a, b := again[0].Attrs["retry_in"], again[1].Attrs["retry_in"]; a == b {
		t.Errorf("backoff did not grow: %s then %s", a, b)
	}
	if n := len(h.rot.added); n != 0 {
		t.Fatalf("%d workers admitted although every warm-up got 400", n)
	}
	st := h.statusJSON()
	if !strings.Contains(st.Problem, "got status 400") || st.Ready != 0 || st.FirstReady {
		t.Fatalf("status does not say why nothing is ready: %+v", st)
	}
	h.waitStatus("the worker's own line in the problem", func(st pool.Status) bool {
		return strings.Contains(st.Problem, "the worker's last output: ") && strings.Contains(st.Problem, "Invalid HTTP_HOST header")
	})
	// Nothing is ready: a client waits in the queue and gets 503 after queue_timeout.
	if r := h.get("/"); r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "no worker became free") {
		t.Fatalf("with no ready worker want 503 with Retry-After and a reason, got %d %q", r.status, r.body)
	}
}

// kill -9 of a worker under load loses only the requests in flight on it.
func TestKill9UnderLoadLosesOnlyInFlightRequests(t *testing.T) {
	cfg := baseConfig()
	h := start(t, cfg)
	h.waitReady()
	victim := workerPID(h, 1)

	var mu sync.Mutex
	var failed []reply
	ok := 0
	var wg sync.WaitGroup
	killed := make(chan struct{})
	for i := range 6 {
		wg.Go(func() {
			for j := range 40 {
				if i == 0 && j == 10 {
					if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
						t.Errorf("kill: %v", err)
					}
					close(killed)
				}
				// POST: not idempotent, so nothing retries a request the dead worker had taken.
				r := h.post("/sleep?ms=10")
				mu.Lock()
				if r.err != nil || r.status != 200 {
					failed = append(failed, r)
				} else {
					ok++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	<-killed
	h.logs.Wait(testutil.Msg("worker exited unexpectedly; a warm replacement follows", "worker", "1"), 10*time.Second)
	h.logs.Wait(testutil.Msg(admitted, "worker", "3"), 10*time.Second)
	for _, r := range failed {
		t.Logf("lost: %d %q %v", r.status, r.body, r.err)
	}
	if len(failed) > cfg.Worker.Concurrency {
		t.Fatalf("%d requests failed; at most the victim's in-flight requests (%d) may", len(failed), cfg.Worker.Concurrency)
	}
	for _, r := range failed {
		// The client is told what happened and a request id; the log line with that id names
		// the worker.
		_, id, _ := strings.Cut(r.body, "(request id ")
		id = strings.TrimSuffix(id, ")\n")
		logged := h.logs.All(testutil.Msg("request failed", "request_id", id))
		if r.status != 502 || !strings.HasPrefix(r.body, "warmpool: the worker") || len(logged) != 1 ||
			!strings.HasPrefix(logged[0].Attrs["reason"], "worker 1: ") {
			t.Errorf("a lost request must get 502, its log line naming the worker; got %d %q %v (log %v)", r.status, r.body, r.err, logged)
		}
	}
	t.Logf("%d ok, %d failed (in flight on the killed worker)", ok, len(failed))
	h.waitStatus("recovery to 2 ready workers", func(st pool.Status) bool { return st.Ready == 2 })
}

// A reload whose new generation fails its warm-up leaves the old generation serving; once the
// code is fixed the roll completes.
func TestReloadKeepsOldGenerationWhenNewOneFailsWarmup(t *testing.T) {
	cfg := baseConfig()
	broken := filepath.Join(t.TempDir(), "broken")
	cfg.Worker.Env[testworker.EnvBrokenFile] = broken
	h := start(t, cfg)
	h.waitReady()

	if err := os.WriteFile(broken, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.pool.Reload()
	fail := h.logs.Wait(testutil.Msg("worker failed its boot or warm-up; it is stopped and never admitted", "generation", "2"), 10*time.Second)
	if !strings.Contains(fail.Attrs["error"], "got status 500") {
		t.Errorf("failure does not name the status: %s", fail.Attrs["error"])
	}
	for range 20 {
		if r := h.get("/"); r.status != 200 || r.header.Get(testworker.HeaderGeneration) != "1" {
			t.Fatalf("old generation must keep serving during a failed reload: %d %s gen=%s", r.status, r.body, r.header.Get(testworker.HeaderGeneration))
		}
	}
	h.waitStatus("2 ready and the reason generation 2 fails", func(st pool.Status) bool {
		return st.Ready == 2 && strings.Contains(st.Problem, "generation 2")
	})

	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	h.logs.WaitN(testutil.Msg(admitted, "generation", "2"), 2, 20*time.Second)
	h.logs.WaitN(testutil.Msg("worker stopped", "reason", "recycled: reload"), 2, 20*time.Second)
	if r := h.get("/"); r.header.Get(testworker.HeaderGeneration) != "2" {
		t.Fatalf("after the roll, requests must reach generation 2, got %q", r.header.Get(testworker.HeaderGeneration))
	}
}

// Warm-up requests never count toward max_requests; client requests do.
func TestWarmupDoesNotCountTowardMaxRequests(t *testing.T) {
	cfg := baseConfig()
	cfg.Worker.Count = 1
	cfg.Worker.MaxRequests = 3
	h := start(t, cfg)
	h.waitReady()
	if st := h.waitStatus("1 ready", func(st pool.Status) bool { return st.Ready == 1 }); st.Workers[0].Served != 0 || st.Workers[0].Recycle != "" {
		t.Fatalf("4 warm-up requests were counted: %+v", st.Workers[0])
	}
	for i := 1; i <= 3; i++ {
		if r := h.get("/"); r.header.Get(testworker.HeaderRequestIndex) != strconv.Itoa(i) || r.header.Get(testworker.HeaderID) != "1" {
			t.Fatalf("request %d: worker %s index %s", i, r.header.Get(testworker.HeaderID), r.header.Get(testworker.HeaderRequestIndex))
		}
	}
	h.logs.Wait(testutil.Msg("worker due for recycling; its replacement is started and warmed first", "worker", "1", "reason", "max_requests"), 5*time.Second)
	h.logs.Wait(testutil.Msg("worker stopped", "worker", "1", "reason", "recycled: max_requests"), 10*time.Second)
}

func TestLifetimeAndRSSRecycle(t *testing.T) {
	t.Run("max_lifetime", func(t *testing.T) {
		cfg := baseConfig()
		cfg.Worker.Count = 1
		cfg.Worker.MaxLifetime = config.Duration{Duration: time.Second}
		cfg.Warmup.Timeout = cfg.Worker.MaxLifetime // may not exceed max_lifetime
		h := start(t, cfg)
		h.logs.Wait(testutil.Msg("worker stopped", "worker", "1", "reason", "recycled: max_lifetime"), 10*time.Second)
	})
	t.Run("max_rss", func(t *testing.T) {
		cfg := baseConfig()
		cfg.Worker.Count = 1
		cfg.Worker.MaxRSS = config.Size{Bytes: 1 << 20} // any Go process is above 1 MiB
		cfg.Worker.RSSCheckInterval = config.Duration{Duration: 20 * time.Millisecond}
		h := start(t, cfg)
		h.logs.Wait(testutil.Msg("worker stopped", "worker", "1", "reason", "recycled: max_rss"), 10*time.Second)
	})
}

// ready = "notify": the warm-up starts only after the worker sent READY=1.
func TestNotifyReadyGatesWarmup(t *testing.T) {
	cfg := baseConfig()
	cfg.Worker.Count = 1
	cfg.Warmup.Ready = config.ReadyNotify
	cfg.Worker.Env[testworker.EnvNotifyDelay] = "150ms"
	h := start(t, cfg)
	h.waitReady()
	r := h.get("/")
	if r.header.Get(testworker.HeaderNotifiedEarly) != "1" {
		t.Fatalf("first warm-up request reached the worker before READY=1 (flag %q)", r.header.Get(testworker.HeaderNotifiedEarly))
	}
}

func TestNotifyNeverSentFailsBoot(t *testing.T) {
	cfg := baseConfig()
	cfg.Worker.Count = 1
	cfg.Warmup.Ready = config.ReadyNotify
	cfg.Warmup.Timeout = config.Duration{Duration: 200 * time.Millisecond}
	h := start(t, cfg)
	r := h.logs.Wait(testutil.Msg("worker failed its boot or warm-up; it is stopped and never admitted"), 10*time.Second)
	if !strings.Contains(r.Attrs["error"], "READY=1") || !strings.Contains(r.Attrs["error"], "warmup.timeout") {
		t.Fatalf("error should say READY=1 never came within warmup.timeout: %s", r.Attrs["error"])
	}
}

// A worker that keeps dying at start is retried with growing delays; the reason is logged.
func TestCrashLoopBacksOff(t *testing.T) {
	cfg := baseConfig()
	cfg.Worker.Count = 1
	cfg.Worker.Env[testworker.EnvExitAtStart] = "7"
	h := start(t, cfg)
	// The first failure in full, with what the worker said; each repeat as one short line
	// (issue 21: a crash loop logged 370 KB of tracebacks at INFO per cycle).
	first := h.logs.Wait(testutil.Msg("worker failed its boot or warm-up; it is stopped and never admitted"), 20*time.Second)
	if !strings.Contains(first.Attrs["error"], "exit status 7") || !strings.Contains(first.Attrs["output"], "test worker exiting at start as told") {
		t.Errorf("first failure: error %q, output %q", first.Attrs["error"], first.Attrs["output"])
	}
	again := h.logs.WaitN(testutil.MsgPrefix("worker failed its boot again, the same way"), 3, 20*time.Second)
	var delays []time.Duration
	for i, f := range again {
		d, err := time.ParseDuration(f.Attrs["retry_in"])
		if err != nil {
			t.Fatal(err)
		}
		delays = append(delays, d)
		if f.Attrs["times"] != strconv.Itoa(i+1) {
			t.Errorf("repeat %d says times=%s", i+1, f.Attrs["times"])
		}
	}
	if !(delays[0] < delays[1] && delays[1] < delays[2]) {
		t.Errorf("backoff should grow: %v", delays)
	}
	if n := len(h.logs.All(testutil.Msg("worker failed its boot or warm-up; it is stopped and never admitted"))); n != 1 {
		t.Errorf("the same failure was logged in full %d times", n)
	}
	// The worker's own output is never above debug level while it boots.
	for _, r := range h.logs.All(testutil.Msg("test worker exiting at start as told")) {
		if r.Level > slog.LevelDebug {
			t.Errorf("a booting worker's output at %s: %+v", r.Level, r)
		}
	}
}

// A worker whose program cannot be run fails the same way at every retry: warmpool stops
// retrying with one clear line, answers 503 with the reason at once, and a reload tries again.
func TestFailureThatCannotHealStopsTheRetries(t *testing.T) {
	cfg := baseConfig()
	cfg.Worker.Count = 1
	cfg.Worker.Command = []string{"/no/such/app-xyz", "{socket}"}
	h := start(t, cfg)
	stop := h.logs.Wait(testutil.MsgPrefix("workers cannot start, and retrying will not change that"), 10*time.Second)
	if !strings.Contains(stop.Attrs["reason"], "no such file or directory") {
		t.Errorf("reason: %q", stop.Attrs["reason"])
	}
	st := h.waitStatus("the retries stopped", func(st pool.Status) bool { return strings.HasPrefix(st.Problem, "retries stopped") })
	if st.NextTry != nil {
		t.Errorf("status shows a next try at %v", st.NextTry)
	}
	if why := h.pool.Unavailable(); !strings.Contains(why, "retries stopped") {
		t.Errorf("Unavailable() = %q", why)
	}
	spawned := len(h.logs.All(testutil.MsgPrefix("worker failed its boot")))
	h.pool.Reload()
	h.logs.WaitN(testutil.MsgPrefix("worker failed its boot"), spawned+1, 10*time.Second)
}

// Scale-up goes through the same warm admission; scale-down drains the oldest workers.
func TestScaleUpIsWarmAndScaleDownDrains(t *testing.T) {
	cfg := baseConfig()
	h := start(t, cfg)
	h.waitReady()
	h.pool.Scale(+1)
	h.logs.Wait(testutil.Msg(admitted, "worker", "3"), 10*time.Second)
	h.waitStatus("3 ready", func(st pool.Status) bool { return st.Desired == 3 && st.Ready == 3 })
	if h.rot.addedNotWarmed != 0 || len(h.rot.added) != 3 {
		t.Fatalf("scale-up bypassed warm admission: added %d, not warmed %d", len(h.rot.added), h.rot.addedNotWarmed)
	}
	h.pool.Scale(-2)
	stopped := h.logs.WaitN(testutil.Msg("worker stopped", "reason", "scale down"), 2, 10*time.Second)
	for _, r := range stopped {
		if r.Attrs["worker"] == "3" {
			t.Errorf("scale-down should retire the oldest workers, retired %v", r.Attrs["worker"])
		}
	}
	h.waitStatus("1 ready", func(st pool.Status) bool { return st.Desired == 1 && st.Ready == 1 })
	if r := h.get("/"); r.status != 200 || r.header.Get(testworker.HeaderID) != "3" {
		t.Fatalf("the remaining worker must serve: %d from %s", r.status, r.header.Get(testworker.HeaderID))
	}
}

// Scaling down stops at min_ready: fewer workers would fail /readyz while the front serves.
func TestScaleDownStopsAtMinReady(t *testing.T) {
	cfg := baseConfig()
	cfg.MinReady = 2
	h := start(t, cfg)
	h.waitReady()
	h.pool.Scale(-1)
	h.logs.Wait(testutil.Msg("not scaling down: the pool is at min_ready, and fewer workers would fail /readyz; lower min_ready first",
		"workers", "2", "min_ready", "2"), 5*time.Second)
	if st := h.pool.Status(); st.Desired != 2 {
		t.Fatalf("desired %d after a refused scale-down", st.Desired)
	}
}

// A warm-up answer that the expect accepts but that is an error is logged at WARN at
// admission, with what the answer says.
func TestAdmissionWarnsOfAcceptedErrorAnswers(t *testing.T) {
	cfg := baseConfig()
	cfg.Worker.Count = 1
	cfg.Worker.Env[testworker.EnvAllowedHost] = "app.example.com"
	cfg.Warmup.Requests = []config.WarmupRequest{{Method: "GET", Path: "/", Repeat: 1, Expect: []int{200, 400}}}
	h := start(t, cfg)
	h.waitReady()
	rec := h.logs.Wait(testutil.Msg("worker admitted although warm-up requests were answered with an error, which its expect accepts: it may meet clients cold",
		"worker", "1"), 5*time.Second)
	if !strings.Contains(rec.Attrs["answers"], "GET /: 400 Bad Request: Invalid HTTP_HOST header") {
		t.Fatalf("answers: %q", rec.Attrs["answers"])
	}
}

// A command that cannot start is reported as such, not as a failed warm-up.
func TestMissingCommandIsASpawnFailure(t *testing.T) {
	cfg := baseConfig()
	cfg.Worker.Count = 1
	cfg.Worker.Command = []string{"/no/such/app-xyz", "{socket}"}
	h := start(t, cfg)
	rec := h.logs.Wait(testutil.Msg("worker failed its boot or warm-up; it is stopped and never admitted", "worker", "1"), 5*time.Second)
	if !strings.Contains(rec.Attrs["error"], "could not start the worker's command") {
		t.Fatalf("error: %q", rec.Attrs["error"])
	}
	h.logs.Wait(testutil.Msg("worker stopped", "worker", "1", "reason", "failed to start"), 5*time.Second)
}

// A worker that reaches max_requests_ceiling before its replacement is ready leaves rotation
// at that request: requests wait in the queue for the replacement instead of reaching a worker
// far past the limit that contains its leak. Nothing is lost.
func TestMaxRequestsCeilingDrainsBeforeTheReplacementIsReady(t *testing.T) {
	cfg := baseConfig()
	cfg.Worker.Count = 1
	cfg.Worker.MaxRequests = 4
	cfg.Worker.MaxRequestsCeiling = 2 // 8 requests
	cfg.Warmup.Requests = []config.WarmupRequest{{Method: "GET", Path: "/sleep?ms=700", Repeat: 1}}
	h := start(t, cfg)
	h.waitReady()
	for i := range 12 {
		if r := h.get("/"); r.err != nil || r.status != 200 {
			t.Fatalf("request %d: %d %v", i+1, r.status, r.err)
		}
	}
	rec := h.logs.Wait(testutil.MsgPrefix("worker reached max_requests_ceiling", "worker", "1"), 10*time.Second)
	if rec.Attrs["requests"] != "8" {
		t.Errorf("drained at %s requests, want 8", rec.Attrs["requests"])
	}
	st := h.waitStatus("worker 1 gone", func(st pool.Status) bool { return len(st.RecentExits) > 0 })
	if e := st.RecentExits[0]; e.ID != 1 || e.Served != 8 {
		t.Errorf("worker 1 exit: %+v, want 8 requests served", e)
	}
	if n := h.counter("warmpool_recycle_ceiling_drains_total", nil); n != 1 {
		t.Errorf("warmpool_recycle_ceiling_drains_total = %v, want 1", n)
	}
}
