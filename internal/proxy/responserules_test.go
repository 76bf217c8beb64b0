package proxy

import (
	"net/http"
	"reflect"
	"testing"
)

// Interim responses and trailers reach the client by one rule on every front: 103 Early Hints
// (and other 1xx) pass to HTTP/1.1 and HTTP/2 clients, with their fields, and not to HTTP/1.0
// ones; a worker's 100 Continue never does; trailer fields that may not be trailers
// (Content-Length, Set-Cookie, ...) are dropped. Plain HTTP/1.1 used to pass 1xx while TLS and
// HTTP/2 dropped them, and the HTTP/1.1 paths passed every trailer.
func TestInterimResponsesAndTrailersAgreeOnEveryFront(t *testing.T) {
	e := startFronts(t, 4, Options{})
	response := "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n0\r\n" +
		"X-Sum: 42\r\nContent-Length: 99\r\nSet-Cookie: sid=from-a-trailer\r\n\r\n"
	target := raw(response)
	type seen struct {
		interim []int
		link    string
		status  int
		body    string
		trailer http.Header
	}
	want := seen{interim: []int{103}, link: "</a.css>; rel=preload", status: 200, body: "hello", trailer: http.Header{"X-Sum": {"42"}}}
	viaHTTP1 := func(c *rawConn, proto string) seen {
		c.send("GET " + target + " " + proto + "\r\nHost: app.test\r\n\r\n")
		var s seen
		for {
			resp, body := c.read("GET")
			if resp.StatusCode < 200 {
				s.interim = append(s.interim, resp.StatusCode)
				s.link = resp.Header.Get("Link")
				continue
			}
			s.status, s.body, s.trailer = resp.StatusCode, body, resp.Trailer
			return s
		}
	}
	for name, got := range map[string]seen{
		"plain HTTP/1.1": viaHTTP1(e.dial(), "HTTP/1.1"),
		"TLS HTTP/1.1":   viaHTTP1(e.dialTLS1(), "HTTP/1.1"),
		"HTTP/2": func() seen {
			resp := e.dialH2().do(h2Get(target))
			return seen{interim: resp.interim, link: resp.hints.Get("link"), status: resp.status, body: string(resp.body),
				trailer: http.Header(map[string][]string(resp.trailer))}
		}(),
	} {
		if name == "HTTP/2" {
			got.trailer = canonical(got.trailer)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", name, got, want)
		}
	}
	// HTTP/1.0 clients get no interim response, and no trailers (no chunked encoding).
	got := viaHTTP1(e.dial(), "HTTP/1.0")
	if len(got.interim) != 0 || got.status != 200 || got.body != "hello" {
		t.Errorf("HTTP/1.0: %+v", got)
	}
}

// canonical is h with canonical field names (HTTP/2 sends them in lower case).
func canonical(h http.Header) http.Header {
	out := http.Header{}
	for k, vv := range h {
		for _, v := range vv {
			out.Add(k, v)
		}
	}
	return out
}
