package h1

import (
	"bufio"
	"errors"
	"io"
	"strconv"
)

// WriteError is a failure to write to the destination (the client went away), as opposed to a
// failure of the source (the worker).
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return "write: " + e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// ErrTruncated reports a body that ended before its framing said it would.
var ErrTruncated = errors.New("body ended early")

// The copies below flush dst whenever src has nothing buffered and must wait for the network:
// a body that arrives in pieces (a stream) reaches the client piece by piece, while one that
// arrived whole goes out in a single write.

// CopyN copies exactly n bytes from src to dst. It returns the bytes written.
func CopyN(dst *bufio.Writer, src *bufio.Reader, n int64) (int64, error) {
	var written int64
	for written < n {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return written, &WriteError{err}
			}
			if _, err := src.Peek(1); err != nil {
				return written, sourceErr(err)
			}
		}
		chunk, _ := src.Peek(int(min(int64(src.Buffered()), n-written)))
		m, err := dst.Write(chunk)
		written += int64(m)
		src.Discard(m)
		if err != nil {
			return written, &WriteError{err}
		}
	}
	return written, nil
}

// CopyChunked relays a chunked body from src to dst, checking its framing: chunks are passed
// on with their extensions dropped, and the trailer fields that keep (the caller's policy)
// allows, as they are. It returns the body's data bytes.
func CopyChunked(dst *bufio.Writer, src *bufio.Reader, keep func(name []byte) bool) (int64, error) {
	var total int64
	for {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return total, &WriteError{err}
			}
		}
		line, err := readLine(src)
		if err != nil {
			return total, sourceErr(err)
		}
		size, ok := chunkSize(line)
		if !ok {
			return total, malformed("chunk size line %q", truncate(line))
		}
		if size == 0 {
			break
		}
		writeChunkHeader(dst, size)
		n, err := CopyN(dst, src, size)
		total += n
		if err != nil {
			return total, err
		}
		if line, err := readLine(src); err != nil || len(line) != 0 {
			if err == nil {
				err = malformed("chunk data not followed by CRLF")
			}
			return total, sourceErr(err)
		}
		if _, err := dst.WriteString("\r\n"); err != nil {
			return total, &WriteError{err}
		}
	}
	dst.WriteString("0\r\n")
	for fields := 0; ; fields++ {
		line, err := readLine(src)
		if err != nil {
			return total, sourceErr(err)
		}
		if len(line) == 0 {
			break
		}
		name, _, _, ok := splitField(line)
		if !ok || fields >= MaxFields {
			return total, malformed("trailer line %q", truncate(line))
		}
		if keep(name) {
			dst.Write(line)
			dst.WriteString("\r\n")
		}
	}
	if _, err := dst.WriteString("\r\n"); err != nil {
		return total, &WriteError{err}
	}
	return total, nil
}

// CopyUntilEOF relays a body delimited by the end of the connection, framing it as chunked for
// the client so that the client's connection can stay open.
func CopyUntilEOF(dst *bufio.Writer, src *bufio.Reader) (int64, error) {
	var total int64
	for {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return total, &WriteError{err}
			}
			if _, err := src.Peek(1); err == io.EOF {
				break
			} else if err != nil {
				return total, err
			}
		}
		chunk, _ := src.Peek(src.Buffered())
		writeChunkHeader(dst, int64(len(chunk)))
		dst.Write(chunk)
		src.Discard(len(chunk))
		total += int64(len(chunk))
		if _, err := dst.WriteString("\r\n"); err != nil {
			return total, &WriteError{err}
		}
	}
	if _, err := dst.WriteString("0\r\n\r\n"); err != nil {
		return total, &WriteError{err}
	}
	return total, nil
}

func sourceErr(err error) error {
	if err == io.EOF {
		return ErrTruncated
	}
	return err
}

// chunkSize parses a chunk-size line: hex digits, then extensions after ';' or trailing
// whitespace (as net/http reads it).
func chunkSize(line []byte) (int64, bool) {
	var n int64
	digits := 0
	for i, c := range line {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		case c == ';':
			return n, digits > 0
		case c == ' ' || c == '\t':
			return n, digits > 0 && len(trimOWS(line[i:])) == 0
		default:
			return 0, false
		}
		if digits++; digits > 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, digits > 0
}

func writeChunkHeader(dst *bufio.Writer, size int64) {
	var b [18]byte
	dst.Write(append(strconv.AppendInt(b[:0], size, 16), '\r', '\n'))
}
