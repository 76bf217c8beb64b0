package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// exchangeView is what one request looked like at both ends: the request as the worker parsed
// it (for /echo), and the response as the client parsed it.
type exchangeView struct {
	Worker   map[string]any
	Status   int
	Header   http.Header
	Length   int64
	Chunked  bool
	Body     string
	Trailer  http.Header
	ReadFail string
}

// The lean path and the net/http fallback must agree: the same bytes sent to each give the
// worker the same request (method, target, Host, every field and value, body) and the client
// the same response (status, fields but Date, framing, body, trailers).
func TestLeanAndFallbackAgree(t *testing.T) {
	var handoffs atomic.Int32
	e := startLean(t, 4, Options{OnHandoff: func(string) { handoffs.Add(1) }})
	fallback := httptest.NewServer(e.srv.front) // net/http in front of the same Front and worker
	t.Cleanup(fallback.Close)
	fallbackAddr := strings.TrimPrefix(fallback.URL, "http://")
	raw := func(response string) string { return "/raw?b=" + url.QueryEscape(response) }
	cases := []struct{ name, method, request string }{
		{"fields, hop-by-hop and spoofed ones", "GET", "GET /echo?a=1&b=%20x HTTP/1.1\r\nHost: app.test\r\nUser-Agent: diff\r\nAccept: */*\r\n" +
			"X-Custom: one\r\nX-Custom: two\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTE: trailers, deflate\r\n" +
			"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nForwarded: for=1.2.3.4\r\nX_Underscore: 1\r\n" +
			"X-Warmpool-Warmup: 1\r\nProxy-Authorization: secret\r\nProxy-Connection: keep-alive\r\nTrailer: X-T\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"},
		{"a body with its length", "POST", "POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"},
		{"an empty body with a length", "POST", "POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n"},
		{"HEAD", "HEAD", "HEAD /echo HTTP/1.1\r\nHost: app.test\r\n\r\n"},
		{"Host with a port", "GET", "GET /echo HTTP/1.1\r\nHost: app.test:8080\r\n\r\n"},
		{"chunked response with a trailer", "GET", "GET /trailer HTTP/1.1\r\nHost: app.test\r\n\r\n"},
		{"204", "GET", "GET /empty HTTP/1.1\r\nHost: app.test\r\n\r\n"},
		{"a large body", "GET", "GET /big?bytes=200000 HTTP/1.1\r\nHost: app.test\r\n\r\n"},
		{"hop-by-hop response fields", "GET", "GET " + raw("HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: close, X-B\r\nX-B: hop\r\nKeep-Alive: timeout=1\r\nProxy-Authenticate: x\r\nContent-Length: 3\r\n\r\nabc") + " HTTP/1.1\r\nHost: app.test\r\n\r\n"},
		{"repeated response fields", "GET", "GET " + raw("HTTP/1.1 201 Created\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n") + " HTTP/1.1\r\nHost: app.test\r\n\r\n"},
		{"a body until close", "GET", "GET " + raw("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end") + " HTTP/1.1\r\nHost: app.test\r\n\r\n"},
		{"an HTTP/1.0 response", "GET", "GET " + raw("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok") + " HTTP/1.1\r\nHost: app.test\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lean := viewOf(t, e.addr, tc.method, tc.request)
			if handoffs.Load() != 0 {
				t.Fatalf("the lean path handed the request to net/http; the comparison would be of one path with itself")
			}
			viaFallback := viewOf(t, fallbackAddr, tc.method, tc.request)
			if !reflect.DeepEqual(lean, viaFallback) {
				t.Errorf("the paths differ:\nlean:     %+v\nfallback: %+v", lean, viaFallback)
			}
		})
	}
}

// viewOf sends request on a new connection to addr and describes both ends of the exchange.
func viewOf(t *testing.T, addr, method, request string) exchangeView {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	v := exchangeView{Status: resp.StatusCode, Header: resp.Header.Clone(), Length: resp.ContentLength,
		Chunked: len(resp.TransferEncoding) > 0, Body: string(body), Trailer: resp.Trailer}
	if err != nil {
		v.ReadFail = err.Error()
	}
	v.Header.Del("Date")
	if strings.HasPrefix(request, "GET /echo") || strings.HasPrefix(request, "POST /echo") {
		v.Worker = map[string]any{}
		if err := json.Unmarshal(body, &v.Worker); err != nil {
			t.Fatalf("echo: %v %q", err, body)
		}
		v.Body = ""
		v.Header.Del("Content-Length") // the JSON's size varies with what it echoes
		v.Length = 0
		v.Header.Del("X-Request-Index")
		delete(v.Worker, "env")
		if h, ok := v.Worker["header"].(map[string]any); ok {
			keys := make([]string, 0, len(h))
			for k := range h {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			v.Worker["header names"] = keys
		}
	}
	v.Header.Del("X-Request-Index")
	v.Header.Del("X-Cold") // the worker's first request is cold, whichever path it came by
	return v
}
