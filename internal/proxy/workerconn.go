package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync"
	"syscall"
	"unsafe"

	"warmpool/internal/rawsock"
)

// The connections to a worker are the front's: a pool of kept-alive ones per worker in
// rotation (the Balancer's backend holds it), each with its buffers; the worker package knows
// only how to dial the process.

// Conn is a kept-alive connection to a worker with its buffers.
type Conn struct {
	net.Conn
	R *bufio.Reader
	W *bufio.Writer
	// Reused reports that the connection served an earlier request.
	Reused bool

	raw       syscall.RawConn // nil when the connection has no file descriptor
	peek      func(fd uintptr) bool
	peekState IdleState
	peekByte  [1]byte
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
		// A raw system call: this runs before every reuse, so it skips the scheduler's
		// syscall bookkeeping (a non-blocking peek cannot block).
		n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.peekByte[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch {
		case errno == syscall.EAGAIN:
			c.peekState = IdleUsable
		case errno == 0 && n > 0:
			c.peekState = IdleUnread
		default:
			c.peekState = IdleClosed // EOF or an error
		}
		return true // never wait
	}
	return c
}

// IdleState is what a look at an idle connection finds.
type IdleState int

const (
	// IdleUsable: nothing to read; the connection may carry the next request.
	IdleUsable IdleState = iota
	// IdleClosed: the worker closed it (or it failed); nothing was lost.
	IdleClosed
	// IdleUnread: bytes nobody asked for wait on it: the worker sent more than its last
	// response's framing allowed. Whatever they are, they must never reach a client.
	IdleUnread
)

// Idle looks at an idle connection without blocking: bytes left in the buffer or readable on
// the socket, or the worker's close. Built once per connection, it allocates nothing.
func (c *Conn) Idle() IdleState {
	if c.R.Buffered() > 0 {
		return IdleUnread
	}
	if c.raw == nil {
		return IdleClosed
	}
	c.peekState = IdleClosed
	if err := c.raw.Read(c.peek); err != nil {
		return IdleClosed
	}
	return c.peekState
}

// ConnPool keeps idle connections to one worker.
type ConnPool struct {
	dial    func(ctx context.Context) (net.Conn, error)
	maxIdle int

	mu     sync.Mutex
	idle   []*Conn
	closed bool
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
