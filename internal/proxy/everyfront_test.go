package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"warmpool/internal/telemetry"
)

// The differential test over every front: the same logical request, sent over plain HTTP/1.1
// (the lean path, or net/http after a handoff), TLS HTTP/1.1 and HTTP/2, gives the worker the
// same method, target, fields and body, and the client the same status, fields, body, trailers
// and interim responses; with the default options and with others.

// logicalRequest is a request as each front renders it.
type logicalRequest struct {
	method, target string
	host           string      // "" for app.test
	fields         [][2]string // sent on every front
	hopByHop       [][2]string // HTTP/1.1 only: HTTP/2 has no such fields (warmpool drops them)
	body           string
	unframed       bool // HTTP/1.1: chunked; HTTP/2: no content-length
}

func (lr logicalRequest) http1() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", lr.method, lr.target, lr.authority())
	for _, f := range append(append([][2]string{}, lr.fields...), lr.hopByHop...) {
		fmt.Fprintf(&b, "%s: %s\r\n", f[0], f[1])
	}
	switch {
	case lr.unframed:
		fmt.Fprintf(&b, "Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(lr.body), lr.body)
	case lr.body != "" || lr.method == "POST":
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(lr.body), lr.body)
	default:
		b.WriteString("\r\n")
	}
	return b.String()
}

func (lr logicalRequest) http2() h2Request {
	req := h2Request{fields: [][2]string{{":method", lr.method}, {":scheme", "https"}, {":authority", lr.authority()}, {":path", lr.target}}}
	for _, f := range lr.fields {
		req.fields = append(req.fields, [2]string{strings.ToLower(f[0]), f[1]})
	}
	if lr.body != "" || lr.method == "POST" {
		req.body, req.hasBody = []byte(lr.body), true
		if !lr.unframed {
			req.fields = append(req.fields, [2]string{"content-length", fmt.Sprint(len(lr.body))})
		}
	}
	return req
}

func (lr logicalRequest) authority() string {
	if lr.host == "" {
		return "app.test"
	}
	return lr.host
}

// frontView is both ends of one exchange, normalised where fronts rightly differ.
type frontView struct {
	Worker  map[string]any // /echo: the request as the worker parsed it
	Proto   string         // the worker's X-Forwarded-Proto, compared on its own
	Status  int
	Interim []int
	Header  http.Header
	Body    string
	Trailer http.Header
}

var requestIDs = regexp.MustCompile(`request id [0-9a-f]{16}`)

func (v *frontView) normalise() {
	for _, k := range []string{"Date", "Content-Length", "Transfer-Encoding", "Connection", "X-Request-Index", "X-Cold",
		"X-Worker-Id", "X-Worker-Pid", "X-Warmups-Seen", "X-Worker-Generation", "X-Notified-Before-Warmup"} {
		v.Header.Del(k)
	}
	if len(v.Trailer) == 0 {
		v.Trailer = nil
	}
	v.Body = requestIDs.ReplaceAllString(v.Body, "request id *")
	if v.Status != 200 || !strings.HasPrefix(v.Body, "{") {
		return
	}
	if err := json.Unmarshal([]byte(v.Body), &v.Worker); err != nil {
		return
	}
	v.Body = ""
	delete(v.Worker, "env")
	delete(v.Worker, "proto")
	if h, ok := v.Worker["header"].(map[string]any); ok {
		if p, ok := h["X-Forwarded-Proto"].([]any); ok && len(p) == 1 {
			v.Proto, _ = p[0].(string)
		}
		delete(h, "X-Forwarded-Proto")
	}
}

func viewHTTP1(t *testing.T, c *rawConn, lr logicalRequest) frontView {
	t.Helper()
	c.send(lr.http1())
	var v frontView
	for {
		resp, err := http.ReadResponse(c.br, &http.Request{Method: lr.method})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode < 200 {
			v.Interim = append(v.Interim, resp.StatusCode)
			continue
		}
		v.Status, v.Header, v.Body, v.Trailer = resp.StatusCode, resp.Header, string(body), resp.Trailer
		v.normalise()
		return v
	}
}

func viewHTTP2(t *testing.T, c *h2Conn, lr logicalRequest) frontView {
	t.Helper()
	resp := c.do(lr.http2())
	if resp.reset != 0 {
		t.Fatalf("HTTP/2 stream reset: %v", resp.reset)
	}
	v := frontView{Status: resp.status, Interim: resp.interim, Header: canonical(resp.header), Body: string(resp.body), Trailer: canonical(resp.trailer)}
	v.normalise()
	return v
}

func TestEveryFrontAgrees(t *testing.T) {
	q := raw
	requests := []logicalRequest{
		{method: "GET", target: "/echo?a=1&b=%20x", fields: [][2]string{{"User-Agent", "diff"}, {"Accept", "*/*"}, {"X-Custom", "one"},
			{"X-Custom", "two"}, {"X-Forwarded-For", "203.0.113.9"}, {"X-Forwarded-Proto", "http"}, {"Forwarded", "for=1.2.3.4"},
			{"X_Underscore", "1"}, {"X-Warmpool-Warmup", "1"}, {"Proxy-Authorization", "secret"}, {"Te", "trailers"},
			{"Upgrade-Insecure-Requests", "1"}, {"Cookie", "a=1"}},
			hopByHop: [][2]string{{"Connection", "keep-alive"}, {"Keep-Alive", "timeout=5"}, {"Proxy-Connection", "keep-alive"}, {"Trailer", "X-T"}}},
		{method: "POST", target: "/echo", fields: [][2]string{{"Content-Type", "text/plain"}}, body: "hello world"},
		{method: "POST", target: "/echo", body: "a body with no length", unframed: true},
		{method: "POST", target: "/echo", body: strings.Repeat("b", 3000)},
		{method: "POST", target: "/echo"},
		{method: "HEAD", target: "/echo"},
		{method: "GET", target: "/echo", host: "app.test:8080"},
		{method: "GET", target: q("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\n" +
			"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 42\r\nSet-Cookie: a=b\r\n\r\n")},
		{method: "GET", target: "/empty"},
		{method: "GET", target: q("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 10\r\n\r\n")},
		{method: "GET", target: "/big?bytes=200000"},
		{method: "GET", target: q("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")},
		{method: "GET", target: q("HTTP/1.1 201 Created\r\nX-A: 1\r\nConnection: close, X-B\r\nX-B: hop\r\nKeep-Alive: timeout=1\r\n" +
			"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 3\r\n\r\nabc")},
		{method: "GET", target: q("HTTP/1.1 20 OK\r\n\r\n")}, // malformed: 502, with no worker output
		{method: "GET", target: "/sleep?ms=1500"},
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	for _, set := range []struct {
		name string
		opts Options
	}{
		{"defaults", Options{}},
		{"max_body_size 1000", Options{MaxBodySize: 1000}},
		{"trusted proxies, underscores passed", Options{TrustedProxies: trusted, PassUnderscoreHeaders: true}},
		{"request timeout 1s, harakiri 3s", Options{RequestTimeout: time.Second, Harakiri: 3 * time.Second}},
		{"responses buffered", Options{MaxBufferedResponse: 1 << 20}},
	} {
		t.Run(set.name, func(t *testing.T) {
			e := startFronts(t, 8, set.opts)
			for _, lr := range requests {
				if lr.target == "/sleep?ms=1500" && set.opts.RequestTimeout == 0 {
					continue // 1.5 s of nothing to compare under the 10 s default
				}
				name := lr.method + " " + lr.target
				if len(name) > 40 {
					name = name[:40]
				}
				t.Run(name, func(t *testing.T) {
					views := map[string]frontView{
						"plain":        viewHTTP1(t, e.dial(), lr),
						"TLS HTTP/1.1": viewHTTP1(t, e.dialTLS1(), lr),
					}
					views["HTTP/2"] = viewHTTP2(t, e.dialH2(), lr)
					wantProto := map[string]string{"plain": "", "TLS HTTP/1.1": "https", "HTTP/2": "https"}
					if len(set.opts.TrustedProxies) > 0 && hasField(lr.fields, "X-Forwarded-Proto") {
						wantProto = map[string]string{"plain": "http", "TLS HTTP/1.1": "http", "HTTP/2": "http"}
					}
					if msg := expected(lr, set.opts, views["plain"]); msg != "" {
						t.Errorf("plain: %s: %+v", msg, views["plain"])
					}
					names := make([]string, 0, len(views))
					for n := range views {
						names = append(names, n)
					}
					sort.Strings(names)
					for _, n := range names {
						v := views[n]
						if v.Worker != nil && v.Proto != wantProto[n] {
							t.Errorf("%s: the worker's X-Forwarded-Proto is %q, want %q", n, v.Proto, wantProto[n])
						}
						v.Proto = ""
						if w := views["plain"]; n != "plain" {
							w.Proto = ""
							if !reflect.DeepEqual(v, w) {
								t.Errorf("%s differs from plain:\n%s: %+v\nplain: %+v", n, n, v, w)
							}
						}
					}
				})
			}
		})
	}
}

// expected checks what the agreed outcome must be, so that agreement is not agreement on a
// failure: "" if it is right.
func expected(lr logicalRequest, opts Options, v frontView) string {
	switch {
	case lr.target == "/sleep?ms=1500":
		if v.Status != http.StatusGatewayTimeout {
			return "want 504 past the request timeout"
		}
	case opts.MaxBodySize > 0 && int64(len(lr.body)) > opts.MaxBodySize:
		if v.Status != http.StatusRequestEntityTooLarge {
			return "want 413 over max_body_size"
		}
	case strings.HasPrefix(lr.target, "/echo") && lr.method != "HEAD":
		if v.Status != 200 || v.Worker == nil || v.Worker["body"] != lr.body || v.Worker["method"] != lr.method {
			return "want the worker's echo of the request"
		}
	case strings.Contains(lr.target, "Early"):
		if !reflect.DeepEqual(v.Interim, []int{103}) || v.Trailer.Get("X-Sum") != "42" || v.Trailer.Get("Set-Cookie") != "" || v.Body != "hello" {
			return "want 103, the body and the X-Sum trailer alone"
		}
	case strings.Contains(lr.target, "20+OK"):
		if v.Status != http.StatusBadGateway || v.Body != "warmpool: the worker failed before answering (request id *)\n" {
			return "want a 502 without the worker's output"
		}
	}
	return ""
}

func hasField(fields [][2]string, name string) bool {
	for _, f := range fields {
		if strings.EqualFold(f[0], name) {
			return true
		}
	}
	return false
}

// credentialsSeen records, per request target, whether the front said it carried credentials.
type credentialsSeen struct {
	mu  sync.Mutex
	got map[string]bool
}

func (c *credentialsSeen) ObserveRequest(r *telemetry.Request) {
	if !r.FirstRequests {
		return
	}
	c.mu.Lock()
	c.got[r.Path+"?"+string(r.Query)] = r.Credentials
	c.mu.Unlock()
}

// Every front tells the learner alike whether a new worker's request carried credentials
// (learn.IsCredentialHeader): one that did is never learned as a warm-up request.
func TestEveryFrontMarksRequestsWithCredentials(t *testing.T) {
	rec := &credentialsSeen{got: map[string]bool{}}
	e := startFronts(t, 8, Options{Observer: rec, ColdWindow: 1 << 30})
	cases := []struct {
		field [2]string
		want  bool
	}{
		{[2]string{"Accept", "*/*"}, false},
		{[2]string{"Cookie", "sessionid=1"}, true},
		{[2]string{"Authorization", "Bearer x"}, true},
		{[2]string{"Proxy-Authorization", "Basic eA=="}, true},
		{[2]string{"X-Api-Key", "k"}, true},
		{[2]string{"X-Auth-Token", "t"}, true},
	}
	for i, c := range cases {
		lr := logicalRequest{method: "GET", target: fmt.Sprintf("/echo?case=%d", i), fields: [][2]string{c.field}}
		for front, send := range map[string]func(){
			"plain":        func() { viewHTTP1(t, e.dial(), lr) },
			"plain 1.0":    func() { c := e.dial(); c.send(strings.Replace(lr.http1(), "HTTP/1.1", "HTTP/1.0", 1)); c.read("GET") },
			"TLS HTTP/1.1": func() { viewHTTP1(t, e.dialTLS1(), lr) },
			"HTTP/2":       func() { viewHTTP2(t, e.dialH2(), lr) },
		} {
			rec.mu.Lock()
			clear(rec.got)
			rec.mu.Unlock()
			send()
			key := "/echo?" + strings.TrimPrefix(lr.target, "/echo?")
			waitFor(t, func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); _, ok := rec.got[key]; return ok })
			rec.mu.Lock()
			got := rec.got[key]
			rec.mu.Unlock()
			if got != c.want {
				t.Errorf("%s, %s: credentials %v, want %v", front, c.field[0], got, c.want)
			}
		}
	}
}
