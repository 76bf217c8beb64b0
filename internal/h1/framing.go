package h1

import "bytes"

// Framing is what a request head says about the body after it, read the way net/http reads a
// head (line ends of CRLF or LF alone, any version), so that a head the strict ParseRequest
// leaves to net/http is judged by the same facts.
type Framing struct {
	// Version is 10 for HTTP/1.0, 11 for HTTP/1.1, 0 for anything else (or no request line).
	Version int
	// Lengths counts Content-Length fields; Length is their value, -1 when they disagree or
	// one does not parse.
	Lengths int
	Length  int64
	// Encodings counts Transfer-Encoding fields; Chunked reports exactly one, saying chunked.
	Encodings int
	Chunked   bool
	// Upgrade reports a Connection field listing "upgrade": what follows may not be HTTP.
	Upgrade bool
	// Connect reports the CONNECT method.
	Connect bool
}

// ScanFraming reads the framing facts of head, a request head through its final empty line.
func ScanFraming(head []byte) Framing {
	f := Framing{Length: -1}
	line, rest := nextLine(head)
	method, rest0, _ := bytes.Cut(line, []byte(" "))
	f.Connect = string(method) == "CONNECT"
	if i := bytes.LastIndexByte(rest0, ' '); i >= 0 {
		switch string(rest0[i+1:]) {
		case "HTTP/1.0":
			f.Version = 10
		case "HTTP/1.1":
			f.Version = 11
		}
	}
	for len(rest) > 0 {
		line, rest = nextLine(rest)
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = trimOWS(value)
		switch FieldName(name) {
		case NameContentLength:
			n, ok := parseLength(value)
			if f.Lengths++; !ok || (f.Lengths > 1 && n != f.Length) {
				n = -1
			}
			if f.Lengths == 1 || f.Length >= 0 {
				f.Length = n
			}
		case NameTransferEncoding:
			f.Encodings++
			f.Chunked = f.Encodings == 1 && equalFold(value, "chunked")
		case NameConnection:
			f.Upgrade = f.Upgrade || HasToken(value, "upgrade")
		}
	}
	return f
}

// nextLine cuts the first line off b, without its LF or CRLF.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	return bytes.TrimSuffix(line, []byte("\r")), rest
}
