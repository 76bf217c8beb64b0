package app_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"

	"google.golang.org/protobuf/proto"
	"warmpool/internal/app"
)

const (
	clientTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpanID  = "00f067aa0ba902b7"
)

// requestWithTrace sends /echo with the client's trace context and returns the traceparent
// the worker received.
func requestWithTrace(t *testing.T, e *env) string {
	t.Helper()
	req, _ := http.NewRequest("GET", e.base+"/echo", nil)
	req.Header.Set("Traceparent", "00-"+clientTraceID+"-"+clientSpanID+"-01")
	resp, body := e.do(req)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var echo struct {
		Header http.Header `json:"header"`
	}
	if err := json.Unmarshal([]byte(body), &echo); err != nil {
		t.Fatal(err)
	}
	return echo.Header.Get("Traceparent")
}

func spansNamed(spans tracetest.SpanStubs, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func TestTracingWithInMemoryExporter(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	e := startServer(t, testConfig(), app.WithTracerProvider(tp))
	e.waitReady()

	got := requestWithTrace(t, e)
	server := spansNamed(exp.GetSpans(), "GET")
	if len(server) != 1 {
		t.Fatalf("want one server span, got %d", len(server))
	}
	sp := server[0]
	if sp.SpanContext.TraceID().String() != clientTraceID || sp.Parent.SpanID().String() != clientSpanID {
		t.Fatalf("server span does not continue the client's trace: trace %s parent %s", sp.SpanContext.TraceID(), sp.Parent.SpanID())
	}
	if want := "00-" + clientTraceID + "-" + sp.SpanContext.SpanID().String() + "-01"; got != want {
		t.Fatalf("worker saw traceparent %q, want %q (warmpool's span as parent)", got, want)
	}
	attrs := map[string]string{}
	for _, kv := range sp.Attributes {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	if attrs["warmpool.worker.id"] == "" || attrs["http.response.status_code"] != "200" || attrs["warmpool.first_requests"] != "true" {
		t.Fatalf("server span attributes: %v", attrs)
	}
	if len(sp.Events) != 1 || sp.Events[0].Name != "warmpool.queue_wait" {
		t.Fatalf("server span events: %+v", sp.Events)
	}

	// Lifecycle: spawn and warm-up (with a span per warm-up request) under each worker's span.
	spans := exp.GetSpans()
	for _, name := range []string{"warmpool.worker.spawn", "warmpool.warmup", "warmpool.worker.admit"} {
		if n := len(spansNamed(spans, name)); n != 2 {
			t.Errorf("%d %s spans, want 2 (one per worker)", n, name)
		}
	}
	warmups := map[string]bool{}
	for _, w := range spansNamed(spans, "warmpool.warmup") {
		warmups[w.SpanContext.SpanID().String()] = true
	}
	reqs := spansNamed(spans, "warmpool.warmup.request")
	if len(reqs) != 4 {
		t.Fatalf("%d warm-up request spans, want 4 (2 workers x repeat 2)", len(reqs))
	}
	for _, r := range reqs {
		if !warmups[r.Parent.SpanID().String()] {
			t.Fatalf("warm-up request span not a child of a warm-up span")
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	spans = exp.GetSpans()
	roots := spansNamed(spans, "warmpool.worker")
	if len(roots) != 2 || len(spansNamed(spans, "warmpool.worker.drain")) != 2 {
		t.Fatalf("after shutdown: %d worker spans, %d drain spans", len(roots), len(spansNamed(spans, "warmpool.worker.drain")))
	}
	for _, root := range roots {
		if len(root.Events) == 0 || root.Events[len(root.Events)-1].Name != "warmpool.worker.exit" {
			t.Fatalf("worker span lacks its exit event: %+v", root.Events)
		}
		for _, name := range []string{"warmpool.worker.spawn", "warmpool.warmup", "warmpool.worker.admit", "warmpool.worker.drain"} {
			found := false
			for _, c := range spansNamed(spans, name) {
				found = found || c.Parent.SpanID() == root.SpanContext.SpanID()
			}
			if !found {
				t.Errorf("worker span %s has no %s child", root.SpanContext.SpanID(), name)
			}
		}
	}
}

// otlpReceiver is a real OTLP/HTTP endpoint that decodes what it receives.
type otlpReceiver struct {
	mu    sync.Mutex
	spans map[string][]string // span name -> trace ids (hex)
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || r.URL.Path != "/v1/traces" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-protobuf") {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				o.spans[sp.Name] = append(o.spans[sp.Name], hex.EncodeToString(sp.TraceId))
			}
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func TestTracingToARealOTLPReceiver(t *testing.T) {
	rcv := &otlpReceiver{spans: map[string][]string{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	cfg := testConfig()
	cfg.Telemetry.OTLPEndpoint = srv.URL
	e := startServer(t, cfg)
	e.waitReady()
	requestWithTrace(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.srv.Close(ctx); err != nil { // flushes the exporter
		t.Fatal(err)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if ids := rcv.spans["GET"]; len(ids) != 1 || ids[0] != clientTraceID {
		t.Fatalf("server span at the receiver: %v", rcv.spans)
	}
	for _, name := range []string{"warmpool.worker", "warmpool.warmup", "warmpool.warmup.request", "warmpool.worker.drain"} {
		if len(rcv.spans[name]) == 0 {
			t.Errorf("receiver got no %s span: %v", name, rcv.spans)
		}
	}
}
