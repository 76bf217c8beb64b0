package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseRequest(t *testing.T) {
	const ok = "GET /a?b=1 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent:  ua \t\r\nContent-Length: 5\r\nConnection: keep-alive, close\r\n\r\nhello"
	var r Request
	n, res := ParseRequest([]byte(ok), &r)
	if res != Complete || n != len(ok)-5 {
		t.Fatalf("got %v, n=%d", res, n)
	}
	if string(r.Method) != "GET" || string(r.Target) != "/a?b=1" || string(r.Path()) != "/a" || string(r.Host) != "example.com:8080" ||
		r.ContentLength != 5 || !r.Close || r.ConnectionOther || len(r.Fields) != 4 || string(r.Fields[1].Value) != "ua" {
		t.Fatalf("parsed %+v", r)
	}

	for _, tc := range []struct {
		name, head string
		want       Result
	}{
		{"no end yet", "GET / HTTP/1.1\r\nHost: a\r\n", Incomplete},
		{"nothing yet", "", Incomplete},
		{"request line only so far", "GET /x", Incomplete},
		{"TLS handshake on the cleartext port", "\x16\x03\x01\x02", Unsupported},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Unsupported},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\n\r\n", Unsupported},
		{"absolute form", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", Unsupported},
		{"asterisk form", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", Unsupported},
		{"CONNECT", "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", Unsupported},
		{"no host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", Unsupported},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Unsupported},
		{"host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Unsupported},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", Unsupported},
		{"obsolete folding", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", Unsupported},
		{"bare LF", "GET / HTTP/1.1\nHost: a\r\n\r\n", Unsupported},
		{"bare CR in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", Unsupported},
		{"NUL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", Unsupported},
		{"two different lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", Unsupported},
		{"signed length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", Unsupported},
		{"space in the target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", Unsupported},
		{"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", Unsupported},
		{"method not a token", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", Unsupported},
		{"version in lower case", "GET / http/1.1\r\nHost: a\r\n\r\n", Unsupported},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", Unsupported},
		{"chunked upload", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", Unsupported},
		{"length and chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", Smuggling},
		{"chunked and length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", Smuggling},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, res := ParseRequest([]byte(tc.head), &r); res != tc.want {
				t.Fatalf("got %v, want %v", res, tc.want)
			}
		})
	}
}

func TestParseRequestFlags(t *testing.T) {
	var r Request
	head := "POST /u HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nExpect: 100-continue\r\nConnection: Upgrade\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"
	if _, res := ParseRequest([]byte(head), &r); res != Complete {
		t.Fatal(res)
	}
	if !r.Upgrade || !r.Expect || !r.ConnectionOther || r.Close || r.ContentLength != 3 {
		t.Fatalf("flags %+v", r)
	}
}

func TestParseRequestAllocatesNothing(t *testing.T) {
	head := []byte("GET /api/orders?page=2 HTTP/1.1\r\nHost: app.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n")
	var r Request
	ParseRequest(head, &r)
	if allocs := testing.AllocsPerRun(100, func() { ParseRequest(head, &r) }); allocs != 0 {
		t.Fatalf("%.1f allocations", allocs)
	}
}

func readResponse(t *testing.T, raw string) (string, *Response, *bufio.Reader, error) {
	t.Helper()
	br := bufio.NewReaderSize(strings.NewReader(raw), 64)
	var r Response
	out, err := ReadResponse(br, &r, nil)
	return string(out), &r, br, err
}

func TestReadResponse(t *testing.T) {
	out, r, br, err := readResponse(t, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n"+
		"X-Secret: s\r\nContent-Length: 5\r\nDate: Thu, 26 Nov 2026 00:00:00 GMT\r\nTrailer: X-T\r\n\r\nhello")
	if err != nil {
		t.Fatal(err)
	}
	want := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Thu, 26 Nov 2026 00:00:00 GMT\r\n"
	if out != want || r.Status != 200 || r.ContentLength != 5 || r.Chunked || r.Close || !r.HasDate {
		t.Fatalf("got %q %+v", out, r)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "hello" {
		t.Fatalf("body left %q", rest)
	}

	out, r, _, err = readResponse(t, "HTTP/1.0 404\r\nContent-Length: 3\r\n\r\n")
	if err != nil || out != "HTTP/1.1 404 Not Found\r\n" || !r.Close || r.ContentLength != 3 {
		t.Fatalf("HTTP/1.0 without keep-alive: %q %+v %v", out, r, err)
	}
	if _, r, _, _ = readResponse(t, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"); r.Close {
		t.Fatal("HTTP/1.0 with keep-alive closes")
	}
	if _, r, _, _ = readResponse(t, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"); !r.Close {
		t.Fatal("Connection: close not noted")
	}

	for _, bad := range []string{
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/2 200 OK\r\n\r\n",
		"garbage\r\n\r\n",
		"HTTP/1.1 200 OK\nX: y\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX y\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("a", 100) + "\r\n\r\n", // longer than the 64-byte buffer
	} {
		if _, _, _, err := readResponse(t, bad); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("%q: got %v, want a malformed response", bad, err)
		}
	}
	if _, _, _, err := readResponse(t, "HTTP/1.1 200 OK\r\nX: y\r\n"); err != io.EOF {
		t.Errorf("cut-off head: %v", err)
	}
}

func keepAll([]byte) bool { return true }

func TestCopyChunked(t *testing.T) {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	src := bufio.NewReaderSize(strings.NewReader("5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: v\r\n\r\nNEXT"), 16)
	n, err := CopyChunked(bw, src, keepAll)
	bw.Flush()
	if err != nil || n != 11 || out.String() != "5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: v\r\n\r\n" {
		t.Fatalf("n=%d err=%v out=%q", n, err, out.String())
	}
	if rest, _ := io.ReadAll(src); string(rest) != "NEXT" {
		t.Fatalf("read past the body: %q", rest)
	}
	// What a client makes of it is the body and the trailer.
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+out.String())), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "hello world" || resp.Trailer.Get("X-T") != "v" {
		t.Fatalf("client read %q, trailer %v", b, resp.Trailer)
	}

	for _, bad := range []string{"x\r\n", "5\r\nhel", "5\r\nhelloXX\r\n", "0\r\nbad trailer\r\n\r\n", "ffffffffffffffffff\r\n"} {
		out.Reset()
		if _, err := CopyChunked(bw, bufio.NewReader(strings.NewReader(bad)), keepAll); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestCopyNAndUntilEOF(t *testing.T) {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	if n, err := CopyN(bw, bufio.NewReaderSize(strings.NewReader("0123456789"), 16), 4); err != nil || n != 4 {
		t.Fatalf("CopyN: %d %v", n, err)
	}
	bw.Flush()
	if out.String() != "0123" {
		t.Fatalf("CopyN wrote %q", out.String())
	}
	if _, err := CopyN(bw, bufio.NewReaderSize(strings.NewReader("01"), 16), 4); !errors.Is(err, ErrTruncated) {
		t.Fatalf("short body: %v", err)
	}
	out.Reset()
	bw.Reset(&out)
	n, err := CopyUntilEOF(bw, bufio.NewReaderSize(strings.NewReader(strings.Repeat("x", 40)), 16))
	bw.Flush()
	if err != nil || n != 40 {
		t.Fatalf("CopyUntilEOF: %d %v", n, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+out.String())), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != strings.Repeat("x", 40) {
		t.Fatalf("re-chunked body read as %q", b)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("client gone") }

func TestCopyReportsWriteErrors(t *testing.T) {
	bw := bufio.NewWriterSize(failingWriter{}, 16)
	_, err := CopyN(bw, bufio.NewReaderSize(strings.NewReader(strings.Repeat("x", 100)), 16), 100)
	var we *WriteError
	if !errors.As(err, &we) {
		t.Fatalf("got %v, want a WriteError", err)
	}
}

// FuzzParseRequest checks the lean parser against net/http: whatever it accepts, net/http
// accepts too and reads the same way; it never panics.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /u?x=1 HTTP/1.1\r\nHost: a:1\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-A: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
		"GET / HTTP/1.1\r\nhost: [::1]:80\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_Proto: https\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		n, res := ParseRequest(data, &r)
		if res != Complete {
			return
		}
		if n > len(data) {
			t.Fatalf("head length %d past the data (%d)", n, len(data))
		}
		for _, f := range r.Fields {
			if f.Known != FieldName(f.Name) {
				t.Fatalf("field %q known as %d, FieldName says %d", f.Name, f.Known, FieldName(f.Name))
			}
			if f.Underscore != bytes.ContainsRune(f.Name, '_') {
				t.Fatalf("field %q: Underscore %v", f.Name, f.Underscore)
			}
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data[:n])))
		if err != nil {
			t.Fatalf("lean parser accepted what net/http rejects (%v): %q", err, data[:n])
		}
		if req.Method != string(r.Method) || req.RequestURI != string(r.Target) || req.Host != string(r.Host) {
			t.Fatalf("read differently: net/http %q %q %q, lean %q %q %q", req.Method, req.RequestURI, req.Host, r.Method, r.Target, r.Host)
		}
		if req.ContentLength != max(r.ContentLength, 0) {
			t.Fatalf("content length: net/http %d, lean %d", req.ContentLength, r.ContentLength)
		}
	})
}

// FuzzResponse reads a worker's response as the lean path does and checks the body it relays
// against net/http's reading of the same bytes; it never panics.
func FuzzResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: X-A\r\nX-A: 1\r\n\r\nbody",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 256)
		var r Response
		if _, err := ReadResponse(br, &r, nil); err != nil || !r.Chunked || r.Status < 200 {
			return
		}
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		if _, err := CopyChunked(bw, br, keepAll); err != nil {
			return
		}
		bw.Flush()
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), nil)
		if err != nil {
			return // net/http is stricter about some heads; the body is what is compared
		}
		want, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("lean relay accepted a chunked body net/http rejects (%v): %q", err, data)
		}
		got, err := io.ReadAll(httpChunked(out.Bytes()))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("relayed body %q (%v), net/http read %q", got, err, want)
		}
	})
}

// FuzzResponseHeadPaths holds the two ways of reading a response head to one result: from a
// buffer that holds the whole head, and line by line as the bytes trickle in.
func FuzzResponseHeadPaths(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nDate: x\r\n\r\nok",
		"HTTP/1.1 204\r\nConnection: close, X-A\r\nX-A: 1\r\nX-B: 2\r\n\r\n",
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\nX: y\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\nX-Long-Field: 0123456789abcdef\r\n\r\n", // a chunk ends mid-head
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		trickle := bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(data)), 1<<16)
		var b Response
		headB, errB := ReadResponse(trickle, &b, nil)
		restB, _ := io.ReadAll(trickle)
		// Whole: the head is buffered at once. Chunks: some lines are, and the rest must be
		// read after a partial start in the buffer.
		for _, src := range []io.Reader{bytes.NewReader(data), &chunkReader{data: data, n: 48}} {
			whole := bufio.NewReaderSize(src, 1<<16)
			var a Response
			headA, errA := ReadResponse(whole, &a, nil)
			if (errA == nil) != (errB == nil) {
				t.Fatalf("buffered: %v; line by line: %v (%q)", errA, errB, data)
			}
			if errA != nil {
				continue
			}
			if !bytes.Equal(headA, headB) || a.Status != b.Status || a.ContentLength != b.ContentLength ||
				a.Chunked != b.Chunked || a.Close != b.Close || a.HasDate != b.HasDate {
				t.Fatalf("buffered %q %+v; line by line %q %+v", headA, a, headB, b)
			}
			if restA, _ := io.ReadAll(whole); !bytes.Equal(restA, restB) {
				t.Fatalf("after the head: %q vs %q", restA, restB)
			}
		}
	})
}

// chunkReader returns data n bytes per Read.
type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.data)
	c.data = c.data[k:]
	return k, nil
}

func httpChunked(b []byte) io.Reader {
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), bytes.NewReader(b))), nil)
	if err != nil {
		return strings.NewReader("")
	}
	return resp.Body
}

func TestParseRequestSaysWhy(t *testing.T) {
	var r Request
	for head, why := range map[string]string{
		"\x16\x03\x01\x02":                                                 WhyNotHTTP,
		"GET / HTTP/1.0\r\nHost: a\r\n\r\n":                                WhyVersion,
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n":                            WhyRequestLine,
		"GET / HTTP/1.1\r\nX : y\r\n\r\n":                                  WhyMalformed,
		"GET / HTTP/1.1\r\nX: y\r\n\r\n":                                   WhyHostMissing,
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n": WhyChunked,
	} {
		if _, res := ParseRequest([]byte(head), &r); res != Unsupported || r.Why != why {
			t.Errorf("%q: %v %q, want Unsupported %q", head, res, r.Why, why)
		}
	}
	if _, res := ParseRequest([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), &r); res != Complete || r.Why != "" {
		t.Errorf("complete: %v %q", res, r.Why)
	}
}
