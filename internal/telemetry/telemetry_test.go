package telemetry

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func steadyReq(path string, d time.Duration) *Request {
	return &Request{Path: path, Status: 200, WorkerID: 1, RequestIndex: 10, Upstream: d, Duration: d, Start: time.Now()}
}

func TestWarmupCheckWarnsOncePerWorkerAboveFactorAndFloor(t *testing.T) {
	var logs bytes.Buffer
	misses := 0
	c := NewWarmupCheck(5, 50*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)), func() { misses++ }, nil)
	first := func(worker int, d time.Duration) {
		c.Observe(&Request{Path: "/api", Status: 200, WorkerID: worker, RequestIndex: 1, FirstRequests: true, Upstream: d})
	}
	first(2, time.Second) // no steady samples yet: nothing to compare with
	for range minSamples {
		c.Observe(steadyReq("/api", 2*time.Millisecond))
	}
	first(3, 40*time.Millisecond) // 20x steady but only 38 ms above: under the floor
	first(4, 9*time.Millisecond)  // under the factor
	first(5, 300*time.Millisecond)
	first(5, 300*time.Millisecond) // the same worker again: one warning per worker
	first(6, 300*time.Millisecond)
	c.Observe(&Request{Path: "/other", Status: 200, WorkerID: 7, RequestIndex: 1, FirstRequests: true, Upstream: time.Second})
	if misses != 2 || strings.Count(logs.String(), "warm-up did not cover this path") != 2 {
		t.Fatalf("misses %d, logs:\n%s", misses, logs.String())
	}
	if !strings.Contains(logs.String(), "worker=5 path=/api") || !strings.Contains(logs.String(), "steady_median=2ms") {
		t.Fatalf("warning lacks worker, path or latencies:\n%s", logs.String())
	}
}

func TestHistoryQuantilesSplitByFirstRequests(t *testing.T) {
	h := NewHistory()
	now := time.Unix(1_700_000_000, 0) // on a second boundary: every request below ends in one second
	start := now.Add(-2 * time.Second)
	h.now = func() time.Time { return now }
	for i := 1; i <= 100; i++ { // over the shards, as connections spread them: all are kept
		h.Observe(&Request{WorkerID: 1, Start: start, Duration: time.Duration(i) * time.Millisecond, Shard: i})
	}
	h.Observe(&Request{WorkerID: 1, FirstRequests: true, Start: start, Duration: 300 * time.Millisecond})
	h.Observe(&Request{WorkerID: 0, Start: start, Duration: time.Hour}) // a 503: no worker, not counted
	s := h.Summary(time.Minute)
	if s.SteadyN != 100 || s.SteadyP50 != 50 || s.SteadyP99 != 99 || s.FirstN != 1 || s.FirstP99 != 300 {
		t.Fatalf("summary: %+v", s)
	}
	if pts := h.Points(time.Minute); len(pts) != 1 || pts[0].SteadyN != 100 || pts[0].FirstP50 != 300 {
		t.Fatalf("points: %+v", pts)
	}
	h.now = func() time.Time { return now.Add(10 * time.Minute) }
	if pts := h.Points(5 * time.Minute); len(pts) != 0 {
		t.Fatalf("old seconds must age out: %+v", pts)
	}
}

// A shard past its reservoir keeps a sample; merged with a quieter shard, each sample counts
// for the requests it stands for, so a few slow requests on a quiet connection do not pass
// for the pool's P99.
func TestHistoryWeighsShardsByRequests(t *testing.T) {
	h := NewHistory()
	now := time.Unix(1_700_000_000, 0)
	h.now = func() time.Time { return now }
	start := now.Add(-2 * time.Second)
	for range 10_000 {
		h.Observe(&Request{WorkerID: 1, Start: start, Duration: time.Millisecond, Shard: 0})
	}
	for range 10 {
		h.Observe(&Request{WorkerID: 1, Start: start, Duration: 100 * time.Millisecond, Shard: 1})
	}
	s := h.Summary(time.Minute)
	if s.SteadyN != 10_010 || s.SteadyP50 != 1 || s.SteadyP99 != 1 {
		t.Fatalf("summary: %+v; want 10010 requests with P50 and P99 of 1 ms", s)
	}
	for range 200 { // now 2 % of the requests are slow: P99 must show it
		h.Observe(&Request{WorkerID: 1, Start: start, Duration: 100 * time.Millisecond, Shard: 1})
	}
	if s := h.Summary(time.Minute); s.SteadyP50 != 1 || s.SteadyP99 != 100 {
		t.Fatalf("summary: %+v; want P50 1 ms and P99 100 ms", s)
	}
}

func TestTraceIDAndStatusClass(t *testing.T) {
	h := http.Header{}
	h.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if got := TraceID(h); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("TraceID = %q", got)
	}
	h.Set("Traceparent", "garbage")
	if TraceID(h) != "" {
		t.Fatal("malformed traceparent accepted")
	}
	for code, want := range map[int]string{200: "2xx", 404: "4xx", 503: "5xx", 0: "other"} {
		if got := statusClass(code); got != want {
			t.Errorf("statusClass(%d) = %s", code, got)
		}
	}
}

func TestAccessLogLine(t *testing.T) {
	var buf bytes.Buffer
	NewAccessLog(&buf, nil).Write(&Request{Method: "GET", Path: "/x", Status: 502, WorkerID: 3, Duration: 1500 * time.Microsecond, FirstRequests: true})
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["status"] != 502.0 || rec["duration_ms"] != 1.5 || rec["worker"] != 3.0 || rec["first_requests"] != true || rec["level"] != nil || rec["msg"] != nil {
		t.Fatalf("access record: %v", rec)
	}
}

func TestMetricsAreLintClean(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.ObserveRequest(&Request{Status: 200, WorkerID: 1, FirstRequests: true})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}
	var nilMetrics *Metrics
	nilMetrics.ObserveRequest(&Request{}) // a nil *Metrics records nothing and does not panic
}

// The combined access log is nginx's and gunicorn's line, then warmpool's fields; what a client
// sends cannot break the line or forge another.
func TestCombinedAccessLog(t *testing.T) {
	var b strings.Builder
	a := &AccessLog{combined: &combinedWriter{w: &b}}
	start := time.Date(2026, 12, 6, 4, 5, 6, 0, time.UTC)
	a.Write(&Request{Client: []byte("203.0.113.9"), Method: "GET", Path: "/a", Query: []byte("b=1"), Status: 200, Bytes: 512,
		UserAgent: []byte("curl/8.5"), Start: start, Duration: 12 * time.Millisecond, Upstream: time.Millisecond, WorkerID: 2, RequestIndex: 17})
	a.Write(&Request{Client: []byte("203.0.113.9"), Method: "GET", Path: "/x\"y", Status: 404, UserAgent: []byte("evil\"\n203.0.113.1 - - [forged]"), Start: start, FirstRequests: true})
	want := `203.0.113.9 - - [06/Dec/2026:04:05:06 +0000] "GET /a?b=1 HTTP/1.1" 200 512 "-" "curl/8.5" rt=0.012 uct=0.001 worker=2 index=17 first=false` + "\n" +
		`203.0.113.9 - - [06/Dec/2026:04:05:06 +0000] "GET /x\x22y HTTP/1.1" 404 0 "-" "evil\x22\x0A203.0.113.1 - - [forged]" rt=0.000 uct=0.000 worker=0 index=0 first=true` + "\n"
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

// A failure repeats when only its numbers differ; another failure, or a Reset, starts anew.
func TestRepeats(t *testing.T) {
	var r Repeats
	steps := []struct {
		text  string
		first bool
		times int
	}{
		{"worker 3 (pid 120) exited: exit status 1; SyntaxError: invalid syntax", true, 0},
		{"worker 4 (pid 131) exited: exit status 1; SyntaxError: invalid syntax", false, 1},
		{"worker 5 (pid 140) exited: exit status 1; SyntaxError: invalid syntax", false, 2},
		{"worker 6 (pid 150) exited: exit status 1; ImportError: no module named x", true, 0},
	}
	for i, s := range steps {
		first, times, _ := r.Seen(s.text)
		if first != s.first || times != s.times {
			t.Fatalf("step %d: first %v times %d, want %v %d", i, first, times, s.first, s.times)
		}
	}
	r.Reset()
	if first, _, _ := r.Seen(steps[3].text); !first {
		t.Fatal("after Reset the same failure is not first")
	}
}
