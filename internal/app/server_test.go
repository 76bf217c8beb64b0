package app_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"warmpool/internal/app"
	"warmpool/internal/config"
	"warmpool/internal/testutil"
	"warmpool/internal/testworker"
)

type env struct {
	t    *testing.T
	srv  *app.Server
	logs *testutil.Logs
	cl   *http.Client
	base string
	// closed: the server was stopped.
	closed bool
}

func testConfig() *config.Config {
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Worker.Command = []string{os.Args[0], "{socket}"}
	cfg.Worker.Env = map[string]string{testworker.EnvActive: "1", testworker.EnvCold: "20ms", "EXTRA": "from-config"}
	cfg.Worker.Count = 2
	cfg.Worker.Concurrency = 4
	cfg.Worker.GracefulTimeout = config.Duration{Duration: 5 * time.Second}
	cfg.Worker.RestartBackoff = config.Duration{Duration: 20 * time.Millisecond}
	cfg.Warmup.Timeout = config.Duration{Duration: 10 * time.Second}
	cfg.Warmup.Requests = []config.WarmupRequest{{Method: "GET", Path: "/", Repeat: 2}}
	cfg.Warmup.LearnState = "off" // each test learns afresh
	return &cfg
}

func startServer(t *testing.T, cfg *config.Config, opts ...app.Option) *env {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("invalid test config: %v", err)
	}
	logs := testutil.NewLogs(t)
	s := app.New(cfg.Loaded(), logs.Logger(), opts...)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: s, logs: logs, base: "http://" + s.FrontAddr(),
		cl: &http.Client{Transport: &http.Transport{}, Timeout: 20 * time.Second}}
	t.Cleanup(e.close)
	return e
}

// close stops the server (once: a test may stop it before its cleanup does).
func (e *env) close() {
	if e.closed {
		return
	}
	e.closed = true
	e.cl.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.srv.Close(ctx); err != nil {
		e.t.Errorf("close: %v", err)
	}
}

func (e *env) waitReady() {
	e.t.Helper()
	select {
	case <-e.srv.Pool().FirstReady():
	case <-time.After(20 * time.Second):
		e.t.Fatalf("not ready: %+v", e.srv.Pool().Status())
	}
}

func (e *env) do(req *http.Request) (*http.Response, string) {
	e.t.Helper()
	resp, err := e.cl.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, string(b)
}

func (e *env) get(path string) (*http.Response, string) {
	req, _ := http.NewRequest("GET", e.base+path, nil)
	return e.do(req)
}

func TestForwardedHeadersTraceparentAndHopByHop(t *testing.T) {
	e := startServer(t, testConfig())
	e.waitReady()
	req, _ := http.NewRequest("GET", e.base+"/echo", nil)
	req.Host = "app.example.com"
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Forwarded-Proto", "https") // a client claiming TLS: proxy.trusted_proxies is empty
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	req.Header.Set("Connection", "X-Hop-Secret")
	req.Header.Set("X-Hop-Secret", "must not pass")
	req.Header.Set("X-Warmpool-Warmup", "1") // a client posing as warm-up traffic
	resp, body := e.do(req)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var echo struct {
		Host   string              `json:"host"`
		Header map[string][]string `json:"header"`
		Env    map[string]string   `json:"env"`
	}
	if err := json.Unmarshal([]byte(body), &echo); err != nil {
		t.Fatal(err)
	}
	h := http.Header(echo.Header)
	checks := map[string]string{
		"Host":              echo.Host,
		"X-Forwarded-For":   h.Get("X-Forwarded-For"),
		"X-Forwarded-Proto": h.Get("X-Forwarded-Proto"),
		"X-Forwarded-Host":  h.Get("X-Forwarded-Host"),
		"Traceparent":       h.Get("Traceparent"),
	}
	want := map[string]string{
		"Host":              "app.example.com",
		"X-Forwarded-For":   "203.0.113.7, 127.0.0.1",
		"X-Forwarded-Proto": "", // cleartext; the client's claim is removed
		"X-Forwarded-Host":  "", // Host passes as it is
		"Traceparent":       "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	for k, v := range want {
		if checks[k] != v {
			t.Errorf("%s = %q, want %q", k, checks[k], v)
		}
	}
	for _, hop := range []string{"X-Hop-Secret", "X-Warmpool-Warmup"} {
		if h.Get(hop) != "" {
			t.Errorf("%s reached the worker", hop)
		}
	}
	if echo.Env["WARMPOOL_WORKER_ID"] == "" || !strings.HasSuffix(echo.Env["WARMPOOL_SOCKET"], ".sock") || echo.Env["EXTRA"] != "from-config" {
		t.Errorf("worker environment: %v", echo.Env)
	}
}

// warmpool's own NOTIFY_SOCKET (systemd's) and its admin token must never reach a worker;
// worker output reaches the log tagged with the worker id.
func TestWorkerEnvironmentAndOutput(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify-of-warmpool")
	t.Setenv(config.EnvAdminToken, "admin-secret-of-warmpool")
	e := startServer(t, testConfig())
	e.waitReady()
	_, body := e.get("/echo")
	if strings.Contains(body, "notify-of-warmpool") {
		t.Fatalf("warmpool's NOTIFY_SOCKET leaked to the worker: %s", body)
	}
	if strings.Contains(body, "admin-secret-of-warmpool") || !strings.Contains(body, `"WARMPOOL_ADMIN_TOKEN":""`) {
		t.Fatalf("warmpool's admin token leaked to the worker: %s", body)
	}
	e.logs.Wait(testutil.Contains("test worker 1 listening"), 5*time.Second)
	rec := e.logs.All(testutil.Contains("test worker 1 listening"))[0]
	if rec.Attrs["worker"] != "1" || rec.Attrs["stream"] != "stdout" {
		t.Fatalf("worker output not tagged with its worker: %v", rec)
	}
}

func TestPortPlaceholder(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Command = []string{os.Args[0], "--port={port}"}
	e := startServer(t, cfg)
	e.waitReady()
	resp, body := e.get("/echo")
	if resp.StatusCode != 200 || !strings.Contains(body, `"PORT":"`) || strings.Contains(body, `"PORT":""`) {
		t.Fatalf("worker in port mode: %d %s", resp.StatusCode, body)
	}
}

// An app that reads $PORT runs with worker.listen = "port" and no placeholder in its command.
func TestListenPortWithoutPlaceholder(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Command = []string{os.Args[0]}
	cfg.Worker.Listen = config.ListenPort
	e := startServer(t, cfg)
	e.waitReady()
	resp, body := e.get("/echo")
	if resp.StatusCode != 200 || !strings.Contains(body, `"PORT":"`) || strings.Contains(body, `"PORT":""`) {
		t.Fatalf("worker reading $PORT: %d %s", resp.StatusCode, body)
	}
}

func TestStreamingResponseAndLargeUpload(t *testing.T) {
	e := startServer(t, testConfig())
	e.waitReady()

	// The worker sends "first", then waits for the client to hang up: only a streaming proxy
	// lets the client read the first line.
	resp, err := e.cl.Get(e.base + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close()
	if err != nil || line != "first\n" {
		t.Fatalf("streamed first chunk: %q %v", line, err)
	}

	const size = 32 << 20
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", e.base+"/upload", pr) // unknown length: chunked
	resp2, body := e.do(req)
	if resp2.StatusCode != 200 || strings.TrimSpace(body) != strconv.Itoa(size) {
		t.Fatalf("upload: %d %q", resp2.StatusCode, body)
	}

	resp3, body3 := e.get("/trailer")
	if body3 != "body\n" || resp3.Trailer.Get("X-Checksum") != "abc123" {
		t.Fatalf("trailers: body %q trailer %v", body3, resp3.Trailer)
	}
}

func TestCrashMidRequestGets502OthersUnaffected(t *testing.T) {
	e := startServer(t, testConfig())
	e.waitReady()
	resp, body := e.get("/crash")
	if resp.StatusCode != 502 || !strings.Contains(body, "warmpool: the worker") {
		t.Fatalf("crashing request: %d %q", resp.StatusCode, body)
	}
	e.logs.Wait(testutil.Msg("worker exited unexpectedly; a warm replacement follows"), 5*time.Second)
	for range 10 {
		if r, b := e.get("/"); r.StatusCode != 200 {
			t.Fatalf("request after the crash: %d %s", r.StatusCode, b)
		}
	}
	e.logs.Wait(testutil.Msg("worker admitted into rotation", "worker", "3"), 10*time.Second)
}

func TestTimeout504ThenHarakiriKillsAndReplaces(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	cfg.Proxy.RequestTimeout = config.Duration{Duration: 200 * time.Millisecond}
	cfg.Proxy.Harakiri = config.Duration{Duration: 600 * time.Millisecond}
	e := startServer(t, cfg)
	e.waitReady()
	resp, body := e.get("/hang")
	if resp.StatusCode != 504 || !strings.Contains(body, "the app sent no response within 200ms") {
		t.Fatalf("hanging request: %d %q", resp.StatusCode, body)
	}
	e.logs.Wait(testutil.Msg("worker passed the harakiri limit; it will be killed and replaced", "worker", "1"), 5*time.Second)
	e.logs.Wait(testutil.Msg("worker stopped", "worker", "1", "reason", "killed: passed the harakiri limit"), 5*time.Second)
	e.logs.Wait(testutil.Msg("worker admitted into rotation", "worker", "2"), 10*time.Second)
	if r, b := e.get("/"); r.StatusCode != 200 {
		t.Fatalf("after harakiri: %d %s", r.StatusCode, b)
	}
}

// A worker stopped with SIGSTOP answers nothing: its request gets 504 at the request timeout,
// and the worker leaves rotation at once, is replaced warm and killed after graceful_timeout.
func TestHungWorkerLeavesRotationAndIsReplaced(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	cfg.Worker.GracefulTimeout = config.Duration{Duration: 300 * time.Millisecond}
	cfg.Proxy.RequestTimeout = config.Duration{Duration: 300 * time.Millisecond}
	e := startServer(t, cfg)
	e.waitReady()
	pid := e.srv.Pool().Status().Workers[0].PID
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The signal is delivered asynchronously: wait until the process is stopped ("T").
	deadline := time.Now().Add(5 * time.Second)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); len(f) > 0 && f[0] == "T" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker did not stop")
		}
		time.Sleep(time.Millisecond)
	}
	resp, body := e.get("/")
	if resp.StatusCode != 504 || !strings.Contains(body, "the app sent no response within 300ms") {
		t.Fatalf("request to the stopped worker: %d %q", resp.StatusCode, body)
	}
	e.logs.Wait(testutil.Msg("worker let a request pass the request timeout; it leaves rotation, a warm replacement follows, and it is stopped after graceful_timeout",
		"worker", "1"), 5*time.Second)
	e.logs.Wait(testutil.Msg("worker admitted into rotation", "worker", "2"), 10*time.Second)
	e.logs.Wait(testutil.Msg("worker stopped", "worker", "1", "reason", "hung: a request passed proxy.request_timeout"), 10*time.Second)
	if r, b := e.get("/"); r.StatusCode != 200 || r.Header.Get(testworker.HeaderID) != "2" {
		t.Fatalf("after the hung worker: %d %s %v", r.StatusCode, b, r.Header)
	}
	if got := scrape(t, e)[`warmpool_worker_crashes_total{reason="hung"}`]; got != 1 {
		t.Fatalf("warmpool_worker_crashes_total{reason=\"hung\"} = %v", got)
	}
}

func TestQueueFullAndQueueTimeoutGive503(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	cfg.Worker.Concurrency = 1
	cfg.Proxy.QueueSize = 1
	cfg.Proxy.QueueTimeout = config.Duration{Duration: 2 * time.Second}
	e := startServer(t, cfg)
	e.waitReady()

	// One request occupies the only slot, a second waits in the queue of one.
	done := make(chan int, 2)
	go func() { r, _ := e.get("/sleep?ms=1500"); done <- r.StatusCode }()
	e.logs.Wait(testutil.Contains("test worker request /sleep"), 5*time.Second)
	go func() { r, _ := e.get("/"); done <- r.StatusCode }()
	waitQueued(t, e, 1)
	resp, body := e.get("/")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "queue is full") {
		t.Fatalf("third request: %d %q", resp.StatusCode, body)
	}
	for range 2 {
		if s := <-done; s != 200 {
			t.Fatalf("queued request: %d", s)
		}
	}
}

// waitQueued waits until n requests wait for a worker, watching the status the admin serves.
func waitQueued(t *testing.T, e *env, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.srv.Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("no request queued")
		}
		time.Sleep(time.Millisecond) // no event exists for "a request entered the queue"
	}
}

func TestReadyzLivezAndShutdown(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Env[testworker.EnvListenDelay] = "1s"
	e := startServer(t, cfg)
	admin := "http://" + e.srv.AdminAddr()
	status := func(path string) (int, string) {
		resp, err := e.cl.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if c, b := status("/readyz"); c != 503 || !strings.Contains(b, "0 of 2") {
		t.Fatalf("readyz before warm-up: %d %q", c, b)
	}
	if c, _ := status("/livez"); c != 200 {
		t.Fatalf("livez: %d", c)
	}
	e.waitReady()
	if c, b := status("/readyz"); c != 200 {
		t.Fatalf("readyz when ready: %d %q", c, b)
	}
	c, b := status("/status")
	if c != 200 || !strings.Contains(b, `"state": "ready"`) {
		t.Fatalf("status: %d %s", c, b)
	}

	// Shutdown: an in-flight request finishes; readyz says 503 meanwhile.
	inflight := make(chan int, 1)
	go func() { r, _ := e.get("/sleep?ms=800"); inflight <- r.StatusCode }()
	e.logs.Wait(testutil.Contains("test worker request /sleep"), 5*time.Second)
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed <- e.srv.Close(ctx)
	}()
	e.logs.Wait(testutil.Msg("server draining"), 5*time.Second)
	if c, b := status("/readyz"); c != 503 || !strings.Contains(b, "shutting down") {
		t.Fatalf("readyz while draining: %d %q", c, b)
	}
	if s := <-inflight; s != 200 {
		t.Fatalf("in-flight request during shutdown: %d", s)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	e.logs.WaitN(testutil.Msg("worker stopped", "reason", "shutdown"), 2, 5*time.Second)
}

func TestHTTP2OverTLS(t *testing.T) {
	cfg := testConfig()
	cfg.TLSCert, cfg.TLSKey = testutil.SelfSignedCert(t)
	e := startServer(t, cfg)
	e.waitReady()
	cl := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Get("https://" + e.srv.FrontAddr() + "/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || !strings.Contains(string(b), `"X-Forwarded-Proto":["https"]`) {
		t.Fatalf("h2: proto %s status %d body %s", resp.Proto, resp.StatusCode, b)
	}
}

// Uploads larger than HTTP/2's flow-control window, more of them on one connection than the
// worker has slots: each body is read whole before a worker is leased, so the streams waiting
// for a slot cannot starve those that hold one (they used to: four 200s after 10 s, then 503s).
func TestHTTP2UploadsLargerThanTheWindow(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	cfg.TLSCert, cfg.TLSKey = testutil.SelfSignedCert(t)
	e := startServer(t, cfg)
	e.waitReady()
	cl := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
		MaxConnsPerHost:   1, // every upload on one connection
	}}
	defer cl.CloseIdleConnections()
	body := strings.Repeat("u", 3<<20)
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			resp, err := cl.Post("https://"+e.srv.FrontAddr()+"/upload", "application/octet-stream", strings.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(b) != fmt.Sprintln(len(body)) {
				errs <- fmt.Errorf("%s %d %q", resp.Proto, resp.StatusCode, b)
				return
			}
			errs <- nil
		}()
	}
	for range 10 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// Over TLS too, uploads that stall hold no worker: eight connections send headers and 1 byte
// of a 100-byte body to one worker with four slots, and a plain request is served at once.
func TestStalledTLSUploadsHoldNoWorker(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	cfg.TLSCert, cfg.TLSKey = testutil.SelfSignedCert(t)
	e := startServer(t, cfg)
	e.waitReady()
	for range 8 {
		c, err := tls.Dial("tcp", e.srv.FrontAddr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\nx")
	}
	cl := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer cl.CloseIdleConnections()
	start := time.Now()
	resp, err := cl.Get("https://" + e.srv.FrontAddr() + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("plain request: %v %v", resp, err)
	}
	resp.Body.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("plain request waited %s behind stalled uploads", took)
	}
}

func TestAllowedHostsRejectsOtherHostsButNotTheWarmup(t *testing.T) {
	cfg := testConfig()
	cfg.Proxy.AllowedHosts = []string{"app.example.com"}
	cfg.Warmup.Requests[0].Headers = map[string]string{"Host": "app.example.com"}
	e := startServer(t, cfg)
	e.waitReady() // the warm-up used an allowed Host, so workers were admitted
	req, _ := http.NewRequest("GET", e.base+"/", nil)
	req.Host = "evil.example.net"
	resp, body := e.do(req)
	if resp.StatusCode != 400 || !strings.Contains(body, `host "evil.example.net" is not in proxy.allowed_hosts`) {
		t.Fatalf("foreign host: %d %q", resp.StatusCode, body)
	}
	req, _ = http.NewRequest("GET", e.base+"/", nil)
	req.Host = "app.example.com"
	if resp, body := e.do(req); resp.StatusCode != 200 {
		t.Fatalf("allowed host: %d %q", resp.StatusCode, body)
	}
}

// A worker that closes idle keep-alive connections (gunicorn does after 2 s) costs no request:
// the stale connection is noticed before anything is written to it.
func TestWorkerClosingIdleConnectionsLosesNothing(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	cfg.Worker.Env[testworker.EnvIdleTimeout] = "100ms"
	cfg.Warmup.Requests[0].Repeat = 1 // exactly one warm-up connection, closed first
	e := startServer(t, cfg)
	e.waitReady()
	for round := 1; round <= 3; round++ {
		for range 5 {
			for _, path := range []string{"/", "/empty"} {
				if r, b := e.get(path); r.StatusCode/100 != 2 {
					t.Fatalf("round %d %s: %d %s", round, path, r.StatusCode, b)
				}
			}
		}
		req, _ := http.NewRequest("HEAD", e.base+"/", nil)
		if r, _ := e.do(req); r.StatusCode != 200 {
			t.Fatalf("HEAD: %d", r.StatusCode)
		}
		if r, _ := e.get("/"); r.StatusCode != 200 { // leaves a connection idle in warmpool's pool
			t.Fatalf("round %d: %d", round, r.StatusCode)
		}
		// Wait until the worker closed every connection it had, the idle one warmpool kept too.
		// (warmpool itself closes the connection of a HEAD or 204 response: see proxy/reuse.go.)
		opened := len(e.logs.All(testutil.Contains("test worker connection opened")))
		e.logs.WaitN(testutil.Contains("test worker connection closed"), opened, 5*time.Second)
	}
	// A round began on a connection the worker had closed: it was caught before use, or the
	// request was retried on a fresh connection; either way nothing was lost.
	metClosed := func(r testutil.Record) bool {
		return r.Message == "worker closed an idle connection; using another" ||
			r.Message == "kept-alive connection broke before the worker answered; retrying on a fresh one"
	}
	e.logs.WaitN(metClosed, 1, time.Second)
}

// A worker that dies mid-body: the client's response is cut off (not completed as if whole),
// and the worker's slot comes back.
func TestClientSeesTruncatedBodyWhenWorkerDiesMidStream(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	e := startServer(t, cfg)
	e.waitReady()
	resp, err := e.cl.Get(e.base + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	if line != "first\n" {
		t.Fatalf("first chunk: %q", line)
	}
	syscall.Kill(atoi(resp.Header.Get(testworker.HeaderPID)), syscall.SIGKILL)
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("a response cut off by the worker's death read as complete")
	}
	resp.Body.Close()
	e.logs.Wait(testutil.Msg("worker admitted into rotation", "worker", "2"), 10*time.Second)
	if r, b := e.get("/"); r.StatusCode != 200 {
		t.Fatalf("after the crash: %d %s", r.StatusCode, b)
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// A worker that closes every connection after its response without "Connection: close" (as
// uWSGI's http-socket does) loses no request, whether the close is seen before reuse or not.
func TestWorkerClosingSilentlyAfterEachResponse(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	e := startServer(t, cfg)
	e.waitReady()
	for i := range 50 {
		if r, b := e.get("/close-silently"); r.StatusCode != 200 || b != "ok\n" {
			t.Fatalf("request %d: %d %q", i, r.StatusCode, b)
		}
		req, _ := http.NewRequest("HEAD", e.base+"/close-silently", nil)
		if r, _ := e.do(req); r.StatusCode != 200 {
			t.Fatalf("HEAD %d: %d", i, r.StatusCode)
		}
	}
}

// proxy.trusted_proxies reaches the front: a trusted load balancer's X-Forwarded-Proto passes.
func TestTrustedProxyForwardingHeadersPass(t *testing.T) {
	cfg := testConfig()
	cfg.Proxy.TrustedProxies = []string{"127.0.0.1"}
	e := startServer(t, cfg)
	e.waitReady()
	req, _ := http.NewRequest("GET", e.base+"/echo", nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X_Custom", "dropped by default")
	resp, body := e.do(req)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var echo struct{ Header http.Header }
	if err := json.Unmarshal([]byte(body), &echo); err != nil {
		t.Fatal(err)
	}
	if got := echo.Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto from a trusted peer: %q", got)
	}
	if got := echo.Header.Get("X_custom"); got != "" {
		t.Errorf("an underscore header passed: %q", got)
	}
}

// While no worker is ready because warm-ups keep failing, a request is answered 503 at once
// instead of waiting out the queue. The client is told no more than that, with a request id;
// why (the worker's own output, its socket) goes to the log line with that id, and /status.
func TestNoWorkerReadyAnswers503AtOnce(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	broken := filepath.Join(t.TempDir(), "broken")
	if err := os.WriteFile(broken, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Worker.Env[testworker.EnvBrokenFile] = broken
	cfg.Worker.RestartBackoff = config.Duration{Duration: 5 * time.Second}
	cfg.Worker.RestartBackoffMax = config.Duration{Duration: 10 * time.Second}
	e := startServer(t, cfg)
	e.logs.Wait(testutil.Msg("worker failed its boot or warm-up; it is stopped and never admitted"), 10*time.Second)
	var resp *http.Response
	var body string
	for deadline := time.Now().Add(5 * time.Second); ; { // the status follows the log line
		start := time.Now()
		resp, body = e.get("/")
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("answered after %s", took)
		}
		if strings.Contains(body, "no worker is ready") || time.Now().After(deadline) {
			break
		}
	}
	id, ok := strings.CutPrefix(body, "warmpool: no worker is ready; retry later (request id ")
	id, ok2 := strings.CutSuffix(id, ")\n")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !ok || !ok2 || len(id) != 16 {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	logged := e.logs.All(testutil.Msg("request failed", "request_id", id))
	if len(logged) != 1 {
		t.Fatalf("no log line for request id %s", id)
	}
	if reason := logged[0].Attrs["reason"]; !strings.Contains(reason, "worker 1 (generation 1) failed to boot") ||
		!strings.Contains(reason, "broken build") || !strings.Contains(reason, "the next try is in") {
		t.Fatalf("the log line's reason: %q", reason)
	}
	if st := e.srv.Pool().Status(); st.NextTry == nil || !st.NextTry.After(time.Now()) || st.Problem == "" {
		t.Fatalf("status while backing off: next try %v, problem %q", st.NextTry, st.Problem)
	}
}

// A worker that served and then died is replaced at once, and requests that come while the
// pool is briefly empty wait in the queue for the replacement instead of getting 503 "no
// worker is ready" (which is for replacements that keep failing their boot).
func TestRequestsWaitForTheReplacementOfACrashedWorker(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Count = 1
	cfg.Worker.RestartBackoff = config.Duration{Duration: 2 * time.Second} // would show as a wait, or a 503
	cfg.Warmup.Requests = []config.WarmupRequest{{Method: "GET", Path: "/sleep?ms=400", Repeat: 1}}
	e := startServer(t, cfg)
	e.waitReady()
	if r, _ := e.get("/"); r.StatusCode != 200 {
		t.Fatalf("before the crash: %d", r.StatusCode)
	}
	pid := e.srv.Pool().Status().Workers[0].PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.logs.Wait(testutil.Msg("worker exited unexpectedly; a warm replacement follows", "worker", "1"), 5*time.Second)
	start := time.Now()
	r, body := e.get("/") // the replacement is warming (its warm-up takes 400 ms)
	if r.StatusCode != 200 || r.Header.Get(testworker.HeaderID) != "2" {
		t.Fatalf("a request while the pool was empty: %d %q (worker %s)", r.StatusCode, body, r.Header.Get(testworker.HeaderID))
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Fatalf("the replacement came after %s: the crash of a worker that served was backed off", took)
	}
}
