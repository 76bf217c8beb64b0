package warmup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"warmpool/internal/worker"
)

// Result summarises a passed warm-up.
type Result struct {
	Requests int
	Duration time.Duration
	// Slowest is the slowest single warm-up request: usually the one that met the cold code.
	Slowest time.Duration
	// Learned is how many of the plan's learned requests passed.
	Learned int
	// NotSuccess lists the answers an expect accepted that were no 2xx ("GET /x: 400 Bad
	// Request: <title>"), once per request: a warm-up refused by the app warms nothing.
	NotSuccess []string
}

// Failure is a warm-up request that did not get an expected answer.
type Failure struct {
	Method, Path string
	Attempt      int // 1-based repeat index
	Status       int // 0 when no response came
	Body         string
	Want         string
	Err          error
}

func (f *Failure) Error() string {
	if f.Status == 0 {
		return fmt.Sprintf("warm-up request %s %s (#%d) failed: %v", f.Method, f.Path, f.Attempt, f.Err)
	}
	return fmt.Sprintf("warm-up request %s %s (#%d) got status %d, want %s; the answer says \"%s\"",
		f.Method, f.Path, f.Attempt, f.Status, f.Want, readable(f.Body))
}

// readable is an answer's text as people read it: its lines as lines (CRLF or LF), other
// control bytes escaped, the whitespace around it trimmed. The status page shows its lines;
// a log line quotes it whole.
func readable(body string) string {
	body = strings.TrimSpace(strings.ReplaceAll(body, "\r\n", "\n"))
	var b strings.Builder
	for _, r := range body {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (f *Failure) Unwrap() error { return f.Err }

// bodyExcerpt is how much of a failed answer is read to explain it: enough for an error
// page's <title>.
const bodyExcerpt = 4096

// Run sends the plan to one worker through rt: the requests in order, each repeated, up to
// Concurrency in flight. The first failure cancels the rest and is returned.
func (p *Plan) Run(ctx context.Context, rt http.RoundTripper) (Result, error) {
	start := time.Now()
	res := Result{}
	for i := range p.Requests {
		r := &p.Requests[i]
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(p.Concurrency)
		times := make([]time.Duration, r.Repeat)
		odd := make([]string, r.Repeat)
		for n := range r.Repeat {
			g.Go(func() error {
				d, note, err := r.send(gctx, rt, n+1, p.Tracer)
				times[n], odd[n] = d, note
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return res, err
		}
		for _, note := range odd {
			if note != "" {
				res.NotSuccess = append(res.NotSuccess, note)
				break
			}
		}
		for _, d := range times {
			res.Slowest = max(res.Slowest, d)
		}
		res.Requests += r.Repeat
	}
	for i := range p.Learned {
		if ctx.Err() != nil {
			return res, context.Cause(ctx)
		}
		d, ok := p.sendLearned(ctx, rt, &p.Learned[i])
		res.Slowest = max(res.Slowest, d)
		if ok {
			res.Learned++
			res.Requests++
		}
	}
	res.Duration = time.Since(start)
	return res, nil
}

// learnedTimeout bounds one learned request: a slow one is dropped rather than spend the boot's
// warmup.timeout, which the operator's plan was sized for.
const learnedTimeout = 10 * time.Second

// sendLearned sends a learned request; one that fails is reported to p.Dropped.
func (p *Plan) sendLearned(ctx context.Context, rt http.RoundTripper, r *Request) (time.Duration, bool) {
	rctx, cancel := context.WithTimeoutCause(ctx, learnedTimeout, fmt.Errorf("no answer within %s", learnedTimeout))
	defer cancel()
	d, note, err := r.send(rctx, rt, 1, p.Tracer)
	if ctx.Err() != nil {
		return d, false // the boot ended (its timeout, a cancel): not the request's fault
	}
	why := note
	if err != nil {
		why = err.Error()
	}
	if why == "" {
		return d, true
	}
	if p.Dropped != nil {
		p.Dropped(r, why)
	}
	return d, false
}

// send sends one warm-up request. note describes an accepted answer that was no 2xx.
func (r *Request) send(ctx context.Context, rt http.RoundTripper, attempt int, tracer trace.Tracer) (d time.Duration, note string, err error) {
	if tracer != nil {
		var span trace.Span
		ctx, span = tracer.Start(ctx, "warmpool.warmup.request", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.Path),
				attribute.Int("warmpool.warmup.attempt", attempt)))
		defer func() {
			var f *Failure
			if errors.As(err, &f) && f.Status != 0 {
				span.SetAttributes(attribute.Int("http.response.status_code", f.Status))
			}
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
	}
	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://worker"+r.Path, body)
	if err != nil {
		return 0, "", &Failure{Method: r.Method, Path: r.Path, Attempt: attempt, Err: err}
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	req.Host = r.Host
	if req.Host == "" {
		req.Host = "localhost"
	}
	req.Header.Set(worker.WarmupHeader, "1")
	if tracer != nil {
		propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	}
	start := time.Now()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		return 0, "", &Failure{Method: r.Method, Path: r.Path, Attempt: attempt, Err: err}
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, bodyExcerpt))
	_, copyErr := io.Copy(io.Discard, resp.Body)
	took := time.Since(start)
	if !r.Accepts(resp.StatusCode) {
		return took, "", &Failure{Method: r.Method, Path: r.Path, Attempt: attempt, Status: resp.StatusCode,
			Body: explain(head), Want: r.expectation()}
	}
	if copyErr != nil {
		return took, "", &Failure{Method: r.Method, Path: r.Path, Attempt: attempt, Err: fmt.Errorf("reading body: %w", copyErr)}
	}
	if resp.StatusCode/100 != 2 {
		note = fmt.Sprintf("%s %s: %s: %s", r.Method, r.Path, resp.Status, explain(head))
	}
	return took, note, nil
}

// explain picks what says most about a response body: an HTML page's <title> or first <h1>
// (Django's error pages name the problem there), else its first bytes.
func explain(body []byte) string {
	for _, tag := range []string{"title", "h1"} {
		lower := bytes.ToLower(body)
		if i := bytes.Index(lower, []byte("<"+tag)); i >= 0 {
			if j := bytes.IndexByte(lower[i:], '>'); j >= 0 {
				start := i + j + 1
				if k := bytes.Index(lower[start:], []byte("</"+tag)); k >= 0 {
					if text := strings.Join(strings.Fields(string(body[start:start+k])), " "); text != "" {
						return printable([]byte(html.UnescapeString(text)))
					}
				}
			}
		}
	}
	return printable(body)
}

func printable(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if utf8.RuneCountInString(s) > 120 {
		s = string([]rune(s)[:120]) + "..."
	}
	return s
}

func itoa(n int) string { return strconv.Itoa(n) }
