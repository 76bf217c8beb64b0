package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"testing"
	"time"

	"warmpool/internal/telemetry"
	"warmpool/internal/testworker"
	"warmpool/internal/worker"
)

// startWorker runs the test binary as a real worker process.
func startWorker(b testing.TB) *worker.Worker {
	b.Helper()
	w := worker.New(worker.Spec{
		ID: 1, Command: []string{os.Args[0], "{socket}"}, SocketDir: b.TempDir(), Concurrency: 64,
		Env: append(os.Environ(), testworker.EnvActive+"=1"), ResponseHeaderTimeout: time.Minute,
	})
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.WaitListening(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w.Stop(ctx)
		w.Wait()
	})
	return w
}

// BenchmarkForward is one request through the front to a real worker process and back, with
// the observer the server uses (metrics off here) or none.
func BenchmarkForward(b *testing.B) {
	for _, observed := range []bool{false, true} {
		name := "plain"
		if observed {
			name = "observed"
		}
		b.Run(name, func(b *testing.B) {
			w := startWorker(b)
			bal := NewBalancer(1024, time.Second)
			bal.Add(w, 64)
			opts := Options{RequestTimeout: time.Minute, ColdWindow: 3}
			if observed {
				opts.Observer = &telemetry.Recorder{History: telemetry.NewHistory()}
			}
			f := NewFront(bal, opts)
			req := httptest.NewRequest("GET", "http://app.example.com/", nil)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				f.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
			w.Transport().CloseIdleConnections()
		})
	}
}

func BenchmarkRewrite(b *testing.B) {
	in := httptest.NewRequest("GET", "http://app.example.com/api/orders?page=2", nil)
	in.Header.Set("User-Agent", "bench")
	in.Header.Set("Accept", "*/*")
	in.Header.Set("X-Forwarded-For", "203.0.113.7")
	in.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f := NewFront(NewBalancer(1, time.Second), Options{})
	b.ReportAllocs()
	for b.Loop() {
		out := in.Clone(in.Context())
		f.rewrite(&httputil.ProxyRequest{In: in, Out: out})
		if out.Header.Get("X-Forwarded-Host") == "" {
			b.Fatal("no rewrite")
		}
	}
}

// TestPickAllocatesNothing guards the balancer's hot path.
func TestPickAllocatesNothing(t *testing.T) {
	bal := NewBalancer(10, time.Second)
	for _, w := range newWorkers(8) {
		bal.Add(w, 4)
	}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		l, _ := bal.Acquire(ctx)
		l.Release()
	})
	if allocs != 0 {
		t.Fatalf("Acquire+Release allocates %.1f times", allocs)
	}
}

var _ http.Handler = (*Front)(nil)
