package proxy

import (
	"go.opentelemetry.io/otel/trace"

	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"warmpool/internal/h1"
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
	if err := w.Start(context.Background()); err != nil {
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
// the observer the server uses (metrics off here) or none: on the lean path (a raw keep-alive
// client over loopback; the client allocates nothing), and through the net/http handler path.
func BenchmarkForward(b *testing.B) {
	for _, observed := range []bool{false, true} {
		opts := Options{RequestTimeout: time.Minute, ColdWindow: 3}
		suffix := "plain"
		if observed {
			opts.Observer = &telemetry.Recorder{History: telemetry.NewHistory()}
			suffix = "observed"
		}
		b.Run("lean/"+suffix, func(b *testing.B) {
			e := startLean(b, 64, opts)
			c := e.dial()
			req := []byte("GET / HTTP/1.1\r\nHost: app.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.nc.Write(req); err != nil {
					b.Fatal(err)
				}
				if status := readSimpleResponse(b, c.br); status != 200 {
					b.Fatalf("status %d", status)
				}
			}
		})
		b.Run("handler/"+suffix, func(b *testing.B) {
			w := startWorker(b)
			bal := NewBalancer(1024, time.Second)
			bal.Add(w, 64)
			f := NewFront(bal, opts)
			f.Start()
			req := httptest.NewRequest("GET", "http://app.example.com/", nil)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				f.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
			f.Close(context.Background())
			bal.Remove(w)
		})
	}
}

// readSimpleResponse reads a response with a Content-Length body without allocating, and
// returns its status.
func readSimpleResponse(b *testing.B, br *bufio.Reader) int {
	status, length := 0, -1
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		if first {
			status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
			continue
		}
		if len(line) == 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			length = 0
			for _, d := range bytes.TrimSpace(v) {
				length = length*10 + int(d-'0')
			}
		}
	}
	if length < 0 {
		b.Fatal("no Content-Length")
	}
	if _, err := br.Discard(length); err != nil {
		b.Fatal(err)
	}
	return status
}

// BenchmarkRewriteLean is the lean path's outbound head: the client's fields filtered and
// X-Forwarded-For extended, written into the worker connection's buffer.
func BenchmarkRewriteLean(b *testing.B) {
	head := []byte("GET /api/orders?page=2 HTTP/1.1\r\nHost: app.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n" +
		"X-Forwarded-For: 203.0.113.7\r\nConnection: keep-alive\r\nTraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n")
	var r h1.Request
	bw := bufio.NewWriterSize(io.Discard, 4096)
	client := []byte("127.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		if _, res := h1.ParseRequest(head, &r); res != h1.Complete {
			b.Fatal(res)
		}
		writeLeanOutbound(bw, &r, client, nil, nil, outboundPolicy{})
		bw.Flush()
	}
}

// BenchmarkRewriteFallback is the same on the net/http fallback (requests the lean path hands off).
func BenchmarkRewriteFallback(b *testing.B) {
	in := httptest.NewRequest("GET", "http://app.example.com/api/orders?page=2", nil)
	in.Header.Set("User-Agent", "bench")
	in.Header.Set("Accept", "*/*")
	in.Header.Set("X-Forwarded-For", "203.0.113.7")
	in.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, 4096)
	b.ReportAllocs()
	for b.Loop() {
		out.Reset()
		writeOutbound(bw, in, trace.SpanFromContext(in.Context()), &Options{}, nil, "")
		bw.Flush()
		if !bytes.Contains(out.Bytes(), []byte("X-Forwarded-For: 203.0.113.7, 192.0.2.1\r\n")) {
			b.Fatal("no rewrite:", out.String())
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
