package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"warmpool/internal/telemetry"
	"warmpool/internal/worker"
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
	wc, err := e.w.Dial(ctx)
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

// statuses records the status of every finished request.
type statuses struct {
	mu  sync.Mutex
	got []int
}

func (s *statuses) ObserveRequest(r *telemetry.Request) {
	s.mu.Lock()
	s.got = append(s.got, r.Status)
	s.mu.Unlock()
}

func (s *statuses) has(status int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.got, status)
}

// What a client sends that warmpool must answer itself, at once, without a worker: each case
// is the bytes in and the status out. The worker's request index afterwards shows that none
// of them reached it.
func TestHostileRequestsAreAnsweredWithoutAWorker(t *testing.T) {
	e := startLean(t, 4, Options{ClientBodyTimeout: 300 * time.Millisecond, MaxBodySize: 1 << 20})
	for _, tc := range []struct {
		name, request string
		status        int
		within        time.Duration
		headOnly      bool // the rest may be cut: the server closes with the head unread
	}{
		{"PRI, an HTTP/2 preface on the HTTP/1.1 port", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", http.StatusHTTPVersionNotSupported, time.Second, false},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", http.StatusMethodNotAllowed, time.Second, false},
		{"a bad percent-escape in the path", "GET /%0X0000 HTTP/1.1\r\nHost: app.test\r\n\r\n", http.StatusBadRequest, time.Second, false},
		{"a head just over max_header_bytes", "GET / HTTP/1.1\r\nHost: app.test\r\nCookie: " + strings.Repeat("c", 32<<10) + "\r\n\r\n",
			http.StatusRequestHeaderFieldsTooLarge, time.Second, true},
		{"a malformed chunked body", "POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
			http.StatusBadRequest, time.Second, false},
		{"a Content-Length over max_body_size", "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2097152\r\n\r\nabc",
			http.StatusRequestEntityTooLarge, time.Second, false},
		{"a chunked body that grows over max_body_size", "POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strings.Repeat("10000\r\n"+strings.Repeat("x", 1<<16)+"\r\n", 17), http.StatusRequestEntityTooLarge, 2 * time.Second, false},
		{"a small body that stalls (lean path)", "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\n0123456789",
			http.StatusRequestTimeout, 2 * time.Second, false},
		{"a large body that stalls (net/http)", "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000\r\n\r\n0123456789",
			http.StatusRequestTimeout, 2 * time.Second, false},
		{"a chunked body that stalls (net/http)", "POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
			http.StatusRequestTimeout, 2 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial()
			start := time.Now()
			c.send(tc.request)
			var resp *http.Response
			var body string
			if tc.headOnly {
				var err error
				if resp, err = http.ReadResponse(c.br, nil); err != nil {
					t.Fatal(err)
				}
			} else {
				resp, body = c.read("POST")
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d %q, want %d", resp.StatusCode, body, tc.status)
			}
			if took := time.Since(start); took > tc.within {
				t.Fatalf("answered after %s, want within %s", took, tc.within)
			}
		})
	}
	c := e.dial()
	c.send(get("/"))
	if resp, _ := c.read("GET"); resp.Header.Get("X-Request-Index") != "1" {
		t.Fatalf("the worker's request index is %s: a hostile request reached it", resp.Header.Get("X-Request-Index"))
	}
}

// A request line ended by LF alone gets an answer at once (net/http reads it, as nginx does),
// not a wait for a CRLF that never comes.
func TestBareLFRequestIsAnsweredAtOnce(t *testing.T) {
	e := startLean(t, 4, Options{})
	c := e.dial()
	start := time.Now()
	c.send("GET / HTTP/1.1\nHost: app.test\n\n")
	if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "ok\n" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("answered after %s", took)
	}
}

// Clients that upload slowly, on either path, hold no worker slot: eight of them against a
// worker with four slots, and a plain request is served at once.
func TestSlowUploadsHoldNoWorker(t *testing.T) {
	e := startLean(t, 4, Options{})
	for i := range 8 {
		slow := e.dial()
		if i%2 == 0 {
			slow.send("POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n")
		} else {
			slow.send("POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("x", 70000))
		}
	}
	c := e.dial()
	start := time.Now()
	c.send(get("/"))
	if resp, _ := c.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("plain request: %d", resp.StatusCode)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("plain request waited %s behind slow uploads", took)
	}
	if n := e.inFlight(); n != 0 {
		t.Fatalf("%d worker slots held by slow uploads", n)
	}
}

// A client that hangs up while its request waits is recorded as 499, not as a 5xx.
func TestClientHangUpIsRecorded499(t *testing.T) {
	for _, way := range []struct{ name, proto string }{{"lean", "HTTP/1.1"}, {"net/http", "HTTP/1.0"}} {
		t.Run(way.name, func(t *testing.T) {
			rec := &statuses{}
			e := startLean(t, 1, Options{Observer: rec})
			busy := e.dial()
			busy.send(get("/sleep?ms=300"))
			waitFor(t, func() bool { return e.inFlight() == 1 })
			gone := e.dial()
			gone.send("GET / " + way.proto + "\r\nHost: app.test\r\n\r\n")
			waitFor(t, func() bool { return e.srv.front.bal.Queued() == 1 })
			gone.nc.Close()
			waitFor(t, func() bool { return rec.has(StatusClientClosedRequest) })
			if rec.has(http.StatusBadGateway) {
				t.Fatalf("recorded %v", rec.got)
			}
			busy.read("GET")
		})
	}
}

// waitWithin fails the test unless cond holds within d.
func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A client that leaves while its request is with a worker lets the worker go within a second
// on either path (the worker's connection is closed, so the worker learns it too), whether the
// worker is still working or streaming the response; it is recorded as 499.
func TestClientThatLeavesReleasesItsWorker(t *testing.T) {
	for _, way := range []struct{ name, proto string }{{"lean", "HTTP/1.1"}, {"net/http", "HTTP/1.0"}} {
		for _, target := range []string{"/sleep?ms=8000", "/stream"} {
			t.Run(way.name+target, func(t *testing.T) {
				rec := &statuses{}
				e := startLean(t, 1, Options{Observer: rec})
				c := e.dial()
				c.send("GET " + target + " " + way.proto + "\r\nHost: app.test\r\n\r\n")
				if target == "/stream" {
					if _, err := http.ReadResponse(c.br, nil); err != nil { // the head and the first line came
						t.Fatal(err)
					}
				} else {
					waitFor(t, func() bool { return e.inFlight() == 1 })
				}
				c.nc.Close()
				waitWithin(t, 2*time.Second, "worker released", func() bool { return e.inFlight() == 0 })
				if target != "/stream" {
					waitWithin(t, time.Second, "recorded 499", func() bool { return rec.has(StatusClientClosedRequest) })
				}
				next := e.dial()
				next.send(get("/"))
				if resp, _ := next.read("GET"); resp.StatusCode != 200 {
					t.Fatalf("next request: %d", resp.StatusCode)
				}
			})
		}
	}
}

// With harakiri above the request timeout, a client that leaves does not free its worker's
// slot: the worker is still busy with the request, so the slot stays taken until it answers
// or passes the hard limit, and is then reported stuck; on either path.
func TestHarakiriHoldsTheSlotAfterTheClientLeft(t *testing.T) {
	for _, way := range []struct{ name, proto string }{{"lean", "HTTP/1.1"}, {"net/http", "HTTP/1.0"}} {
		t.Run(way.name, func(t *testing.T) {
			stuck := make(chan *worker.Worker, 1)
			e := startLean(t, 1, Options{RequestTimeout: 400 * time.Millisecond, Harakiri: 1200 * time.Millisecond,
				OnStuck: func(w *worker.Worker) { stuck <- w }})
			c := e.dial()
			c.send("GET /hang " + way.proto + "\r\nHost: app.test\r\n\r\n")
			waitFor(t, func() bool { return e.inFlight() == 1 })
			c.nc.Close()
			select {
			case <-stuck:
				t.Fatal("reported stuck before the harakiri limit")
			case <-time.After(700 * time.Millisecond): // past the request timeout, before the hard limit
			}
			if e.inFlight() != 1 {
				t.Fatalf("the slot was given back while the worker still runs the request (in flight %d)", e.inFlight())
			}
			select {
			case w := <-stuck:
				if w != e.w {
					t.Fatalf("reported worker %d", w.ID())
				}
			case <-time.After(5 * time.Second):
				t.Fatal("never reported stuck")
			}
			waitFor(t, func() bool { return e.inFlight() == 0 })
		})
	}
}

// A connection that sends nothing is closed at the head's timeout, not kept for the idle
// timeout of a connection between requests; one that sent a request gets the idle timeout.
func TestSilentConnectionIsClosedAtTheHeadTimeout(t *testing.T) {
	e := startLeanWith(t, 4, Options{}, func(s *http.Server) { s.ReadHeaderTimeout = 300 * time.Millisecond })
	silent := e.dial()
	start := time.Now()
	if _, err := silent.br.ReadByte(); err != io.EOF {
		t.Fatalf("silent connection: %v, want EOF", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("closed after %s; the head timeout is 300ms", took)
	}
	served := e.dial()
	served.send(get("/"))
	served.read("GET")
	served.nc.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := served.br.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection between requests: %v, want it still open after 1s", err)
	}
}

// A client that reads its response slowly does not hold the worker: the response is buffered
// (in memory, then a temporary file) and the worker released once it has sent it; the client
// still gets every byte, in order. On either path.
func TestSlowReaderDoesNotHoldItsWorker(t *testing.T) {
	const size = 16 << 20
	for _, way := range []struct{ name, proto string }{{"lean", "HTTP/1.1"}, {"net/http", "HTTP/1.0"}} {
		t.Run(way.name, func(t *testing.T) {
			e := startLean(t, 1, Options{MaxBufferedResponse: 1 << 30})
			d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			}}
			slow, err := d.Dial("tcp", e.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer slow.Close()
			slow.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprintf(slow, "GET /big?bytes=%d %s\r\nHost: app.test\r\n\r\n", size, way.proto)
			br := bufio.NewReaderSize(slow, 1024)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("slow client's head: %v %v", resp, err)
			}
			// The client reads nothing more; the worker must be free all the same.
			waitWithin(t, 10*time.Second, "worker released while the client has not read", func() bool { return e.inFlight() == 0 })
			c := e.dial()
			c.send(get("/"))
			if resp, _ := c.read("GET"); resp.StatusCode != 200 {
				t.Fatalf("next request: %d", resp.StatusCode)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			if err != nil || n != size {
				t.Fatalf("slow client got %d of %d bytes: %v", n, size, err)
			}
		})
	}
}
