package app_test

import (
	"bufio"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"warmpool/internal/pool"
	"warmpool/internal/testutil"
	"warmpool/internal/testworker"
)

// scrape reads /metrics and returns the samples by their full name with labels.
func scrape(t *testing.T, e *env) map[string]float64 {
	t.Helper()
	resp, err := e.cl.Get("http://" + e.srv.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// A known sequence: 3 workers in turn serve 5, 5 and 2 requests (each recycle completed before
// the next request). Warm-up requests never reach the client metrics.
func TestMetricsAfterRequestsAndRecycles(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	cfg.Worker.MaxRequests = 5
	e := startServer(t, cfg)
	e.waitReady()
	for i, n := range []int{5, 5, 2} {
		for range n {
			if r, b := e.get("/"); r.StatusCode != 200 {
				t.Fatalf("%d %s", r.StatusCode, b)
			}
		}
		if i < 2 {
			e.logs.Wait(testutil.Msg("worker stopped", "worker", strconv.Itoa(i+1), "reason", "recycled: max_requests"), 10*time.Second)
		}
	}
	m := scrape(t, e)
	want := map[string]float64{
		`warmpool_requests_total{code="2xx",first_requests="true"}`:        8, // 3 + 3 + 2
		`warmpool_requests_total{code="2xx",first_requests="false"}`:       4, // 2 + 2
		`warmpool_request_duration_seconds_count{first_requests="true"}`:   8,
		`warmpool_upstream_duration_seconds_count{first_requests="false"}`: 4,
		`warmpool_queue_wait_seconds_count`:                                12,
		`warmpool_recycles_total{reason="max_requests"}`:                   2,
		`warmpool_worker_spawns_total`:                                     3,
		`warmpool_warmup_duration_seconds_count`:                           3,
		`warmpool_workers{state="ready"}`:                                  1,
		`warmpool_workers{state="draining"}`:                               0,
		`warmpool_warmup_enabled`:                                          1,
		`warmpool_in_flight_requests`:                                      0,
		`warmpool_warmup_ineffective_total`:                                0,
		`warmpool_recycle_overshoot_requests_count`:                        2, // each waited for its replacement with no traffic
		`warmpool_recycle_overshoot_requests_sum`:                          0,
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if _, ok := m[`warmpool_warmup_failures_total{reason="status"}`]; ok {
		t.Errorf("no warm-up failed, yet a failure series exists")
	}
}

func TestWarmupFailureAndCrashMetrics(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	e := startServer(t, cfg)
	e.waitReady()
	if r, _ := e.get("/crash"); r.StatusCode != 502 {
		t.Fatalf("crash: %d", r.StatusCode)
	}
	e.logs.Wait(testutil.Msg("worker admitted into rotation", "worker", "2"), 10*time.Second)
	m := scrape(t, e)
	if m[`warmpool_worker_crashes_total{reason="exited"}`] != 1 || m[`warmpool_requests_total{code="5xx",first_requests="true"}`] != 1 {
		t.Fatalf("crash metrics: %v", m)
	}
}

// A worker that sends bytes past its response is counted by reason and named in the log.
func TestWorkerProtocolErrorsAreCounted(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	e := startServer(t, cfg)
	e.waitReady()
	if r, b := e.get("/extra?status=200&cl=2&body=okLEFTOVER"); r.StatusCode != 200 || b != "ok" {
		t.Fatalf("%d %q", r.StatusCode, b)
	}
	e.logs.Wait(testutil.Msg("worker sent bytes past the end of its response; they were dropped and its connection closed",
		"worker", "1", "after", "GET /extra"), 5*time.Second)
	if r, b := e.get("/raw?b=" + url.QueryEscape("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")); r.StatusCode != 502 {
		t.Fatalf("malformed response: %d %q", r.StatusCode, b)
	}
	m := scrape(t, e)
	for reason, want := range map[string]float64{"bytes_after_response": 1, "malformed_response": 1} {
		if got := m[`warmpool_worker_protocol_errors_total{reason="`+reason+`"}`]; got != want {
			t.Errorf("warmpool_worker_protocol_errors_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

// The post-mortem's silent failure: the warm-up passes but never reaches /report, whose first
// request in each new worker does a slow lazy init. The check names the worker and the path.
func TestWarmupThatMissesAPathIsReported(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	cfg.Worker.MaxRequests = 15
	cfg.Worker.Env[testworker.EnvPathCold] = "/report=150ms"
	e := startServer(t, cfg)
	e.waitReady()
	report := func(n int) {
		for range n {
			if r, b := e.get("/report"); r.StatusCode != 200 {
				t.Fatalf("%d %s", r.StatusCode, b)
			}
		}
	}
	report(20) // worker 1: one cold /report, then steady ones; the 15th makes it due
	e.logs.Wait(testutil.Msg("worker admitted into rotation", "worker", "2"), 10*time.Second)
	if n := len(e.logs.All(testutil.Contains("warm-up did not cover this path"))); n != 0 {
		t.Fatalf("warned before any new worker served /report")
	}
	report(3) // worker 2's first /report meets the lazy init the warm-up never reached
	rec := e.logs.Wait(testutil.Contains("warm-up did not cover this path"), 5*time.Second)
	first, _ := time.ParseDuration(rec.Attrs["first_request"])
	median, _ := time.ParseDuration(rec.Attrs["steady_median"])
	if rec.Attrs["worker"] != "2" || rec.Attrs["path"] != "/report" || first < 150*time.Millisecond || median > 50*time.Millisecond {
		t.Fatalf("warning: %v", rec)
	}
	if m := scrape(t, e); m["warmpool_warmup_ineffective_total"] != 1 {
		t.Fatalf("warmpool_warmup_ineffective_total = %v", m["warmpool_warmup_ineffective_total"])
	}
}

func TestAccessLogLines(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	path := filepath.Join(t.TempDir(), "access.log")
	cfg.Telemetry.AccessLog = path
	e := startServer(t, cfg)
	e.waitReady()
	req, _ := http.NewRequest("GET", e.base+"/echo?q=1", nil)
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	req.Header.Set("User-Agent", "access-test/1")
	e.do(req)
	post, _ := http.NewRequest("POST", e.base+"/upload", strings.NewReader(strings.Repeat("b", 100000))) // net/http's path
	e.do(post)
	e.cl.CloseIdleConnections()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 access lines, got %d:\n%s", len(lines), data)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"method": "GET", "path": "/echo", "status": 200.0, "worker": 1.0, "generation": 1.0,
		"request_index": 1.0, "first_requests": true, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
		"client": "127.0.0.1", "host": strings.TrimPrefix(e.base, "http://"), "query": "q=1", "user_agent": "access-test/1", "request_bytes": 0.0,
	} {
		if rec[k] != want {
			t.Errorf("%s = %v, want %v (line %s)", k, rec[k], want, lines[0])
		}
	}
	var upload map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &upload); err != nil {
		t.Fatal(err)
	}
	if upload["request_bytes"] != 100000.0 || upload["client"] != "127.0.0.1" || upload["method"] != "POST" {
		t.Errorf("the upload's line (net/http's path): %s", lines[1])
	}
	if age := rec["worker_age_s"].(float64); math.Abs(age*1000-math.Round(age*1000)) > 1e-6 {
		t.Errorf("worker_age_s %v is not rounded to the millisecond", age)
	}
	for _, k := range []string{"time", "bytes", "duration_ms", "queue_wait_ms", "upstream_ms", "pid", "worker_age_s"} {
		if _, ok := rec[k]; !ok {
			t.Errorf("access line lacks %s: %s", k, lines[0])
		}
	}
	_ = io.Discard
}

// A connection that leaves the lean front for net/http is counted with its reason.
func TestHandoffsAreCounted(t *testing.T) {
	e := startServer(t, testConfig())
	e.waitReady()
	nc, err := net.Dial("tcp", e.srv.FrontAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, "GET / HTTP/1.0\r\nHost: app.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTP/1.0 request: %v %v", resp, err)
	}
	if got := scrape(t, e)[`warmpool_front_handoffs_total{reason="HTTP/1.0"}`]; got != 1 {
		t.Fatalf("handoffs = %v, want 1", got)
	}
}

// /status counts requests live, not as copied at the last lifecycle event.
func TestStatusCountsRequestsLive(t *testing.T) {
	cfg := testConfig()
	e := startServer(t, cfg)
	e.waitReady()
	for range 7 {
		if r, b := e.get("/"); r.StatusCode != 200 {
			t.Fatalf("%d %s", r.StatusCode, b)
		}
	}
	resp, err := e.cl.Get("http://" + e.srv.AdminAddr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Workers []struct {
			Served   int64 `json:"requests_served"`
			InFlight int64 `json:"in_flight"`
		} `json:"workers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	var served, inFlight int64
	for _, w := range st.Workers {
		served, inFlight = served+w.Served, inFlight+w.InFlight
	}
	if served != 7 || inFlight != 0 {
		t.Fatalf("status: %d served, %d in flight; want 7 and 0", served, inFlight)
	}
}

// A worker due at max_requests serves on until its replacement is warm: /status's recent exits
// and warmpool_recycle_overshoot_requests say how far past its limit.
func TestRecycleOvershootIsShown(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	cfg.Worker.MaxRequests = 2
	cfg.Worker.MaxRequestsCeiling = 0            // no ceiling: it serves on until its replacement is ready
	cfg.Worker.Env[testworker.EnvCold] = "500ms" // the replacement warms slowly
	e := startServer(t, cfg)
	e.waitReady()
	for range 5 { // the last three come while the replacement warms: the old worker takes them
		if r, b := e.get("/"); r.StatusCode != 200 || r.Header.Get(testworker.HeaderID) != "1" {
			t.Fatalf("%d %s from worker %s", r.StatusCode, b, r.Header.Get(testworker.HeaderID))
		}
	}
	e.logs.Wait(testutil.Msg("worker stopped", "worker", "1", "reason", "recycled: max_requests"), 10*time.Second)
	var exit pool.ExitRecord
	for deadline := time.Now().Add(5 * time.Second); exit.ID == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, x := range e.srv.Pool().Status().RecentExits { // published just after the log line
			if x.ID == 1 {
				exit = x
			}
		}
	}
	if exit.Served != 5 || exit.MaxRequests != 2 {
		t.Fatalf("exit record: %+v", exit)
	}
	m := scrape(t, e)
	if m[`warmpool_recycle_overshoot_requests_count`] != 1 || m[`warmpool_recycle_overshoot_requests_sum`] != 3 {
		t.Fatalf("overshoot histogram: count %v sum %v", m[`warmpool_recycle_overshoot_requests_count`], m[`warmpool_recycle_overshoot_requests_sum`])
	}
}
