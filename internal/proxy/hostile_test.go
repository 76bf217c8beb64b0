package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The hostile-input tests: bytes in from a client or a worker, the outcome out.

// attackResponse is what a sloppy worker leaks past its response: a whole response of its own,
// which a front that reuses the connection would give to the next client.
const attackResponse = "HTTP/1.1 200 OK\r\nSet-Cookie: sid=attacker\r\nContent-Length: 6\r\n\r\nevil!\n"

// A worker that sends more than its response's framing allows never gets those bytes to any
// client: the connection is closed, and the worker named in the log and counted. On each way
// a request takes (lean; net/http; net/http with harakiri), with a worker concurrency of 1 and 4.
func TestWorkerBytesPastTheResponseReachNoClient(t *testing.T) {
	q := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return "/extra?" + v.Encode()
	}
	cases := []struct {
		name, method, target string
		status               int
		body                 string
		late                 bool // the bytes come while the connection is idle, on /trigger
		counted              bool // the bytes are there when the response ends: the worker is reported
	}{
		{name: "HEAD answered with a body", method: "HEAD", target: q("status", "200", "cl", fmt.Sprint(len(attackResponse)), "body", attackResponse),
			status: 200, counted: true},
		{name: "HEAD answered with a body in a later write", method: "HEAD", target: q("status", "200", "body", attackResponse, "gap", "30"), status: 200},
		{name: "204 with a body", method: "GET", target: q("status", "204", "body", attackResponse), status: 204, counted: true},
		{name: "304 with a body in a later write", method: "GET", target: q("status", "304", "body", attackResponse, "gap", "30"), status: 304},
		{name: "body longer than its Content-Length", method: "GET", target: q("status", "200", "cl", "5", "body", "hello"+attackResponse),
			status: 200, body: "hello", counted: true},
		{name: "bytes sent while the connection is idle", method: "GET", target: q("status", "200", "cl", "5", "body", "hello", "late", attackResponse),
			status: 200, body: "hello", late: true, counted: true},
	}
	ways := []struct {
		name, proto string
		harakiri    bool
	}{{"lean", "HTTP/1.1", false}, {"net/http", "HTTP/1.0", false}, {"net/http with harakiri", "HTTP/1.0", true}}
	for _, concurrency := range []int{1, 4} {
		for _, way := range ways {
			var reported atomic.Int64
			opts := Options{OnProtocolError: func(reason string) {
				if reason == ProtocolBytesAfterResponse {
					reported.Add(1)
				}
			}}
			if way.harakiri {
				opts.RequestTimeout, opts.Harakiri = 10*time.Second, 20*time.Second
			}
			e := startLean(t, concurrency, opts)
			for _, tc := range cases {
				t.Run(fmt.Sprintf("%s/concurrency=%d/%s", way.name, concurrency, tc.name), func(t *testing.T) {
					before := reported.Load()
					c := e.dial()
					c.send(tc.method + " " + tc.target + " " + way.proto + "\r\nHost: app.test\r\n\r\n")
					resp, body := c.read(tc.method)
					if resp.StatusCode != tc.status || body != tc.body || resp.Header.Get("Set-Cookie") != "" {
						t.Fatalf("the sloppy response itself: %d %q %v", resp.StatusCode, body, resp.Header)
					}
					if tc.late {
						triggerLateBytes(t, e)
					}
					// Three rounds of requests on fresh connections, as many at once as the worker
					// takes: each gets its own response.
					for round := range 3 {
						var wg sync.WaitGroup
						for i := range concurrency {
							wg.Go(func() {
								c := e.dial()
								uri := fmt.Sprintf("/echo?round=%d&i=%d", round, i)
								c.send(get(uri))
								resp, body := c.read("GET")
								var echo struct{ URI string }
								json.Unmarshal([]byte(body), &echo)
								if resp.StatusCode != 200 || resp.Header.Get("Set-Cookie") != "" || echo.URI != uri {
									t.Errorf("round %d, client %d got another response: %d %v %q", round, i, resp.StatusCode, resp.Header, body)
								}
							})
						}
						wg.Wait()
					}
					if got := reported.Load() - before; tc.counted && got != 1 {
						t.Errorf("worker reported %d times, want 1", got)
					}
				})
			}
		}
	}
}

// triggerLateBytes asks the worker, on a connection of its own, to send the bytes an /extra
// response held back on its idle connection, and waits until they are sent.
func triggerLateBytes(t *testing.T, e *leanEnv) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wc, err := e.w.Conns().Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	io.WriteString(wc, "GET /trigger HTTP/1.1\r\nHost: app.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(wc), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("trigger: %v %v", resp, err)
	}
}
