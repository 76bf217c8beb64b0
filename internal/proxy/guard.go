package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"

	"warmpool/internal/h1"
)

// net/http parses the HTTP/1.x requests of TLS connections and of the plain connections the
// lean path handed off, and it accepts framing that warmpool refuses: Content-Length with
// Transfer-Encoding (it drops the length and reads chunks, where a proxy in front of warmpool
// may have read the length: the shape of request smuggling), and Transfer-Encoding in an
// HTTP/1.0 request (it ignores the encoding and reads the chunks as the next request). So
// such a connection is read through a framingGuard, which follows its requests (heads, and
// bodies by their framing) and ends the stream within a head that framingRefusal refuses:
// net/http gets its first bytes but never the whole head, answers 400 and closes, and
// warmpool logs why. A head the guard cannot
// follow (a malformed chunk, an upgrade, a version it does not know) is one net/http refuses
// or the connection's last HTTP request, and the guard steps aside.

// refusedLengthWithEncoding is the reason given for a head with both framings, on every path.
const refusedLengthWithEncoding = "a request may not have both Content-Length and Transfer-Encoding"

// framingRefusal says why a request head's framing is refused ("" if it is not). It is the
// one rule for every path: the lean path's parser refuses the same heads (h1.Smuggling).
func framingRefusal(f *h1.Framing) string {
	switch {
	case f.Encodings > 0 && f.Lengths > 0:
		return refusedLengthWithEncoding
	case f.Encodings > 0 && f.Version == 10:
		return "an HTTP/1.0 request may not have Transfer-Encoding"
	}
	return ""
}

// Limits of what the guard follows; past them net/http refuses the request itself.
const (
	guardMaxHead      = 1<<20 + 8<<10
	guardMaxChunkLine = 4 << 10
	guardMaxTrailer   = 64 << 10
)

// What the guard is reading.
const (
	guardHead = iota
	guardBody
	guardChunkLine
	guardChunkData
	guardChunkEnd
	guardTrailer
	guardAside // not following: the stream passes as it is
)

// framingGuard follows the HTTP/1.x requests of one connection.
type framingGuard struct {
	state  int
	buf    []byte // the head, chunk-size line or trailer so far
	remain int64  // body or chunk bytes to pass; in guardChunkEnd, the CRLF bytes still due
	// headLen is the length of the last head read whole.
	headLen int
	// refused is why a head was refused ("" while none was).
	refused string
}

// refusedPrefix is how much of a refused head net/http is given before the error: it waits
// for 4 bytes of a next request and closes in silence if they do not come, while an error
// within a head is answered 400.
const refusedPrefix = 4

// errFramingRefused ends the stream for net/http at a refused head.
var errFramingRefused = errors.New("request framing refused")

// scan follows b, the next bytes of the stream, and returns how many of them come before a
// refused head (len(b) while none is).
func (g *framingGuard) scan(b []byte) int {
	headAt := 0 // where in b the head being read began (0 too when it began in an earlier read)
	for i := 0; i < len(b); {
		switch g.state {
		case guardAside:
			return len(b)
		case guardBody, guardChunkData:
			n := int(min(g.remain, int64(len(b)-i)))
			i += n
			if g.remain -= int64(n); g.remain > 0 {
				continue
			}
			if g.state == guardBody {
				g.state = guardHead
			} else {
				g.state, g.remain = guardChunkEnd, 2
			}
		case guardChunkEnd:
			if b[i] != "\r\n"[2-g.remain] {
				g.state = guardAside // net/http refuses the body; the connection ends
				return len(b)
			}
			i++
			if g.remain--; g.remain == 0 {
				g.state = guardChunkLine
			}
		default: // a line: of a head, a chunk size or a trailer
			if g.state == guardHead && len(g.buf) == 0 {
				headAt = i
			}
			end := len(b)
			if nl := bytes.IndexByte(b[i:], '\n'); nl >= 0 {
				end = i + nl + 1
			}
			g.buf = append(g.buf, b[i:end]...)
			i = end
			if b[end-1] != '\n' {
				g.checkSize()
			} else if !g.lineEnded() {
				given := g.headLen - (i - headAt) // in earlier reads
				return headAt + max(0, min(refusedPrefix-given, i-headAt))
			}
		}
	}
	return len(b)
}

// checkSize steps aside from a line or head that grew past what net/http accepts.
func (g *framingGuard) checkSize() {
	limit := guardMaxHead
	switch g.state {
	case guardChunkLine:
		limit = guardMaxChunkLine
	case guardTrailer:
		limit = guardMaxTrailer
	}
	if len(g.buf) > limit {
		g.state, g.buf = guardAside, nil
	}
}

// lineEnded acts on the line that g.buf just completed; false when it completed a refused head.
func (g *framingGuard) lineEnded() bool {
	switch g.state {
	case guardHead:
		if len(g.buf) <= 2 { // an empty first line: net/http refuses the request
			g.state = guardAside
			return true
		}
		if !endsWithEmptyLine(g.buf) {
			g.checkSize()
			return true
		}
		f := h1.ScanFraming(g.buf)
		g.headLen = len(g.buf)
		g.resetBuf()
		if g.refused = framingRefusal(&f); g.refused != "" {
			return false
		}
		switch {
		case f.Version == 0 || f.Connect || f.Upgrade || f.Encodings > 1 || f.Encodings == 1 && !f.Chunked || f.Lengths > 0 && f.Length < 0:
			g.state = guardAside // refused by net/http, or the last HTTP of the connection
		case f.Chunked:
			g.state = guardChunkLine
		case f.Length > 0:
			g.state, g.remain = guardBody, f.Length
		}
	case guardChunkLine:
		size, ok := chunkLineSize(g.buf)
		g.resetBuf()
		switch {
		case !ok:
			g.state = guardAside
		case size == 0:
			g.state = guardTrailer
		default:
			g.state, g.remain = guardChunkData, size
		}
	case guardTrailer:
		if len(g.buf) <= 2 || endsWithEmptyLine(g.buf) {
			g.state = guardHead
			g.resetBuf()
		} else {
			g.checkSize()
		}
	}
	return true
}

func (g *framingGuard) resetBuf() {
	if cap(g.buf) > 8<<10 {
		g.buf = nil // a large head was read: do not keep its buffer for the connection's life
	}
	g.buf = g.buf[:0]
}

// endsWithEmptyLine reports that b, whose last byte is LF, ends with an empty line (LF or CRLF).
func endsWithEmptyLine(b []byte) bool {
	b = b[:len(b)-1]
	return bytes.HasSuffix(b, []byte("\n")) || bytes.HasSuffix(b, []byte("\n\r"))
}

// chunkLineSize reads a chunk-size line as net/http does: CRLF-ended with no other CR,
// extensions dropped, at most 16 hex digits.
func chunkLineSize(line []byte) (int64, bool) {
	if cr := bytes.IndexByte(line, '\r'); cr < 0 || cr != len(line)-2 {
		return 0, false
	}
	line = bytes.TrimRight(line[:len(line)-2], " \t")
	line, _, _ = bytes.Cut(line, []byte(";"))
	if len(line) == 0 || len(line) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range line {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(c)
	}
	return int64(n), n <= 1<<62
}

// guardedConn is a client connection whose HTTP/1.x requests net/http parses, read through a
// framingGuard. tls is the TLS connection under it, nil for a plain one.
type guardedConn struct {
	net.Conn
	tls   *tls.Conn
	guard framingGuard
	// onRefuse is told of the refused head's reason, once.
	onRefuse func(reason string)
}

func (c *guardedConn) Read(p []byte) (int, error) {
	if c.guard.refused != "" {
		return 0, errFramingRefused
	}
	n, err := c.Conn.Read(p)
	k := c.guard.scan(p[:n])
	if c.guard.refused == "" {
		return n, err
	}
	if c.onRefuse != nil {
		c.onRefuse(c.guard.refused)
	}
	if k > 0 {
		return k, nil // the requests before the refused one
	}
	return 0, errFramingRefused
}
