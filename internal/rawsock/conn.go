package rawsock

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Conn is the raw reader and writer of one socket. It is not safe for concurrent reads, nor for
// concurrent writes; one reader and one writer may run at once, as with a net.Conn.
type Conn struct {
	rc syscall.RawConn

	// The operation in progress, for the closures below (built once, so a call allocates nothing).
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	wbuf   []byte
	wn     int
	werrno syscall.Errno

	readFn, writeFn, tryWriteFn func(fd uintptr) bool
}

// New returns a Conn for no socket yet; Reset gives it one. A Conn may be pooled and reset for
// the next socket.
func New() *Conn {
	c := &Conn{}
	c.readFn = c.read
	c.writeFn = c.write
	c.tryWriteFn = c.tryWrite
	return c
}

// Reset makes c the raw I/O of nc. It reports false when nc is not a plain socket (TLS, a
// pipe): the caller then reads and writes nc itself. Reset(nil) forgets the socket.
func (c *Conn) Reset(nc net.Conn) bool {
	c.rc = nil
	switch nc.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return false
	}
	rc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		return false
	}
	c.rc = rc
	return true
}

// Read reads into p what the socket has, waiting until it has something. It returns io.EOF
// when the peer closed its side, and the net.Conn's errors for deadlines and Close.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rbuf, c.rn, c.rerrno = p, 0, 0
	err := c.rc.Read(c.readFn)
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case c.rerrno != 0:
		return 0, os.NewSyscallError("read", c.rerrno)
	case c.rn == 0:
		return 0, io.EOF
	}
	return c.rn, nil
}

// read is one attempt; false means "not ready: wait for the netpoller".
func (c *Conn) read(fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch errno {
		case 0:
			c.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			c.rerrno = errno
			return true
		}
	}
}

// Write writes all of p, waiting for room in the socket's buffer as needed. A peer that is
// gone gives EPIPE or ECONNRESET, without a SIGPIPE.
func (c *Conn) Write(p []byte) (int, error) { return c.writeWith(p, c.writeFn) }

// TryWrite writes what of p the socket's buffer takes now, without waiting for room: n below
// len(p) with a nil error means the peer is behind.
func (c *Conn) TryWrite(p []byte) (int, error) { return c.writeWith(p, c.tryWriteFn) }

func (c *Conn) writeWith(p []byte, fn func(fd uintptr) bool) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wbuf, c.wn, c.werrno = p, 0, 0
	err := c.rc.Write(fn)
	c.wbuf = nil
	switch {
	case err != nil:
		return c.wn, err
	case c.werrno != 0:
		return c.wn, os.NewSyscallError("write", c.werrno)
	}
	return c.wn, nil
}

// tryWrite is write that never waits for the netpoller.
func (c *Conn) tryWrite(fd uintptr) bool {
	c.write(fd)
	return true
}

func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		rest := c.wbuf[c.wn:]
		n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)),
			syscall.MSG_NOSIGNAL, 0, 0)
		switch errno {
		case 0:
			c.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werrno = errno
			return true
		}
	}
	return true
}
