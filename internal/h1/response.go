package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// MaxResponseHead bounds a response head, as net/http's transport bounds it by default.
const MaxResponseHead = 1 << 20

// Response is a worker's response head, read by ReadResponse.
type Response struct {
	Status int
	// ContentLength is the Content-Length sent; -1 when none was.
	ContentLength int64
	// Chunked reports "Transfer-Encoding: chunked".
	Chunked bool
	// Close reports that the worker ends the connection after this response: it said
	// "Connection: close", or answered HTTP/1.0 without keep-alive.
	Close bool
	// HasDate reports a Date field.
	HasDate bool

	fields    []span   // kept fields in the output, for removing those Connection names
	connNames [][]byte // names listed by Connection, copied
}

type span struct{ start, nameEnd, end int }

// ErrMalformedResponse is wrapped by every error about what the worker sent.
var ErrMalformedResponse = errors.New("malformed response from the worker")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformedResponse}, args...)...)
}

// ReadResponse reads one response head from br and appends it to dst, as it is to go to an
// HTTP/1.1 client: the status line as "HTTP/1.1 <code> <reason>", then the fields less the
// hop-by-hop ones (Name.HopByHop, and the fields Connection names) and less the framing fields
// (Content-Length, Transfer-Encoding), which r reports and the caller writes itself. The final
// empty line is not appended.
func ReadResponse(br *bufio.Reader, r *Response, dst []byte) ([]byte, error) {
	*r = Response{ContentLength: -1, fields: r.fields[:0], connNames: r.connNames[:0]}
	if _, err := br.Peek(1); err != nil {
		return dst, err
	}
	// The usual case: the whole head came in one read. It is parsed in the buffer, a line at a
	// time without a call into bufio for each; if it runs past the buffered bytes, it is read
	// again from its start, line by line.
	buf, _ := br.Peek(br.Buffered())
	lines := headLines{buf: buf}
	out, err := r.parse(&lines, dst)
	if err != errPartialHead {
		if err == nil {
			br.Discard(len(buf) - len(lines.buf))
		}
		return out, err
	}
	*r = Response{ContentLength: -1, fields: r.fields[:0], connNames: r.connNames[:0]}
	return r.parse(&headLines{br: br}, dst)
}

// errPartialHead: the buffered bytes end before the head does.
var errPartialHead = errors.New("partial head")

// headLines yields a response head's lines without their CRLF: from buf while it lasts, or
// read from br.
type headLines struct {
	buf []byte
	br  *bufio.Reader
}

func (h *headLines) next() ([]byte, error) {
	if h.br != nil {
		return readLine(h.br)
	}
	i := bytes.IndexByte(h.buf, '\n')
	if i < 0 {
		return nil, errPartialHead
	}
	line := h.buf[:i+1]
	h.buf = h.buf[i+1:]
	return trimCRLF(line)
}

func (r *Response) parse(lines *headLines, dst []byte) ([]byte, error) {
	line, err := lines.next()
	if err != nil {
		return dst, err
	}
	http10, rest, ok := cutProto(line)
	if !ok || len(rest) < 3 || (len(rest) > 3 && rest[3] != ' ') {
		return dst, malformed("status line %q", truncate(line))
	}
	code, err := strconv.Atoi(string(rest[:3]))
	if err != nil || code < 100 {
		return dst, malformed("status line %q", truncate(line))
	}
	r.Status = code
	r.Close = http10
	dst = append(dst, "HTTP/1.1 "...)
	dst = append(dst, rest...)
	if len(rest) == 3 {
		dst = append(dst, ' ')
		dst = append(dst, statusText(code)...)
	}
	dst = append(dst, '\r', '\n')
	size := len(line)
	for {
		line, err := lines.next()
		if err != nil {
			return dst, err
		}
		if len(line) == 0 {
			break
		}
		if size += len(line) + 2; size > MaxResponseHead || len(r.fields) >= 4*MaxFields {
			return dst, malformed("head larger than %d bytes or %d fields", MaxResponseHead, 4*MaxFields)
		}
		name, value, _, ok := splitField(line)
		if !ok {
			return dst, malformed("header line %q", truncate(line))
		}
		known := FieldName(name)
		switch known {
		case NameContentLength:
			cl, ok := parseLength(value)
			if !ok || (r.ContentLength >= 0 && cl != r.ContentLength) {
				return dst, malformed("Content-Length %q", truncate(value))
			}
			r.ContentLength = cl
			continue
		case NameTransferEncoding:
			if !equalFold(value, "chunked") || r.Chunked || http10 { // RFC 9112 6.1: faulty framing in HTTP/1.0
				return dst, malformed("unsupported Transfer-Encoding %q (HTTP/1.0: %v)", truncate(value), http10)
			}
			r.Chunked = true
			continue
		case NameConnection:
			r.noteConnection(value, http10)
			continue
		case NameDate:
			r.HasDate = true
		}
		if known.HopByHop() {
			continue
		}
		start := len(dst)
		dst = append(dst, line[:len(line)+2]...) // the line as the worker sent it, CRLF included
		r.fields = append(r.fields, span{start, start + len(name), len(dst)})
	}
	if r.Chunked {
		r.ContentLength = -1 // Transfer-Encoding overrides Content-Length (RFC 9112 6.3)
	}
	if len(r.connNames) > 0 {
		dst = r.dropConnectionNamed(dst)
	}
	return dst, nil
}

// noteConnection reads a Connection value: close, keep-alive (for HTTP/1.0), and the names of
// further hop-by-hop fields.
func (r *Response) noteConnection(v []byte, http10 bool) {
	for len(v) > 0 {
		var tok []byte
		tok, v = NextToken(v)
		switch {
		case len(tok) == 0:
		case equalFold(tok, "close"):
			r.Close = true
		case equalFold(tok, "keep-alive"):
			if http10 {
				r.Close = false
			}
		default:
			r.connNames = append(r.connNames, bytes.Clone(tok))
		}
	}
}

// dropConnectionNamed removes the kept fields that Connection named (rare: a second pass).
func (r *Response) dropConnectionNamed(dst []byte) []byte {
	if len(r.fields) == 0 {
		return dst
	}
	out := dst[:r.fields[0].start]
	for i, f := range r.fields {
		end := len(dst)
		if i+1 < len(r.fields) {
			end = r.fields[i+1].start
		}
		named := false
		for _, n := range r.connNames {
			if bytes.EqualFold(dst[f.start:f.nameEnd], n) {
				named = true
				break
			}
		}
		if !named {
			out = append(out, dst[f.start:end]...)
		}
	}
	return out
}

// readLine reads one CRLF-ended line (without the CRLF) that fits in br's buffer.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, malformed("a header line longer than %d bytes", br.Size())
	}
	if err != nil {
		return nil, err
	}
	return trimCRLF(line)
}

// trimCRLF checks that a line read up to its LF ends with CRLF, and drops them.
func trimCRLF(line []byte) ([]byte, error) {
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, malformed("line %q not ended by CRLF", truncate(line))
	}
	return line[:len(line)-2], nil
}

func cutProto(line []byte) (http10 bool, rest []byte, ok bool) {
	switch {
	case bytes.HasPrefix(line, []byte("HTTP/1.1 ")):
		return false, line[9:], true
	case bytes.HasPrefix(line, []byte("HTTP/1.0 ")):
		return true, line[9:], true
	}
	return false, nil, false
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// statusText is the reason phrase for a status line that had none.
func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	return "Status"
}

// NoBody reports whether a response with this status to a request with this method carries no
// body, whatever its fields say (RFC 9112 6.3).
func NoBody(method string, status int) bool {
	return status < 200 || status == 204 || status == 304 || method == "HEAD"
}
