package worker

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"warmpool/internal/rawsock"
)

// Conn is a kept-alive connection to a worker with its buffers, for the proxy's synchronous
// HTTP/1.1 path.
type Conn struct {
	net.Conn
	R *bufio.Reader
	W *bufio.Writer
	// Reused reports that the connection served an earlier request.
	Reused bool

	raw      syscall.RawConn // nil when the connection has no file descriptor
	peek     func(fd uintptr) bool
	peekOK   bool
	peekByte [1]byte
}

func newConn(nc net.Conn) *Conn {
	var rw io.ReadWriter = nc
	if sock := rawsock.New(); sock.Reset(nc) {
		rw = sock // the request path's reads and writes skip the scheduler's syscall bookkeeping
	}
	c := &Conn{Conn: nc, R: bufio.NewReaderSize(rw, 16<<10), W: bufio.NewWriterSize(rw, 8<<10)}
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	c.peek = func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), c.peekByte[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		c.peekOK = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true // never wait
	}
	return c
}

// Alive peeks at an idle connection without blocking: one the worker closed shows EOF (or
// bytes nobody asked for), and is not to be used. Built once per connection, it allocates nothing.
func (c *Conn) Alive() bool {
	if c.R.Buffered() > 0 || c.raw == nil {
		return false
	}
	c.peekOK = false
	if err := c.raw.Read(c.peek); err != nil {
		return false
	}
	return c.peekOK
}

// ConnPool keeps idle connections to one worker.
type ConnPool struct {
	dial    func(ctx context.Context) (net.Conn, error)
	maxIdle int

	mu     sync.Mutex
	idle   []*Conn
	closed bool

	// closesIdle is set once the worker was seen closing a kept-alive connection.
	closesIdle atomic.Bool
}

// ClosesIdle reports that the worker was seen closing kept-alive connections (uWSGI after
// every response, gunicorn after its keepalive), so idle ones are worth checking before use.
func (p *ConnPool) ClosesIdle() bool { return p.closesIdle.Load() }

// NoteClosedIdle records that a kept-alive connection turned out closed by the worker.
func (p *ConnPool) NoteClosedIdle() {
	if !p.closesIdle.Load() {
		p.closesIdle.Store(true)
	}
}

// Get returns an idle connection, or dials a new one (dial failures are *DialError).
func (p *ConnPool) Get(ctx context.Context) (*Conn, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		c.Reused = true
		return c, nil
	}
	p.mu.Unlock()
	return p.Dial(ctx)
}

// Dial opens a new connection, bypassing the idle ones.
func (p *ConnPool) Dial(ctx context.Context) (*Conn, error) {
	nc, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	return newConn(nc), nil
}

// Put keeps c for the next request, or closes it when the pool is full or closed.
func (p *ConnPool) Put(c *Conn) {
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// Close closes the idle connections and refuses new ones.
func (p *ConnPool) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}
