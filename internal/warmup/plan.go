package warmup

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"warmpool/internal/config"
)

// Request is one declared warm-up request.
type Request struct {
	Method string
	Path   string
	Host   string
	Header http.Header
	Body   string
	// Expect lists the accepted statuses; empty accepts any 2xx.
	Expect []int
	Repeat int
}

// Plan is the ordered list of warm-up requests and how many run at once.
type Plan struct {
	Requests []Request
	// Learned are requests learned from traffic (internal/learn), sent once each after Requests.
	// One that fails (no 2xx, or no answer within learnedTimeout) fails no warm-up: it is left
	// out and reported to Dropped.
	Learned []Request
	// Dropped is told of each learned request that failed, and why; nil: no one is.
	Dropped     func(r *Request, why string)
	Concurrency int
	// Tracer makes a span per warm-up request, a child of the span in Run's context, and its
	// trace context goes to the worker; nil means no spans.
	Tracer trace.Tracer
}

// NewPlan builds the plan from the configuration.
func NewPlan(cfg *config.Config) *Plan {
	p := &Plan{Concurrency: max(cfg.WarmupConcurrency(), 1)}
	for _, r := range cfg.Warmup.Requests {
		req := Request{Method: r.Method, Path: r.Path, Body: r.Body, Expect: r.Expect, Repeat: max(r.Repeat, 1), Header: http.Header{}}
		if req.Method == "" {
			req.Method = http.MethodGet
		}
		for k, v := range r.Headers {
			if strings.EqualFold(k, "Host") {
				req.Host = v
				continue
			}
			req.Header.Set(k, v)
		}
		p.Requests = append(p.Requests, req)
	}
	return p
}

// Total is the number of requests the plan sends.
func (p *Plan) Total() int {
	n := len(p.Learned)
	for _, r := range p.Requests {
		n += r.Repeat
	}
	return n
}

// Accepts reports whether status is an expected answer to r.
func (r *Request) Accepts(status int) bool {
	if len(r.Expect) == 0 {
		return status >= 200 && status < 300
	}
	for _, s := range r.Expect {
		if s == status {
			return true
		}
	}
	return false
}

func (r *Request) expectation() string {
	if len(r.Expect) == 0 {
		return "2xx"
	}
	parts := make([]string, len(r.Expect))
	for i, s := range r.Expect {
		parts[i] = http.StatusText(s)
		parts[i] = strings.TrimSpace(itoa(s) + " " + parts[i])
	}
	return strings.Join(parts, " or ")
}
