package learn

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"warmpool/internal/config"
	"warmpool/internal/telemetry"
)

func TestCredentialHeaders(t *testing.T) {
	for _, name := range []string{"Cookie", "cookie", "Authorization", "Proxy-Authorization", "X-Api-Key", "X-Auth-Token",
		"X-Session-Id", "X-Amz-Security-Token", "X-Hub-Signature-256", "X-CSRFToken", "X-Client-Secret", strings.Repeat("x", 80)} {
		if !IsCredentialHeader([]byte(name)) {
			t.Errorf("%s is not taken for a credential", name)
		}
	}
	for _, name := range []string{"Accept", "Accept-Encoding", "User-Agent", "Host", "Keep-Alive", "Traceparent", "X-Forwarded-For", "Cache-Control"} {
		if IsCredentialHeader([]byte(name)) {
			t.Errorf("%s is taken for a credential", name)
		}
	}
}

func TestLearnablePaths(t *testing.T) {
	for _, p := range []string{"/", "/reports/2024/annual/", "/feed/rss.xml", "/blog/annual-report-for-the-year-2024/", "/api/v1/items"} {
		if why := learnablePath(p); why != "" {
			t.Errorf("%s: %s", p, why)
		}
	}
	for _, p := range []string{"", "reports", "/reset/MQ/c3l9kq-4f0a9b7e2d1c8a6f5e4d3c2b1a0f9e8d/", "/unsubscribe/4f0a9b7e2d1c8a6f5e4d3c2b",
		"/item/123e4567-e89b-12d3-a456-426614174000", "/a b", "/" + strings.Repeat("a/", 300)} {
		if learnablePath(p) == "" {
			t.Errorf("%q would be learned", p)
		}
	}
}

func TestSchedule(t *testing.T) {
	var s schedule
	t0 := time.Unix(1000, 0)
	if s.due(t0) {
		t.Fatal("due with nothing learned")
	}
	s.learned(t0, reasonModules)
	s.learned(t0.Add(2*time.Second), reasonRequests) // the first item counts
	if s.due(t0.Add(settle-time.Millisecond)) || !s.due(t0.Add(settle)) {
		t.Fatal("the first rebuild is not due settle after the first item")
	}
	at := t0.Add(settle)
	for i, want := range rebuildIntervals {
		s.started(at)
		if s.due(at.Add(time.Hour * 2)) {
			t.Fatalf("rebuild %d: due with nothing new", i+1)
		}
		s.learned(at.Add(time.Second), reasonModules)
		if s.due(at.Add(want - time.Millisecond)) {
			t.Fatalf("rebuild %d: due before %s", i+1, want)
		}
		if !s.due(at.Add(want)) {
			t.Fatalf("rebuild %d: not due after %s", i+1, want)
		}
		at = at.Add(want)
	}
	s.started(at)
	s.learned(at, reasonModules)
	if s.due(at.Add(time.Hour-time.Second)) || !s.due(at.Add(time.Hour)) {
		t.Fatal("past the table, rebuilds are an hour apart")
	}
}

// first is a new worker's first request to path: took against a steady median of 2 ms.
func first(worker int, method, path string, status int, took time.Duration, creds bool) *telemetry.Request {
	return &telemetry.Request{Method: method, Path: path, Status: status, Upstream: took, WorkerID: worker, FirstRequests: true,
		Credentials: creds, Host: []byte("app.example")}
}

func TestOnlySafeColdRequestsAreLearned(t *testing.T) {
	l := New(Options{Python: true})
	steady := 2 * time.Millisecond
	for w := 1; w <= 3; w++ {
		l.ObserveFirst(first(w, "GET", "/feed", 200, 300*time.Millisecond, false), steady, true)
		l.ObserveFirst(first(w, "GET", "/account", 200, 300*time.Millisecond, true), steady, true)
		l.ObserveFirst(first(w, "POST", "/export", 200, 300*time.Millisecond, false), steady, true)
		l.ObserveFirst(first(w, "GET", "/broken", 500, 300*time.Millisecond, false), steady, true)
		l.ObserveFirst(first(w, "GET", "/redirect", 302, 300*time.Millisecond, false), steady, true)
		l.ObserveFirst(first(w, "GET", "/fast", 200, 5*time.Millisecond, false), steady, true) // 2.5x but under the floor
		l.ObserveFirst(first(w, "GET", "/nosteady", 200, 300*time.Millisecond, false), 0, false)
		l.ObserveFirst(first(w, "GET", "/reset/MQ/c3l9kq-4f0a9b7e2d1c8a6f5e4d3c2b1a0f9e8d/", 200, 300*time.Millisecond, false), steady, true)
	}
	l.ObserveFirst(first(1, "GET", "/once", 200, 300*time.Millisecond, false), steady, true)
	l.ObserveFirst(first(1, "GET", "/once", 200, 300*time.Millisecond, false), steady, true) // the same worker again
	got := l.Requests()
	if len(got) != 1 || got[0] != (Request{Method: "GET", Path: "/feed", Host: "app.example"}) {
		t.Fatalf("learned %+v, want GET /feed only", got)
	}
	st := l.Status()
	states := map[string]string{}
	for _, r := range st.Requests {
		states[r.Method+" "+r.Path] = r.State + ": " + r.Why
	}
	for key, want := range map[string]string{"GET /account": "credentials", "POST /export": "GET and HEAD", "GET /broken": "2xx",
		"GET /redirect": "2xx", "GET /once": "candidate"} {
		if !strings.Contains(states[key], want) {
			t.Errorf("%s: %q, want it to say %q", key, states[key], want)
		}
	}
	for key := range states {
		if strings.Contains(key, "reset") {
			t.Errorf("a path with a token is kept: %s", key)
		}
	}
	if _, shown := states["GET /fast"]; shown {
		t.Errorf("/fast, met warm, is shown: %q", states["GET /fast"])
	}
	l.DropRequest("GET", "/feed", "got status 404")
	if got := l.Requests(); len(got) != 0 {
		t.Fatalf("a dropped request is still sent: %+v", got)
	}
}

// The most costly first, and no more than MaxRequests.
func TestLearnedRequestsAreBounded(t *testing.T) {
	l := New(Options{})
	for i := range MaxRequests + 10 {
		path := "/r" + string(rune('a'+i))
		for w := 1; w <= 2; w++ {
			l.ObserveFirst(first(w, "GET", path, 200, time.Duration(20+i)*time.Millisecond, false), time.Millisecond, true)
		}
	}
	got := l.Requests()
	if len(got) != MaxRequests || got[0].Path != "/r"+string(rune('a'+MaxRequests+9)) {
		t.Fatalf("%d learned, first %+v", len(got), got[0])
	}
}

// Modules come only from the pool's workers, by the kernel's word, and two of them must have
// imported one; a state file brings them back, and a file of another app is ignored.
func TestModuleReportsAndState(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state", "learned.json")
	me := os.Getpid()
	var workers sync.Map // pid -> true
	isWorker := func(pid int) bool { _, ok := workers.Load(pid); return ok }
	l := New(Options{Python: true, SocketDir: dir, StatePath: state, Identity: "app1", IsWorker: isWorker})
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	send := func(names ...string) {
		c, err := net.Dial("unixgram", l.ReportSocket())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		data, _ := json.Marshal(map[string][]string{"modules": names})
		if _, err := c.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %+v", what, l.Status())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	send("xml.etree.ElementTree") // not a worker: ignored
	waitFor("the rejection", func() bool { return l.Status().Rejected == 1 })
	workers.Store(me, true)
	// A worker's garbage: not JSON, too long (truncated at 64 KiB), too many names. Ignored, and
	// the next report is heard.
	raw := func(data []byte) {
		c, err := net.Dial("unixgram", l.ReportSocket())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	raw([]byte("not json"))
	raw([]byte(`{"modules": ["` + strings.Repeat("a", 100<<10) + `"]}`))
	many := make([]string, maxReportModules+1)
	for i := range many {
		many[i] = "m" + strconv.Itoa(i)
	}
	send(many...)
	send("xml.etree.ElementTree", "os; import evil", "csv")
	waitFor("a candidate", func() bool { return l.Status().Candidates == 2 })
	if b := l.Current(); len(b.Modules) != 0 {
		t.Fatalf("learned from one worker: %v", b.Modules)
	}
	// The same pid again is the same worker: a second worker is another pid. Tell the learner
	// directly, as its socket would.
	l.fromWorker(me+1000000, []string{"csv", "xml.etree.ElementTree"})
	workers.Store(me+1000000, true)
	l.fromWorker(me+1000000, []string{"csv", "xml.etree.ElementTree"})
	if b := l.Current(); strings.Join(b.Modules, ",") != "xml.etree.ElementTree,csv" {
		t.Fatalf("learned %v, want both, in first-seen order", b.Modules)
	}
	l.Preloaded(map[string]float64{"csv": 1.5}, nil)
	l.DropModule("xml.etree.ElementTree", "its import started a thread")
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	l2 := New(Options{Python: true, StatePath: state, Identity: "app1"})
	if err := l2.load(); err != nil {
		t.Fatal(err)
	}
	if b := l2.Current(); strings.Join(b.Modules, ",") != "csv" {
		t.Fatalf("after a restart: %v", b.Modules)
	}
	st := l2.Status()
	if len(st.Modules) != 2 || st.Modules[0].ImportMS != 1.5 || st.Modules[1].State != "dropped" {
		t.Fatalf("after a restart: %+v", st.Modules)
	}
	other := New(Options{StatePath: state, Identity: "app2"})
	if err := other.load(); err == nil || len(other.Current().Modules) != 0 {
		t.Fatalf("another app's state was taken: %v", err)
	}
}

// What `warmpool learned` prints is config: it parses, and carries the learned requests (Host
// included) and the preload list; dropped items are only comments.
func TestWriteConfigIsConfig(t *testing.T) {
	l := New(Options{Python: true})
	for w := 1; w <= 2; w++ {
		l.ObserveFirst(first(w, "GET", "/export.csv", 200, 400*time.Millisecond, false), 3*time.Millisecond, true)
		l.ObserveFirst(first(w, "HEAD", "/feed", 200, 90*time.Millisecond, false), 2*time.Millisecond, true)
		l.ObserveFirst(first(w, "GET", "/gone", 200, 90*time.Millisecond, false), 2*time.Millisecond, true)
		l.fromWorker(w, []string{"csv", "xml.dom.minidom", "lazy_thread"})
	}
	l.opts.IsWorker = func(int) bool { return true }
	for w := 1; w <= 2; w++ {
		l.fromWorker(w, []string{"csv", "xml.dom.minidom", "lazy_thread"})
	}
	l.Preloaded(map[string]float64{"xml.dom.minidom": 12.5}, []string{"csv"})
	l.DropModule("lazy_thread", "its import started a thread: 'flusher'")
	l.DropRequest("GET", "/gone", "got status 404")
	var out strings.Builder
	l.Status().WriteConfig(&out)
	text := out.String()
	parsed, err := config.Parse("learned.toml", []byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	reqs := parsed.Config.Warmup.Requests
	if len(reqs) != 2 || reqs[0].Path != "/export.csv" || reqs[0].Method != "GET" || reqs[0].Headers["Host"] != "app.example" ||
		reqs[1].Method != "HEAD" || reqs[1].Path != "/feed" {
		t.Errorf("requests %+v\n%s", reqs, text)
	}
	// csv came with another module's import in the template: the list leaves it out.
	if got := parsed.Config.Worker.Python.Preload; strings.Join(got, ",") != "xml.dom.minidom" {
		t.Errorf("preload %v\n%s", got, text)
	}
	for _, want := range []string{"first request: 400 ms, steady: 3.0 ms", "12 ms in the template", "1 more learned modules come with these", "module lazy_thread: its import started a thread",
		"GET /gone: got status 404"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in\n%s", want, text)
		}
	}
}

// The plan's own requests are never learned; a cheap learned request joins the warm-ups at once
// but makes no template rebuild by itself, a costly one does.
func TestPlannedAndCheapRequests(t *testing.T) {
	l := New(Options{Python: true})
	l.SetPlan([]Request{{Method: "GET", Path: "/"}})
	for w := 1; w <= 2; w++ {
		l.ObserveFirst(first(w, "GET", "/", 200, 300*time.Millisecond, false), 2*time.Millisecond, true)
		l.ObserveFirst(first(w, "GET", "/cheap", 200, 30*time.Millisecond, false), 2*time.Millisecond, true)
	}
	if got := l.Requests(); len(got) != 1 || got[0].Path != "/cheap" {
		t.Fatalf("learned %+v, want /cheap only", got)
	}
	if _, _, ok := l.TakeRebuild(); ok {
		t.Fatal("a 28 ms request made a rebuild")
	}
	for w := 1; w <= 2; w++ {
		l.ObserveFirst(first(w, "GET", "/costly", 200, 300*time.Millisecond, false), 2*time.Millisecond, true)
	}
	b, reason, ok := l.TakeRebuild()
	if !ok || reason != "requests" || len(b.Requests) != 2 || b.Requests[0].Path != "/costly" {
		t.Fatalf("a 298 ms request: rebuild %v (%q) with %+v", ok, reason, b.Requests)
	}
}

// A client that sends new workers random paths, cold each time, grows nothing without bound:
// at most maxPaths are kept, and at most MaxRequests sent.
func TestRandomPathsAreBounded(t *testing.T) {
	l := New(Options{Python: true})
	for i := range 5 * maxPaths {
		for w := 1; w <= 2; w++ {
			l.ObserveFirst(first(w, "GET", "/p"+strconv.Itoa(i), 200, 300*time.Millisecond, false), time.Millisecond, true)
		}
	}
	if n := len(l.paths); n != maxPaths {
		t.Fatalf("%d paths kept", n)
	}
	if n := len(l.Requests()); n != MaxRequests {
		t.Fatalf("%d learned requests sent", n)
	}
}
