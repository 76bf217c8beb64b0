package proxy

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// FuzzHTTP2Request builds HTTP/2 requests from the fuzzer's bytes (a method, a field set with
// hop-by-hop and framing fields among others, a body with or without content-length, a wrong
// or second content-length, trailers, odd pseudo-headers) and holds what the worker receives
// to the rules: a request answered 200 reached the worker with exactly the body the client
// sent and its length, the same as the HTTP/1.1 rendering of that request gives it; one that
// was refused reached nothing; and the next request, on the same worker connection, is
// answered as itself. CI runs it bounded by a count of inputs.
func FuzzHTTP2Request(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{1, 0b11, 0, 2, 0, 3, 'a', 'b', 'c', 1, 1, 'x', 'b', 'o', 'd', 'y'})
	f.Add([]byte{1, 0b01, 0, 0, 'G', 'E', 'T', ' ', '/', 'x', ' ', 'H', 'T', 'T', 'P'})
	f.Add([]byte{1, 0b111, 0, 0, 'a', 'b'})
	f.Add([]byte{1, 0b1011, 0, 0, 'a', 'b'})
	f.Add([]byte{1, 0b10001, 0, 0, 'a'})
	f.Add([]byte{0, 0b100000, 3, 0})
	f.Add([]byte{0, 0b1000000, 0, 1, 9, 0})
	e := startFronts(f, 1, Options{MaxBodySize: 4096}) // one slot: one worker connection, reused
	f.Fuzz(func(t *testing.T, data []byte) {
		req, lr, ok := fuzzedRequest(data)
		if !ok {
			return
		}
		resp := e.dialH2For(t).do(req)
		if resp.status == http.StatusOK && lr.method != "HEAD" { // HEAD: no echo to read
			var echo struct {
				Method, URI, Body string
				BodySHA256        string `json:"body_sha256"`
				ContentLength     int64  `json:"content_length"`
				Header            http.Header
			}
			if err := json.Unmarshal(resp.body, &echo); err != nil {
				t.Fatalf("not the worker's echo: %q", resp.body)
			}
			if echo.BodySHA256 != fmt.Sprintf("%x", sha256.Sum256([]byte(lr.body))) || echo.ContentLength != int64(len(lr.body)) || echo.Method != lr.method {
				t.Fatalf("the worker got %s %q (content length %d), the client sent %s %q", echo.Method, echo.Body, echo.ContentLength, lr.method, lr.body)
			}
			for _, hop := range []string{"Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Connection"} {
				if echo.Header.Get(hop) != "" {
					t.Fatalf("%s reached the worker", hop)
				}
			}
			if hasField(lr.fields, "host") {
				return // HTTP/1.1 has one Host; HTTP/2 takes :authority (and the worker gets only that)
			}
			c := e.dialFor(t)
			h1 := viewHTTP1(t, c, lr)
			if h1.Status != http.StatusOK || h1.Worker["body_sha256"] != echo.BodySHA256 || h1.Worker["uri"] != echo.URI {
				t.Fatalf("the HTTP/1.1 rendering gave %+v; HTTP/2 gave %+v", h1, echo)
			}
		}
		// Whatever happened, the next client gets its own answer.
		next := e.dialFor(t)
		next.send("GET /echo?next HTTP/1.1\r\nHost: app.test\r\n\r\n")
		if r, body := next.read("GET"); r.StatusCode != 200 || !strings.Contains(body, `"uri":"/echo?next"`) {
			t.Fatalf("the next request got %d %q", r.StatusCode, body)
		}
	})
}

var fuzzMethods = []string{"GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH"}

var fuzzFields = []string{"x-a", "cookie", "te", "x-forwarded-for", "forwarded", "x_under", "content-type", "accept",
	"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "content-length", "host", "trailer"}

// fuzzedRequest reads an HTTP/2 request, and its HTTP/1.1 rendering, from data: a method, flags
// (bit 0: a body; 1: content-length; 2: a wrong one; 3: a second, different one; 4: trailers;
// 5: an odd pseudo-header; 6: fields from the table), fields (a name index, a value length, the
// value), then the body.
func fuzzedRequest(data []byte) (h2Request, logicalRequest, bool) {
	if len(data) < 4 {
		return h2Request{}, logicalRequest{}, false
	}
	method, flags, odd, nfields := fuzzMethods[int(data[0])%len(fuzzMethods)], data[1], data[2], int(data[3]%6)
	data = data[4:]
	lr := logicalRequest{method: method, target: "/echo"}
	req := h2Request{fields: [][2]string{{":method", method}, {":scheme", "https"}, {":authority", "app.test"}, {":path", "/echo"}}}
	if flags&(1<<5) != 0 {
		switch odd % 5 {
		case 0:
			req.fields = req.fields[:3] // no :path
		case 1:
			req.fields = append(req.fields, [2]string{":method", "GET"})
		case 2:
			req.fields = append(req.fields, [2]string{":unknown", "x"})
		case 3:
			req.fields = append([][2]string{{"x-first", "1"}}, req.fields...) // a field before the pseudo-headers
		case 4:
			req.fields = append(req.fields, [2]string{":protocol", "websocket"})
		}
	}
	for range nfields {
		if flags&(1<<6) == 0 || len(data) < 2 {
			break
		}
		name := fuzzFields[int(data[0])%len(fuzzFields)]
		n := min(int(data[1]%16), len(data)-2)
		value := string(data[2 : 2+n])
		data = data[2+n:]
		req.fields = append(req.fields, [2]string{name, value})
		lr.fields = append(lr.fields, [2]string{name, value})
	}
	if flags&1 != 0 {
		lr.body, req.body, req.hasBody = string(data), data, true
	}
	if flags&(1<<1) != 0 {
		cl := len(data)
		if flags&(1<<2) != 0 {
			cl++
		}
		req.fields = append(req.fields, [2]string{"content-length", fmt.Sprint(cl)})
		if flags&(1<<3) != 0 {
			req.fields = append(req.fields, [2]string{"content-length", fmt.Sprint(cl + 7)})
		}
	}
	if flags&(1<<4) != 0 {
		req.trailers = [][2]string{{"x-trailer", "t"}}
	}
	return req, lr, true
}
