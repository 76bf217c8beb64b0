package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"warmpool/internal/testutil"
)

// Every front a client can reach: the cleartext listener (the lean path, and net/http for what
// it hands off), and the TLS listener with HTTP/1.1 (net/http behind the framing guard) and
// HTTP/2. The tests here send the same thing over each and compare what comes out.

// frontsEnv is a leanEnv with a TLS listener on the same Front and worker.
type frontsEnv struct {
	*leanEnv
	tlsAddr string
}

func startFronts(t testing.TB, limit int, opts Options) *frontsEnv {
	t.Helper()
	e := startLean(t, limit, opts)
	hs := &http.Server{Handler: e.srv.front, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: HTTPMaxHeaderBytes(32 << 10)}
	srv := NewServer(e.srv.front, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert, key := testutil.SelfSignedCert(t)
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, cert, key) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("TLS shutdown: %v", err)
		}
		if err := <-served; err != http.ErrServerClosed {
			t.Errorf("TLS serve: %v", err)
		}
	})
	return &frontsEnv{leanEnv: e, tlsAddr: ln.Addr().String()}
}

// dialTLS1 opens a TLS connection that speaks HTTP/1.1.
func (e *frontsEnv) dialTLS1() *rawConn {
	e.t.Helper()
	nc, err := tls.Dial("tcp", e.tlsAddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: e.t, nc: nc, br: bufio.NewReader(nc)}
}

// h2Conn is an HTTP/2 client connection that writes frames as told, so that a test can send
// what a well-behaved client library would not (two content-length fields, a body with no
// length, odd pseudo-headers).
type h2Conn struct {
	t      testing.TB
	nc     *tls.Conn
	fr     *http2.Framer
	enc    *hpack.Encoder
	encBuf bytes.Buffer
	dec    *hpack.Decoder
	nextID uint32
}

func (e *frontsEnv) dialH2() *h2Conn { return e.dialH2For(e.t) }

// dialH2For is dialH2 for t, a test other than the one that started e (a fuzz target's).
func (e *frontsEnv) dialH2For(t testing.TB) *h2Conn {
	t.Helper()
	nc, err := tls.Dial("tcp", e.tlsAddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	if nc.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatalf("negotiated %q", nc.ConnectionState().NegotiatedProtocol)
	}
	c := &h2Conn{t: t, nc: nc, nextID: 1}
	c.enc = hpack.NewEncoder(&c.encBuf)
	c.dec = hpack.NewDecoder(4096, nil)
	io.WriteString(nc, http2.ClientPreface)
	c.fr = http2.NewFramer(nc, nc)
	c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	c.fr.WriteWindowUpdate(0, 1<<30)
	return c
}

// h2Request is one request as HTTP/2 frames: its fields (pseudo-headers first, as sent), its
// body in DATA frames (none: the HEADERS frame ends the stream), and trailers.
type h2Request struct {
	fields   [][2]string
	body     []byte
	hasBody  bool // send DATA frames (an empty one too) instead of ending with HEADERS
	trailers [][2]string
}

// h2Response is what came back on the stream.
type h2Response struct {
	status   int
	interim  []int       // 1xx statuses, in order
	hints    http.Header // the last 1xx's fields
	header   http.Header
	body     []byte
	trailer  http.Header
	reset    http2.ErrCode // the stream was reset (0: it was not)
	goneAway bool
}

func (c *h2Conn) block(fields [][2]string) []byte {
	c.encBuf.Reset()
	for _, f := range fields {
		c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return bytes.Clone(c.encBuf.Bytes())
}

// do sends req on a new stream and reads until the stream ends.
func (c *h2Conn) do(req h2Request) h2Response {
	c.t.Helper()
	id := c.nextID
	c.nextID += 2
	end := !req.hasBody && len(req.trailers) == 0
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(req.fields), EndStream: end, EndHeaders: true}); err != nil {
		c.t.Fatal(err)
	}
	if req.hasBody {
		for b := req.body; ; {
			n := min(len(b), 16384)
			last := n == len(b) && len(req.trailers) == 0
			if err := c.fr.WriteData(id, last, b[:n]); err != nil {
				break // the server ended the stream or the connection; what it said is read below
			}
			if b = b[n:]; len(b) == 0 {
				break
			}
		}
	}
	if len(req.trailers) > 0 {
		c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(req.trailers), EndStream: true, EndHeaders: true})
	}
	resp := h2Response{header: http.Header{}}
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if errClosed(err) { // a connection error: the server sent GOAWAY and closed
				resp.goneAway = true
				return resp
			}
			c.t.Fatalf("stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			resp.goneAway = true
			if f.LastStreamID < id || f.ErrCode != http2.ErrCodeNo { // refused, or a connection error
				return resp
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				resp.reset = f.ErrCode
				return resp
			}
		case *http2.HeadersFrame:
			if f.StreamID != id {
				continue
			}
			fields, err := c.dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				c.t.Fatal(err)
			}
			status := 0
			h := http.Header{}
			for _, hf := range fields {
				if hf.Name == ":status" {
					status, _ = strconv.Atoi(hf.Value)
					continue
				}
				h.Add(hf.Name, hf.Value)
			}
			switch {
			case status >= 100 && status < 200:
				resp.interim, resp.hints = append(resp.interim, status), h
			case status != 0:
				resp.status, resp.header = status, h
			default:
				resp.trailer = h
			}
			if f.StreamEnded() {
				return resp
			}
		case *http2.DataFrame:
			if f.StreamID != id {
				continue
			}
			resp.body = append(resp.body, f.Data()...)
			if f.StreamEnded() {
				return resp
			}
		}
	}
}

// h2Get is a plain GET of path on the test host.
func h2Get(path string) h2Request {
	return h2Request{fields: [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "app.test"}, {":path", path}}}
}

// errClosed reports a connection the server closed (EOF or reset), for refusal checks.
func errClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(fmt.Sprint(err), "reset")
}
