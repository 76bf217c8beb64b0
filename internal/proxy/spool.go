package proxy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"
)

// A request body is read whole before a worker is leased, as nginx does: a client that uploads
// slowly (or not at all) holds no worker, a failed worker's request can go to another, and a
// client's malformed body is answered 400 without touching a worker. Bodies up to
// maxBufferedBody stay in memory; larger ones wait in a temporary file, unlinked at once so
// that nothing is left behind, whatever happens to warmpool.

// spooledBody is a request body read whole.
type spooledBody struct {
	mem     *[]byte // pooled, up to maxBufferedBody
	file    *os.File
	n       int64
	framing requestFraming
}

// Len is the body's size.
func (b *spooledBody) Len() int64 { return b.n }

// WriteTo writes the whole body to w, from its start each time (a retry sends it again).
func (b *spooledBody) WriteTo(w io.Writer) (int64, error) {
	if b.n == 0 {
		return 0, nil
	}
	if b.file == nil {
		n, err := w.Write((*b.mem)[:b.n])
		return int64(n), err
	}
	return io.Copy(w, io.NewSectionReader(b.file, 0, b.n))
}

// Close gives back what holds the body.
func (b *spooledBody) Close() {
	if b.mem != nil {
		bodyPool.Put(b.mem)
		b.mem = nil
	}
	if b.file != nil {
		b.file.Close()
		b.file = nil
	}
}

// errBodyTooLarge is a body over proxy.max_body_size.
var errBodyTooLarge = errors.New("request body too large")

// readBody reads the body of r (framed as fr) whole, each read within ClientBodyTimeout. When
// it cannot (too large: 413; too slow: 408; malformed: 400; the client left: 499), it answers
// the client itself and reports false.
func readBody(log *slog.Logger, rw http.ResponseWriter, r *http.Request, fr requestFraming, opts *Options) (*spooledBody, bool) {
	b := &spooledBody{framing: fr}
	if !fr.declared || r.Body == nil || r.Body == http.NoBody {
		return b, true
	}
	rc := http.NewResponseController(rw)
	err := b.fill(r.Body, rc, opts)
	rc.SetReadDeadline(time.Time{}) // net/http's watch for a client hang-up reads on
	if err == nil {
		return b, true
	}
	b.Close()
	switch {
	case errors.Is(err, errBodyTooLarge):
		rf := bodyTooLarge(opts, b.n)
		refuse(log, rw, r, rf.status, rf.reason)
	case errors.Is(err, os.ErrDeadlineExceeded):
		refuse(log, rw, r, http.StatusRequestTimeout, fmt.Sprintf("the request body stalled: nothing came for proxy.client_body_timeout (%s)", opts.ClientBodyTimeout))
	case errors.Is(err, io.ErrUnexpectedEOF) || r.Context().Err() != nil:
		log.Debug("client went away while sending its request body", "path", r.URL.Path, "client", r.RemoteAddr, "error", err)
		clientGone(r)
	case errors.Is(err, errSpool):
		log.Error("request body could not be stored", "path", r.URL.Path, "error", err)
		writePlainError(rw, http.StatusInternalServerError, "the request body could not be stored")
	default:
		refuse(log, rw, r, http.StatusBadRequest, "malformed request body: "+err.Error())
	}
	return nil, false
}

// errSpool is a failure of the temporary file, not of the client.
var errSpool = errors.New("temporary file")

// fill reads src into b.
func (b *spooledBody) fill(src io.Reader, rc *http.ResponseController, opts *Options) error {
	b.mem = bodyPool.Get().(*[]byte)
	buf := (*b.mem)[:cap(*b.mem)]
	for {
		if opts.ClientBodyTimeout > 0 {
			rc.SetReadDeadline(time.Now().Add(opts.ClientBodyTimeout))
		}
		var dst []byte
		if b.file == nil {
			if b.n == int64(len(buf)) {
				if err := b.toFile(); err != nil {
					return err
				}
				continue
			}
			dst = buf[b.n:]
		} else {
			dst = buf // a staging buffer on its way to the file
		}
		n, err := src.Read(dst)
		if n > 0 {
			if b.file != nil {
				if _, werr := b.file.Write(dst[:n]); werr != nil {
					return fmt.Errorf("%w: %w", errSpool, werr)
				}
			}
			b.n += int64(n)
			if bodyTooLarge(opts, b.n) != nil {
				return errBodyTooLarge
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// toFile moves the body read so far into an unlinked temporary file.
func (b *spooledBody) toFile() error {
	f, err := os.CreateTemp("", "warmpool-body-*")
	if err != nil {
		return fmt.Errorf("%w: %w", errSpool, err)
	}
	os.Remove(f.Name()) // the open file lives on; nothing is left if warmpool dies
	if _, err := f.Write((*b.mem)[:b.n]); err != nil {
		f.Close()
		return fmt.Errorf("%w: %w", errSpool, err)
	}
	b.file = f
	return nil
}
