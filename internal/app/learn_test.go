package app_test

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"warmpool/internal/config"
	"warmpool/internal/learn"
	"warmpool/internal/pool"
	"warmpool/internal/testutil"
	"warmpool/internal/testworker"
)

// learnConfig serves pyfork/testdata/learnapp.py from a warm template whose plan covers / only,
// recycling fast, keeping what it learns in state.
func learnConfig(t *testing.T, state string) *config.Config {
	t.Helper()
	python := "/usr/bin/python3"
	if exec.Command(python, "-c", "import waitress").Run() != nil {
		t.Skip("no /usr/bin/python3 with waitress here (Debian: apt-get install python3-waitress); the learning tests need it")
	}
	apps, err := filepath.Abs("../pyfork/testdata")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Worker.Command = nil
	cfg.Worker.Python = config.Python{App: "learnapp:application", Interface: config.InterfaceWSGI, Executable: python, Lifespan: config.LifespanTemplate,
		PostFork: "learnapp:post_fork"}
	cfg.Worker.Dir = apps
	cfg.Worker.Env = map[string]string{"COLD_SECONDS": "0.3"}
	cfg.Worker.Concurrency = 2
	cfg.Worker.MaxRequests = 8
	cfg.Warmup.Timeout = config.Duration{Duration: 20 * time.Second}
	cfg.Warmup.Requests = []config.WarmupRequest{{Method: "GET", Path: "/", Repeat: 1}}
	cfg.Warmup.LearnState = state
	return cfg
}

type learnReply struct {
	PID                int  `json:"pid"`
	ImportedBeforeFork bool `json:"imported_before_fork"`
	BuiltIn            int  `json:"built_in"`
}

func (e *env) learnGet(path string, cookie bool) learnReply {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.base+path, nil)
	if cookie {
		req.Header.Set("Cookie", "sessionid=abc")
	}
	resp, body := e.do(req)
	if resp.StatusCode != 200 {
		e.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	var r learnReply
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		e.t.Fatalf("GET %s: %v in %q", path, err, body)
	}
	return r
}

func templatePID(st pool.Status, gen int) int {
	for _, tpl := range st.Templates {
		if tpl.Generation == gen {
			return tpl.PID
		}
	}
	return 0
}

func requestState(st *learn.Status, path string) string {
	for _, r := range st.Requests {
		if r.Path == path {
			return r.State
		}
	}
	return ""
}

func moduleState(st *learn.Status, name string) (string, string) {
	for _, m := range st.Modules {
		if m.Name == name {
			return m.State, m.Why
		}
	}
	return "", ""
}

// A plan that covers one route: traffic teaches the rest. The paths new workers met cold
// become warm-up requests, the modules forked workers imported become the template's, and the
// template is rebuilt with them while the old one serves; a module whose import starts a
// thread, or fails in the template, is dropped with a WARN and the template that works serves;
// a request that carried a cookie is never learned; no request fails. A restart reuses the
// state file: its first template is warm from the start.
func TestTemplateLearnsWhatTrafficWarms(t *testing.T) {
	if testing.Short() {
		t.Skip("learning needs a minute of traffic")
	}
	state := filepath.Join(t.TempDir(), "learned.json")
	cfg := learnConfig(t, state)
	e := startServer(t, cfg)
	e.waitReady()
	routes := []string{"/", "/report", "/render", "/thready", "/fails"}
	deadline := time.Now().Add(120 * time.Second)
	var st pool.Status
	for i := 0; ; i++ {
		path := routes[i%len(routes)]
		e.learnGet(path, false)
		if i%7 == 0 {
			e.learnGet("/account", true)
		}
		if i%50 != 0 {
			continue
		}
		st = e.srv.Pool().Status()
		if l := st.Learned; st.Generation >= 2 && l != nil && !l.Rebuilding && l.NextRebuild == nil && templatePID(st, st.Generation) != 0 &&
			requestState(l, "/render") == "learned" {
			if s, _ := moduleState(l, "lazy_fails"); s == "dropped" {
				break // everything learned is in the current template
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rebuild with everything traffic taught within 120 s (%d requests): %+v", i, st.Learned)
		}
	}
	l := st.Learned
	// (/report may be learned as a request too, or not: once lazy_report is the template's, new
	// workers no longer meet it cold.)
	if s := requestState(l, "/render"); s != "learned" {
		t.Errorf("/render is %q, want learned: %+v", s, l.Requests)
	}
	if s := requestState(l, "/account"); s == "learned" || s == "candidate" {
		t.Errorf("/account, requested only with a cookie, is %q", s)
	}
	if s := requestState(l, "/"); s == "learned" {
		t.Errorf("/, which the plan warms, was learned")
	}
	if s, _ := moduleState(l, "lazy_report"); s != "learned" {
		t.Errorf("lazy_report is %q, want learned: %+v", s, l.Modules)
	}
	if s, why := moduleState(l, "lazy_thread"); s != "dropped" || !strings.Contains(why, "thread") || !strings.Contains(why, "flusher") {
		t.Errorf("lazy_thread: %q %q, want dropped for its thread", s, why)
	}
	if s, why := moduleState(l, "lazy_fails"); s != "dropped" || !strings.Contains(why, "import failed") || !strings.Contains(why, "post_fork") {
		t.Errorf("lazy_fails: %q %q, want dropped as its import failed", s, why)
	}
	if e.logs.All(testutil.Msg("dropped a learned module: the template does not import it again", "module", "lazy_thread")) == nil {
		t.Error("no WARN named a dropped module")
	}
	m := scrape(t, e)
	rebuilds := m[`warmpool_template_rebuilds_total{reason="modules"}`] + m[`warmpool_template_rebuilds_total{reason="requests"}`] +
		m[`warmpool_template_rebuilds_total{reason="modules+requests"}`]
	if rebuilds < 1 || m[`warmpool_template_rebuild_results_total{outcome="ready"}`] < 1 ||
		m[`warmpool_learned_items{kind="module",state="dropped"}`] != 2 || m[`warmpool_learned_items{kind="request",state="learned"}`] < 1 ||
		m[`warmpool_new_worker_first_request_seconds{method="GET",path="/render"}`] <= 0 || m[`warmpool_steady_request_seconds{method="GET",path="/render"}`] <= 0 {
		t.Errorf("metrics: %d rebuilds, %v ready, %v modules dropped, %v requests learned, /render first %v steady %v", int(rebuilds),
			m[`warmpool_template_rebuild_results_total{outcome="ready"}`], m[`warmpool_learned_items{kind="module",state="dropped"}`],
			m[`warmpool_learned_items{kind="request",state="learned"}`], m[`warmpool_new_worker_first_request_seconds{method="GET",path="/render"}`],
			m[`warmpool_steady_request_seconds{method="GET",path="/render"}`])
	}
	// The workers of the rebuilt generation are forks of a template that imported lazy_report
	// and ran GET /render: neither is cold in them.
	tpl := templatePID(st, st.Generation)
	for range 30 {
		st = e.srv.Pool().Status()
		if allOfGeneration(st, st.Generation) {
			break
		}
		e.learnGet("/", false)
	}
	if !allOfGeneration(st, st.Generation) {
		t.Fatalf("the workers did not roll to generation %d: %+v", st.Generation, st.Workers)
	}
	if r := e.learnGet("/report", false); !r.ImportedBeforeFork {
		t.Errorf("a worker of the rebuilt template imported lazy_report itself (pid %d)", r.PID)
	}
	if r := e.learnGet("/render", false); r.BuiltIn != tpl {
		t.Errorf("/render's cache was built in %d, not in the rebuilt template %d", r.BuiltIn, tpl)
	}
	// Saved at close; a restart starts warm.
	e.close()
	data, err := os.ReadFile(state)
	if err != nil || !strings.Contains(string(data), "lazy_report") {
		t.Fatalf("state file: %v %.300s", err, data)
	}
	e2 := startServer(t, learnConfig(t, state))
	e2.waitReady()
	st2 := e2.srv.Pool().Status()
	if r := e2.learnGet("/report", false); !r.ImportedBeforeFork {
		t.Errorf("after a restart, the first template did not import lazy_report (pid %d)", r.PID)
	}
	if r := e2.learnGet("/render", false); r.BuiltIn != templatePID(st2, 1) {
		t.Errorf("after a restart, /render's cache was built in %d, not the template %d", r.BuiltIn, templatePID(st2, 1))
	}
	if st2.Learned == nil || slices.IndexFunc(st2.Learned.Modules, func(m learn.ModuleStatus) bool { return m.Name == "lazy_report" }) < 0 {
		t.Errorf("after a restart, the status does not show what was learned: %+v", st2.Learned)
	}
}

func allOfGeneration(st pool.Status, gen int) bool {
	for _, w := range st.Workers {
		if w.Generation != gen {
			return false
		}
	}
	return len(st.Workers) > 0
}

// Learned requests warm the workers of any command, not only a Python template's: a path new
// workers met cold joins every later worker's warm-up, after the plan.
func TestLearnedRequestsWarmCommandWorkers(t *testing.T) {
	cfg := testConfig()
	cfg.Worker.Env[testworker.EnvPathCold] = "/report=150ms"
	cfg.Worker.MaxRequests = 8
	e := startServer(t, cfg)
	e.waitReady()
	learned := func() bool {
		st := e.srv.Pool().Status()
		return st.Learned != nil && requestState(st.Learned, "/report") == "learned"
	}
	for i := 0; !learned(); i++ {
		if i >= 3000 {
			t.Fatalf("/report not learned after %d requests: %+v", i, e.srv.Pool().Status().Learned)
		}
		path := "/"
		if i%2 == 1 {
			path = "/report"
		}
		if resp, body := e.get(path); resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
	}
	// Workers spawned from now on run the plan (GET / twice) and the learned GET /report.
	admitted := testutil.Msg("worker admitted into rotation", "warmup_requests", "3")
	for i := 0; len(e.logs.All(admitted)) < 2; i++ {
		if i >= 200 {
			t.Fatalf("no worker admitted with the learned request in its warm-up")
		}
		e.get("/")
	}
}
