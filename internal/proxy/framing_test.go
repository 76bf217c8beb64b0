package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Hostile framing on every front, bytes in and outcome out: what a request says of its body is
// decided once (framing.go), and no body byte ever reaches a worker without its length.

// echoOf decodes the test worker's /echo answer.
func echoOf(t testing.TB, body string) (echo struct {
	URI, Body, Method string
	ContentLength     int64 `json:"content_length"`
	Header            http.Header
}) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), &echo); err != nil {
		t.Fatalf("echo: %v %q", err, body)
	}
	return echo
}

// An HTTP/2 request whose body comes without content-length (any h2 client streaming a body,
// curl --http2 -H 'Transfer-Encoding: chunked') reaches the worker whole, with its length. It
// used to reach it with none, its bytes left on the pooled worker connection to become the
// start of the next client's request: here, a request line of the attacker's choosing that
// swallows the next client's request line.
func TestHTTP2BodyWithoutLengthReachesTheWorkerWhole(t *testing.T) {
	e := startFronts(t, 1, Options{}) // one slot: every request goes on the same worker connection
	smuggled := "GET /echo?attacker HTTP/1.1\r\nX-Swallow: "
	for _, body := range []string{"hello", smuggled, strings.Repeat("b", 200<<10)} {
		c := e.dialH2()
		resp := c.do(h2Request{fields: [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "app.test"}, {":path", "/echo"}},
			body: []byte(body), hasBody: true})
		if resp.status != 200 {
			t.Fatalf("POST without content-length: %d %q", resp.status, resp.body)
		}
		echo := echoOf(t, string(resp.body))
		if echo.Body != body || echo.ContentLength != int64(len(body)) {
			t.Fatalf("the worker got %d bytes (content length %d), want %d", len(echo.Body), echo.ContentLength, len(body))
		}
		// The next client, on each front, gets its own request answered.
		for _, next := range []func() *rawConn{e.dial, e.dialTLS1} {
			nc := next()
			nc.send("GET /echo?victim HTTP/1.1\r\nHost: app.test\r\nCookie: sid=victim\r\n\r\n")
			resp, body := nc.read("GET")
			if echo := echoOf(t, body); resp.StatusCode != 200 || echo.URI != "/echo?victim" || echo.Header.Get("X-Swallow") != "" {
				t.Fatalf("the next client got another request's answer: %d %+v", resp.StatusCode, echo)
			}
		}
		if resp := c.do(h2Get("/echo?victim")); resp.status != 200 || echoOf(t, string(resp.body)).URI != "/echo?victim" {
			t.Fatalf("the next HTTP/2 request got another's answer: %d %q", resp.status, resp.body)
		}
	}
	// A stream its headers end has no body, and the worker's request no length.
	c := e.dialH2()
	resp := c.do(h2Get("/echo"))
	if echo := echoOf(t, string(resp.body)); echo.ContentLength != 0 || echo.Header.Get("Content-Length") != "" {
		t.Fatalf("a GET without body: %+v", echo)
	}
	// A declared empty body keeps its length: 0.
	resp = c.do(h2Request{fields: [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "app.test"}, {":path", "/echo"}}, hasBody: true})
	if echo := echoOf(t, string(resp.body)); resp.status != 200 || echo.Header.Get("Content-Length") != "0" {
		t.Fatalf("an empty body: %d %+v", resp.status, echo)
	}
}

// proxy.max_body_size holds on every front, for a Content-Length body of any size: on the
// plain path those up to 64 KiB used to reach the worker.
func TestMaxBodySizeHoldsOnEveryFront(t *testing.T) {
	e := startFronts(t, 4, Options{MaxBodySize: 16 << 10})
	for _, size := range []int{16<<10 + 1, 32 << 10, 60000, 100000} {
		body := strings.Repeat("x", size)
		head := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\n\r\n", size)
		for name, dial := range map[string]func() *rawConn{"plain": e.dial, "TLS HTTP/1.1": e.dialTLS1} {
			c := dial()
			c.send(head + body)
			if resp, got := c.read("POST"); resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(got, "max_body_size") {
				t.Errorf("%s, %d bytes: %d %q", name, size, resp.StatusCode, got)
			}
		}
		for _, withLength := range []bool{true, false} {
			fields := [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "app.test"}, {":path", "/upload"}}
			if withLength {
				fields = append(fields, [2]string{"content-length", fmt.Sprint(size)})
			}
			if resp := e.dialH2().do(h2Request{fields: fields, body: []byte(body), hasBody: true}); resp.status != http.StatusRequestEntityTooLarge {
				t.Errorf("HTTP/2 (content-length %v), %d bytes: %d %q", withLength, size, resp.status, resp.body)
			}
		}
	}
	// At the limit, a body passes everywhere.
	body := strings.Repeat("x", 16<<10)
	c := e.dial()
	c.send(fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	if resp, got := c.read("POST"); resp.StatusCode != 200 || got != fmt.Sprintln(len(body)) {
		t.Fatalf("a body at the limit: %d %q", resp.StatusCode, got)
	}
	c = e.dial()
	c.send(get("/"))
	if resp, _ := c.read("GET"); resp.Header.Get("X-Request-Index") != "2" {
		t.Fatalf("the worker's request index is %s: a body over the limit reached it", resp.Header.Get("X-Request-Index"))
	}
}

// Framing the README promises to refuse is refused on every path that could see it: both
// Content-Length and Transfer-Encoding, or Transfer-Encoding in HTTP/1.0, whether the lean
// path or net/http (over TLS, or after a handoff) reads the head; HTTP/2 with content-length
// fields that disagree.
func TestConflictingFramingIsRefusedOnEveryPath(t *testing.T) {
	e := startFronts(t, 4, Options{})
	const clte = "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /echo?smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n"
	const te10 = "POST /upload HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	handedOff := "GET / HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n" // net/http reads what follows
	cases := []struct {
		name    string
		dial    func() *rawConn
		prelude string // sent and answered first
		request string
	}{
		{"plain, lean path", e.dial, "", clte},
		{"plain, HTTP/1.0 with Transfer-Encoding", e.dial, "", te10},
		{"plain, after an HTTP/1.0 keep-alive handoff", e.dial, handedOff, clte},
		{"plain, HTTP/1.0 with Transfer-Encoding after a handoff", e.dial, handedOff, te10},
		{"plain, Transfer-Encoding before Content-Length, bare LF", e.dial, handedOff, "POST /upload HTTP/1.1\nHost: app.test\nTransfer-Encoding: chunked\nContent-Length: 5\n\n0\r\n\r\n"},
		{"TLS HTTP/1.1", e.dialTLS1, "", clte},
		{"TLS HTTP/1.1, HTTP/1.0 with Transfer-Encoding", e.dialTLS1, "", te10},
		{"TLS HTTP/1.1, after a request on the connection", e.dialTLS1, get("/"), clte},
		{"TLS HTTP/1.1, after a chunked upload", e.dialTLS1, "POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", clte},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.dial()
			if tc.prelude != "" {
				c.send(tc.prelude)
				if resp, body := c.read("GET"); resp.StatusCode != 200 {
					t.Fatalf("prelude: %d %q", resp.StatusCode, body)
				}
			}
			c.send(tc.request)
			resp, body := c.read("POST")
			if resp.StatusCode != http.StatusBadRequest || !resp.Close {
				t.Fatalf("got %d %q (close %v), want 400 and the connection closed", resp.StatusCode, body, resp.Close)
			}
			c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
			if rest, err := c.br.ReadString(0); !errClosed(err) || rest != "" {
				t.Fatalf("after the refusal: %q %v", rest, err)
			}
		})
	}
	// HTTP/2: content-length fields that disagree.
	resp := e.dialH2().do(h2Request{fields: [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "app.test"}, {":path", "/upload"},
		{"content-length", "3"}, {"content-length", "30"}}, body: []byte("abc"), hasBody: true})
	if resp.status != http.StatusBadRequest && resp.reset == 0 {
		t.Fatalf("HTTP/2 with content-length 3 and 30: %d %q", resp.status, resp.body)
	}
	// None of them reached the worker.
	c := e.dial()
	c.send(get("/"))
	if resp, _ := c.read("GET"); resp.Header.Get("X-Request-Index") != "6" { // the five preludes, and this
		t.Fatalf("the worker's request index is %s", resp.Header.Get("X-Request-Index"))
	}
}
