package h1

import "bytes"

// Result is the outcome of parsing a head.
type Result int

const (
	// Complete: the head was parsed.
	Complete Result = iota
	// Incomplete: the head has not ended yet; more bytes are needed.
	Incomplete
	// Unsupported: the head is malformed or uses something this package leaves to net/http
	// (HTTP/1.0, absolute-form targets, Transfer-Encoding, obsolete line folding, bare LF line
	// ends, ...).
	Unsupported
	// Smuggling: both Content-Length and Transfer-Encoding, the shape of a request smuggling
	// attempt (RFC 9112 6.1): to be refused with 400 and the connection closed.
	Smuggling
)

// MaxFields bounds the header fields of one head.
const MaxFields = 128

// Field is one header field; both slices point into the parsed buffer.
type Field struct {
	Name, Value []byte
	// Line is the whole field line as received, CRLF included. The lines of consecutive
	// fields are adjacent in the buffer, so a run of them can be copied at once.
	Line []byte
	// Known is FieldName(Name), found once while parsing.
	Known Name
	// Underscore reports a '_' in the name: CGI and WSGI turn '-' and '_' into the same
	// variable, so such a name can pose as another field (X_Forwarded_Proto).
	Underscore bool
}

// Request is a parsed request head. Its slices point into the buffer it was parsed from and are
// valid only as long as that buffer is. Reuse one Request per connection: parsing resets it.
type Request struct {
	Method, Target []byte
	Host           []byte
	// ContentLength is the body's length; -1 when no Content-Length was sent.
	ContentLength int64
	// Upgrade and Expect report that the field was present.
	Upgrade, Expect bool
	// Close reports "Connection: close"; ConnectionOther that Connection named anything besides
	// close and keep-alive (those names are hop-by-hop headers to remove).
	Close, ConnectionOther bool
	Fields                 []Field
	// Why says, when ParseRequest answered Unsupported, what it left to net/http.
	Why string
}

// The reasons ParseRequest gives in Request.Why.
const (
	WhyNotHTTP     = "not HTTP/1.x"
	WhyVersion     = "HTTP/1.0"
	WhyRequestLine = "request line"
	WhyChunked     = "chunked upload"
	WhyMalformed   = "malformed head"
	WhyBareLF      = "bare LF line ends"
	WhyHostMissing = "no single Host"
)

// Query is the target's query, without the '?' (nil when none).
func (r *Request) Query() []byte {
	if i := bytes.IndexByte(r.Target, '?'); i >= 0 {
		return r.Target[i+1:]
	}
	return nil
}

// Path is the target without its query.
func (r *Request) Path() []byte {
	if i := bytes.IndexByte(r.Target, '?'); i >= 0 {
		return r.Target[:i]
	}
	return r.Target
}

// ParseRequest parses the request head at the start of buf: an HTTP/1.1 request line with an
// origin-form target, then header fields, each line ended by CRLF, then an empty line. n is the
// head's length, including the empty line.
func ParseRequest(buf []byte, r *Request) (n int, res Result) {
	*r = Request{ContentLength: -1, Fields: r.Fields[:0]}
	end := bytes.Index(buf, crlfcrlf)
	if end < 0 {
		if len(buf) > 0 && !validPrefix(buf) {
			return 0, r.unsupported(WhyNotHTTP)
		}
		if bareLF(buf) {
			// Lines ended by LF alone: the CRLF CRLF awaited may never come. net/http reads
			// such heads (as nginx does), so the client gets an answer now, not a stall.
			return 0, r.unsupported(WhyBareLF)
		}
		return 0, Incomplete
	}
	head := buf[:end+2] // the lines, each with its CRLF
	n = end + 4
	line, rest, ok := cutLine(head)
	if !ok {
		return 0, r.unsupported(WhyMalformed)
	}
	if why := parseRequestLine(line, r); why != "" {
		return 0, r.unsupported(why)
	}
	hosts, chunked := 0, false
	for len(rest) > 0 {
		line, rest, ok = cutLine(rest)
		if !ok || len(r.Fields) == MaxFields {
			return 0, r.unsupported(WhyMalformed)
		}
		name, value, underscore, ok := splitField(line)
		if !ok {
			return 0, r.unsupported(WhyMalformed)
		}
		known := FieldName(name)
		switch known {
		case NameHost:
			hosts++
			r.Host = value
			if !validHost(value) {
				return 0, r.unsupported(WhyMalformed)
			}
		case NameContentLength:
			cl, ok := parseLength(value)
			if !ok || (r.ContentLength >= 0 && r.ContentLength != cl) {
				return 0, r.unsupported(WhyMalformed)
			}
			r.ContentLength = cl
		case NameTransferEncoding:
			chunked = true
		case NameUpgrade:
			r.Upgrade = true
		case NameExpect:
			r.Expect = true
		case NameConnection:
			scanConnection(value, &r.Close, &r.ConnectionOther)
		}
		r.Fields = append(r.Fields, Field{name, value, line[:len(line)+2], known, underscore})
	}
	switch {
	case chunked && r.ContentLength >= 0:
		return n, Smuggling
	case chunked:
		return 0, r.unsupported(WhyChunked) // net/http frames it
	case hosts != 1:
		return 0, r.unsupported(WhyHostMissing) // HTTP/1.1 needs exactly one Host
	}
	return n, Complete
}

func (r *Request) unsupported(why string) Result {
	r.Why = why
	return Unsupported
}

var crlfcrlf = []byte("\r\n\r\n")

// validPrefix tells early that an unfinished head will never parse (a TLS handshake or an
// HTTP/2 preface on the cleartext port, say), so it goes to net/http at once.
func validPrefix(buf []byte) bool {
	for i, c := range buf {
		if c == ' ' {
			return i > 0
		}
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

// bareLF reports an LF not preceded by CR.
func bareLF(buf []byte) bool {
	for i := bytes.IndexByte(buf, '\n'); i >= 0; {
		if i == 0 || buf[i-1] != '\r' {
			return true
		}
		j := bytes.IndexByte(buf[i+1:], '\n')
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}

// cutLine splits off the first CRLF-ended line; a bare CR or LF inside it fails.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	line = b[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, false
	}
	return line, b[i+1:], true
}

// parseRequestLine reads "METHOD /target HTTP/1.1"; it returns why not, or "".
func parseRequestLine(line []byte, r *Request) string {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return WhyRequestLine
	}
	r.Method = line[:sp]
	for _, c := range r.Method {
		if !isTokenChar(c) {
			return WhyRequestLine
		}
	}
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return WhyRequestLine
	}
	switch string(rest[sp+1:]) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		return WhyVersion
	default:
		return WhyRequestLine
	}
	r.Target = rest[:sp]
	if r.Target[0] != '/' || string(r.Method) == "CONNECT" {
		return WhyRequestLine // absolute form, asterisk form, CONNECT
	}
	for _, c := range r.Target {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return WhyRequestLine
		}
	}
	// A '%' in the path must start an escape of two hex digits, as net/http's
	// url.ParseRequestURI requires (it leaves the query's escapes alone): what one path refuses,
	// the other must too (found by FuzzParseRequest). Most paths have no '%': IndexByte skips them.
	path := r.Target
	if q := bytes.IndexByte(path, '?'); q >= 0 {
		path = path[:q]
	}
	for i := bytes.IndexByte(path, '%'); i >= 0; {
		if i+2 >= len(path) || !isHex(path[i+1]) || !isHex(path[i+2]) {
			return WhyRequestLine
		}
		next := bytes.IndexByte(path[i+3:], '%')
		if next < 0 {
			break
		}
		i += 3 + next
	}
	return ""
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// splitField splits "Name: value" with the value's surrounding whitespace removed. The name
// must be a token directly followed by the colon; the value may hold no control character
// but tab (obsolete line folding, a line starting with whitespace, fails here too).
func splitField(line []byte) (name, value []byte, underscore, ok bool) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, false, false
	}
	name = line[:colon]
	for _, c := range name {
		if !isTokenChar(c) {
			return nil, nil, false, false
		}
		underscore = underscore || c == '_'
	}
	value = line[colon+1:]
	for _, c := range value {
		if badValueByte[c] {
			return nil, nil, false, false
		}
	}
	return name, trimOWS(value), underscore, true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// validHost accepts a reg-name, IPv4 or bracketed IPv6 host with an optional port: the bytes
// net/http accepts, less anything that could split a line or a URL.
func validHost(h []byte) bool {
	for _, c := range h {
		if c >= 0x80 || !hostTable[c] {
			return false
		}
	}
	return true
}

var hostTable = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-._~:[]!$&'()*+,;=%" {
		t[c] = true
	}
	return t
}()

// parseLength parses a Content-Length value: decimal digits only, at most 18 of them.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// NextToken splits the first element off a comma-separated field value, without its
// surrounding whitespace; rest is what follows the comma.
func NextToken(v []byte) (tok, rest []byte) {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		return trimOWS(v[:i]), v[i+1:]
	}
	return trimOWS(v), nil
}

// HasToken reports whether a comma-separated value lists token (lower case), ignoring case.
func HasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var tok []byte
		if tok, v = NextToken(v); equalFold(tok, token) {
			return true
		}
	}
	return false
}

// scanConnection reads the tokens of a Connection value.
func scanConnection(v []byte, close, other *bool) {
	for len(v) > 0 {
		var tok []byte
		tok, v = NextToken(v)
		switch {
		case len(tok) == 0:
		case equalFold(tok, "close"):
			*close = true
		case equalFold(tok, "keep-alive"):
		default:
			*other = true
		}
	}
}

// equalFold compares b with the lower-case ASCII s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// EqualFold compares a header name with the lower-case ASCII s, ignoring case.
func EqualFold(b []byte, s string) bool { return equalFold(b, s) }

func isTokenChar(c byte) bool { return c < 0x80 && tokenTable[c] }

// badValueByte marks the control characters a field value may not hold (all but tab).
var badValueByte = func() (t [256]bool) {
	for c := range ' ' {
		t[c] = c != '\t'
	}
	t[0x7f] = true
	return t
}()

var tokenTable = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
