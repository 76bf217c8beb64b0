package warmup

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"warmpool/internal/config"
)

// serverRT sends every request to an in-process server.
func serverRT(h http.Handler) (http.RoundTripper, func()) {
	srv := httptest.NewServer(h)
	tr := &http.Transport{}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r.URL.Scheme, r.URL.Host = "http", strings.TrimPrefix(srv.URL, "http://")
		return tr.RoundTrip(r)
	}), func() { tr.CloseIdleConnections(); srv.Close() }
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func plan(reqs ...config.WarmupRequest) *Plan {
	cfg := config.Default()
	cfg.Worker.Concurrency = 3
	cfg.Warmup.Requests = reqs
	return NewPlan(&cfg)
}

func TestRunRepeatsInOrderWithBoundedConcurrency(t *testing.T) {
	var inFlight, peak atomic.Int32
	var mu sync.Mutex
	var seen []string
	release := make(chan struct{})
	rt, stop := serverRT(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Host+" "+r.Header.Get("X-Warmpool-Warmup")+" "+r.Header.Get("X-Token"))
		full := len(seen) == 3
		mu.Unlock()
		if full {
			close(release) // three at once reached: the worker's every thread is busy
		}
		if r.URL.Path == "/a" {
			<-release
		}
	}))
	defer stop()
	p := plan(
		config.WarmupRequest{Method: "GET", Path: "/a", Repeat: 3, Headers: map[string]string{"Host": "app.example.com", "X-Token": "t"}},
		config.WarmupRequest{Method: "POST", Path: "/b", Repeat: 2},
	)
	res, err := p.Run(context.Background(), rt)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 5 || p.Total() != 5 || peak.Load() != 3 {
		t.Fatalf("requests %d total %d peak concurrency %d", res.Requests, p.Total(), peak.Load())
	}
	if seen[0] != "GET /a app.example.com 1 t" || seen[4] != "POST /b localhost 1 " {
		t.Fatalf("requests seen: %q", seen)
	}
}

func TestRunFailureNamesRequestStatusAndBody(t *testing.T) {
	rt, stop := serverRT(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Invalid HTTP_HOST header: 'localhost'.", http.StatusBadRequest)
	}))
	defer stop()
	_, err := plan(config.WarmupRequest{Method: "GET", Path: "/healthz", Repeat: 1}).Run(context.Background(), rt)
	var f *Failure
	if !errors.As(err, &f) || f.Status != 400 {
		t.Fatalf("want a Failure with status 400, got %v", err)
	}
	want := `warm-up request GET /healthz (#1) got status 400, want 2xx; the answer says "Invalid HTTP_HOST header: 'localhost'."`
	if err.Error() != want {
		t.Fatalf("message\n got %s\nwant %s", err, want)
	}
	_, err = plan(config.WarmupRequest{Method: "GET", Path: "/", Repeat: 1, Expect: []int{200, 204}}).Run(context.Background(), rt)
	if !strings.Contains(err.Error(), "want 200 OK or 204 No Content") {
		t.Fatalf("expectation not named: %v", err)
	}
}

func TestRunTimeoutNamesCause(t *testing.T) {
	block := make(chan struct{})
	rt, stop := serverRT(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer stop()
	defer close(block)
	ctx, cancel := context.WithTimeoutCause(context.Background(), 50*time.Millisecond, errors.New("warmup.timeout (50ms) passed"))
	defer cancel()
	_, err := plan(config.WarmupRequest{Method: "GET", Path: "/slow", Repeat: 1}).Run(ctx, rt)
	if err == nil || !strings.Contains(err.Error(), "GET /slow") || !strings.Contains(err.Error(), "warmup.timeout (50ms) passed") {
		t.Fatalf("timeout error: %v", err)
	}
}

// An HTML error page is explained by its title (Django's names the problem there), and an
// accepted answer that is no 2xx is reported in the result.
func TestRunExplainsHTMLAndReportsAcceptedFailures(t *testing.T) {
	rt, stop := serverRT(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "<!DOCTYPE html><html><head><meta charset=utf-8>\n<title>DisallowedHost\n at /report</title><style>"+
			strings.Repeat("body{}", 100)+"</style></head><body><h1>DisallowedHost</h1></body></html>")
	}))
	defer stop()
	_, err := plan(config.WarmupRequest{Method: "GET", Path: "/report", Repeat: 1}).Run(context.Background(), rt)
	if err == nil || !strings.HasSuffix(err.Error(), `the answer says "DisallowedHost at /report"`) {
		t.Fatalf("failure: %v", err)
	}
	res, err := plan(config.WarmupRequest{Method: "GET", Path: "/report", Repeat: 2, Expect: []int{200, 400}}).Run(context.Background(), rt)
	if err != nil || len(res.NotSuccess) != 1 || res.NotSuccess[0] != "GET /report: 400 Bad Request: DisallowedHost at /report" {
		t.Fatalf("accepted 400: %v %q", err, res.NotSuccess)
	}
}
