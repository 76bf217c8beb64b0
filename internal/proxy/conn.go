package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"warmpool/internal/h1"
	"warmpool/internal/rawsock"
	"warmpool/internal/telemetry"
)

// Client connection sizes on the lean path. A request head must fit in the read buffer (a
// larger one goes to net/http, which allows up to 1 MiB); a request body of up to
// maxBufferedBody is read whole before a worker is leased, so a slow client never holds a
// worker (larger bodies stream through net/http).
const (
	clientReadBuffer  = 8 << 10
	clientWriteBuffer = 8 << 10
	maxBufferedBody   = 64 << 10
)

// Connection states, for shutdown: only an idle connection is closed under a client.
const (
	connIdle int32 = iota
	connActive
	connClosing
)

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, clientReadBuffer) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, clientWriteBuffer) }}
	bodyPool   = sync.Pool{New: func() any { b := make([]byte, 0, maxBufferedBody); return &b }}
	sockPool   = sync.Pool{New: func() any { return rawsock.New() }}
)

// clientConn is one client connection on the lean path.
type clientConn struct {
	s        *Server
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	state    atomic.Int32
	client   []byte     // the client's IP, for X-Forwarded-For
	addr     netip.Addr // the same, to match against proxy.trusted_proxies
	seq      int        // the connection's number, which spreads telemetry over its shards
	requests int        // leases tried on this connection; with seq, rotates the balancer's tie-break

	req        h1.Request
	rsp        response // the response of the exchange under way (its head buffer is reused)
	handoffWhy string   // why the connection goes to net/http
	reqCopy    []byte   // the request head, when its body does not fit beside it in br
	bigBody    *[]byte  // the pooled buffer holding such a body
	info       telemetry.Request
	infoOrNil  *telemetry.Request // &info when the request is observed or traced, else nil

	// The request being served: its body (read whole), the options it is served with, and
	// whether the connection may serve another after it.
	body []byte
	opts *Options
	keep bool

	deadline time.Time       // the read deadline in force
	now      time.Time       // the latest time taken on this request (one clock read serves many uses)
	base     time.Time       // the connection's start, for clock
	ctx      context.Context // the request's context: its server span when tracing, else Background

	// await is the wait for the response head of the exchange under way, within the
	// request timeout, which the watchdog keeps.
	await headWait

	// upstream is the worker connection of the exchange under way, and watch its state for
	// the watchdog's check that the client is still there (watch*, below).
	upstream *Conn
	upWatch  atomic.Int32
	raw      syscall.RawConn // the client socket, for that check; nil without one

	// out is what bw writes to: it notes since when a write to the client is under way
	// (sendingSince, Unix ns; 0: none), so that the watchdog can cut a client that stopped
	// reading its response (proxy.send_timeout) instead of letting it hold a worker.
	out          sendingWriter
	sendingSince atomic.Int64
}

// sendingWriter is a client connection's writer that notes when each write began. While a
// worker's response is relayed (buffering), a write the client cannot take at once goes to a
// spill, which a goroutine of its own writes out, so that the worker is not held by a slow
// client (spill.go).
type sendingWriter struct {
	c   *clientConn
	w   io.Writer
	raw *rawsock.Conn // the same socket, when writes can be tried without waiting; else nil

	buffering bool // a worker's response is being relayed
	sp        *spill
	drained   chan error // the spill's writer's end
}

func (sw *sendingWriter) Write(p []byte) (int, error) {
	if sw.sp != nil {
		return sw.sp.Write(p) // fails once the spill's writer failed (the client is gone)
	}
	if sw.buffering && sw.raw != nil {
		n, err := sw.raw.TryWrite(p)
		if err != nil || n == len(p) {
			return n, err
		}
		sw.startSpill()
		if _, err := sw.sp.Write(p[n:]); err != nil {
			return n, err
		}
		return len(p), nil
	}
	return sw.write(p)
}

// write writes p to the client, waiting for it to take it within the send timeout.
func (sw *sendingWriter) write(p []byte) (int, error) {
	c := sw.c
	c.sendingSince.Store(c.clock().UnixNano())
	n, err := sw.w.Write(p)
	c.sendingSince.Store(0)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.s.log.Warn("client stopped reading its response; connection closed", "client", string(c.client),
			"path", string(c.req.Path()), "send_timeout", c.s.front.opts.Load().SendTimeout)
	}
	return n, err
}

// startSpill begins buffering the rest of the response: the client is behind.
func (sw *sendingWriter) startSpill() {
	sw.sp = newSpill(sw.c.s.front.opts.Load().MaxBufferedResponse)
	sw.drained = make(chan error, 1)
	sp, drained := sw.sp, sw.drained
	go func() { // owned by the connection: finishSpill waits for it
		bp := bodyPool.Get().(*[]byte)
		defer bodyPool.Put(bp)
		buf := (*bp)[:cap(*bp)]
		for {
			n, err := sp.Read(buf)
			if n > 0 {
				if _, werr := sw.write(buf[:n]); werr != nil {
					sp.Fail(&h1.WriteError{Err: werr})
					drained <- werr
					return
				}
			}
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				drained <- err
				return
			}
		}
	}()
}

// finishSpill waits until the spill, if any, reached the client, and reports a failure to
// write it.
func (sw *sendingWriter) finishSpill() error {
	sw.buffering = false
	if sw.sp == nil {
		return nil
	}
	sw.sp.CloseWrite()
	err := <-sw.drained
	sw.sp.Release()
	sw.sp, sw.drained = nil, nil
	return err
}

// cutIfStalled is the watchdog's other check: a write to the client under way for longer than
// timeout gets a past write deadline, which fails it.
func (c *clientConn) cutIfStalled(now int64, timeout time.Duration) {
	if since := c.sendingSince.Load(); timeout > 0 && since > 0 && now-since > int64(timeout) {
		c.nc.SetWriteDeadline(time.Unix(1, 0))
	}
}

// clock is time.Now at half the cost: the wall time is derived from the connection's start
// and one read of the monotonic clock (time.Now reads both clocks).
func (c *clientConn) clock() time.Time { return c.base.Add(time.Since(c.base)) }

// States of clientConn.upWatch. The connection's goroutine sets upstream, then watchOn; the
// watchdog moves watchOn to watchCutting, cuts upstream and sets watchCut; the goroutine, at
// the exchange's end, moves watchOn back to watchOff or, failing that, waits for watchCut
// before it lets go of upstream: so the watchdog never cuts a connection that went back to
// the pool.
const (
	watchOff int32 = iota
	watchOn
	watchCutting
	watchCut
)

// beginWatch starts the watch on the client for an exchange with wc.
func (c *clientConn) beginWatch(wc *Conn) {
	c.upstream = wc
	c.upWatch.Store(watchOn)
}

// endWatch ends it and reports whether the watchdog cut wc because the client left.
func (c *clientConn) endWatch() (left bool) {
	if c.upWatch.CompareAndSwap(watchOn, watchOff) {
		c.upstream = nil
		return false
	}
	for c.upWatch.Load() != watchCut { // the watchdog is cutting: a few instructions away
		runtime.Gosched()
	}
	c.upWatch.Store(watchOff)
	c.upstream = nil
	return true
}

// clientLeft reports whether the watchdog cut the exchange under way because the client left.
func (c *clientConn) clientLeft() bool { return c.upWatch.Load() >= watchCutting }

// cutIfLeft is the watchdog's check on a client whose request is with a worker: a client that
// closed its connection (EOF or reset on a peek) has the worker connection cut, so the worker
// is released within a watchdog tick, as on net/http's path, instead of at the response's end.
func (c *clientConn) cutIfLeft() {
	if c.upWatch.Load() != watchOn || c.raw == nil || !peerClosed(c.raw) {
		return
	}
	if c.upWatch.CompareAndSwap(watchOn, watchCutting) {
		c.upstream.SetReadDeadline(time.Unix(1, 0))
		c.upWatch.Store(watchCut)
	}
}

// peerClosed peeks at a socket without blocking or taking its read lock: EOF or an error means
// the peer is gone; bytes (a pipelined request) or nothing yet mean it is there.
func peerClosed(rc syscall.RawConn) bool {
	gone := false
	rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		gone = errno == 0 && n == 0 || errno != 0 && errno != syscall.EAGAIN
	})
	return gone
}

// watch is the watchdog's look at a lean connection: its response head overdue, its client
// not reading, or gone.
func (c *clientConn) watch(now int64, opts *Options) {
	c.await.cutIfOverdue(now)
	c.cutIfStalled(now, opts.SendTimeout)
	c.cutIfLeft()
}

func newClientConn(s *Server, nc net.Conn, seq int) *clientConn {
	c := &clientConn{s: s, nc: nc, seq: seq, base: time.Now()}
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.addr = ta.AddrPort().Addr().Unmap()
		c.client = c.addr.AppendTo(nil) // as net prints it: IPv4 dotted, zone kept
	} else if host, _, err := net.SplitHostPort(nc.RemoteAddr().String()); err == nil {
		c.client = []byte(host)
	} else {
		c.client = []byte(nc.RemoteAddr().String())
	}
	return c
}

// closeIfIdle closes the connection if it waits for a request (shutdown).
func (c *clientConn) closeIfIdle() {
	if c.state.CompareAndSwap(connIdle, connClosing) {
		c.nc.SetReadDeadline(time.Unix(1, 0)) // wakes the read; the goroutine closes the connection
	}
}

// serve runs the connection's request loop until the client or shutdown ends it, or the
// connection is handed to net/http.
func (c *clientConn) serve() {
	defer c.s.forget(c)
	sock := c.takeBuffers()
	handed := false
	defer func() { c.giveBuffers(sock, handed) }()
	for {
		c.state.Store(connIdle)
		if c.s.shutting.Load() {
			return
		}
		if c.requests == 0 && c.now.IsZero() {
			// Before its first byte a connection gets no more than the head's time, as on
			// net/http's side: an idle client holds its buffers only so long.
			c.shortenReadDeadline(c.s.readHeaderTimeout)
		} else {
			c.extendReadDeadline(c.s.idleTimeout)
		}
		if _, err := c.br.Peek(1); err != nil {
			return // closed, idle too long, or shut down
		}
		if !c.state.CompareAndSwap(connIdle, connActive) {
			return // shutdown closed it just now
		}
		n, body, ok := c.readRequest()
		if !ok {
			return
		}
		if n < 0 {
			handed = c.handOff()
			return
		}
		keep := c.serveRequest(body)
		if c.bigBody != nil {
			bodyPool.Put(c.bigBody)
			c.bigBody = nil
		} else {
			c.br.Discard(n + len(body))
		}
		if !keep {
			return
		}
	}
}

// takeBuffers gives the connection its pooled reader and writer, over the raw socket when it
// has one (returned: giveBuffers puts it back).
func (c *clientConn) takeBuffers() *rawsock.Conn {
	var rw io.ReadWriter = c.nc
	sock := sockPool.Get().(*rawsock.Conn)
	if sock.Reset(c.nc) {
		rw = sock
	}
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(rw)
	c.bw = writerPool.Get().(*bufio.Writer)
	c.out = sendingWriter{c: c, w: rw}
	if rw == io.ReadWriter(sock) {
		c.out.raw = sock
	}
	c.bw.Reset(&c.out)
	return sock
}

// giveBuffers puts the buffers back as the connection ends; a connection handed to net/http
// keeps its reader (with what it read ahead) and the socket under it, and is not closed.
func (c *clientConn) giveBuffers(sock *rawsock.Conn, handed bool) {
	c.bw.Reset(nil)
	writerPool.Put(c.bw)
	if !handed {
		c.nc.Close()
		c.br.Reset(nil)
		readerPool.Put(c.br)
		sock.Reset(nil)
		sockPool.Put(sock)
	}
}

// readRequest reads the next request head (and its body, if small) into c.req. n is the
// length of the head in br, or -1 when the request is for net/http. ok false: the connection
// is to be closed.
func (c *clientConn) readRequest() (n int, body []byte, ok bool) {
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		var res h1.Result
		n, res = h1.ParseRequest(buf, &c.req)
		switch res {
		case h1.Unsupported:
			c.handoffWhy = c.req.Why
			return -1, nil, true
		case h1.Smuggling:
			c.s.log.Warn("request refused", "status", http.StatusBadRequest, "client", string(c.client), "reason", refusedLengthWithEncoding)
			c.writeError(http.StatusBadRequest, refusedLengthWithEncoding, false)
			return 0, nil, false
		case h1.Incomplete:
			if len(buf) == c.br.Size() {
				c.handoffWhy = whyLargeHead // net/http takes heads up to 1 MiB
				return -1, nil, true
			}
			c.shortenReadDeadline(c.s.readHeaderTimeout) // a slow client: bound the whole head
			if _, err := c.br.Peek(len(buf) + 1); err != nil {
				return 0, nil, false
			}
			continue
		}
		if rf := bodyTooLarge(c.s.front.opts.Load(), leanFraming(&c.req).length); rf != nil {
			c.s.log.Warn("request refused", "status", rf.status, "client", string(c.client), "path", string(c.req.Path()), "reason", rf.reason)
			c.writeError(rf.status, rf.reason, false) // the body is left unread: the connection closes
			return 0, nil, false
		}
		if c.handoffWhy = handoffReason(&c.req); c.handoffWhy != "" {
			return -1, nil, true
		}
		cl := int(max(c.req.ContentLength, 0))
		if cl == 0 {
			return n, nil, true
		}
		if n+cl <= c.br.Size() {
			if len(buf) < n+cl {
				if !c.awaitBody(func() error { _, err := c.br.Peek(len(buf) + 1); return err }) {
					return 0, nil, false
				}
				continue // the buffer may have moved: parse again
			}
			return n, buf[n : n+cl], true
		}
		body, ok = c.readBodyApart(buf[:n], cl)
		return n, body, ok
	}
}

// readBodyApart reads a body of cl bytes that does not fit beside its head in br: the head is
// copied out (and parsed again there), and the body read into a pooled buffer of its own.
func (c *clientConn) readBodyApart(head []byte, cl int) ([]byte, bool) {
	c.reqCopy = append(c.reqCopy[:0], head...)
	h1.ParseRequest(c.reqCopy, &c.req)
	c.br.Discard(len(head))
	bp := bodyPool.Get().(*[]byte)
	body := (*bp)[:cl]
	for read := 0; read < cl; {
		if !c.awaitBody(func() error { k, err := c.br.Read(body[read:]); read += k; return err }) {
			bodyPool.Put(bp)
			return nil, false
		}
	}
	c.bigBody = bp
	return body, true
}

// awaitBody runs read, a wait for more of the request body, within proxy.client_body_timeout.
// A body that stalls is answered 408; false means the connection is to be closed.
func (c *clientConn) awaitBody(read func() error) bool {
	timeout := c.s.front.opts.Load().ClientBodyTimeout
	if timeout > 0 {
		c.deadline = time.Now().Add(timeout)
		c.nc.SetReadDeadline(c.deadline)
	}
	err := read()
	if err == nil {
		return true
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.s.log.Warn("request refused", "status", http.StatusRequestTimeout, "client", string(c.client), "path", string(c.req.Path()),
			"reason", "the request body stalled")
		c.writeError(http.StatusRequestTimeout, "the request body stalled: nothing came for proxy.client_body_timeout ("+timeout.String()+")", false)
	}
	return false
}

// extendReadDeadline puts the read deadline d from now. Moving a deadline costs a timer
// update, so one that is at most a second short of it is kept: on a busy connection the timer
// moves about once a second, not once a request.
func (c *clientConn) extendReadDeadline(d time.Duration) {
	if d <= 0 {
		if !c.deadline.IsZero() {
			c.deadline = time.Time{}
			c.nc.SetReadDeadline(c.deadline)
		}
		return
	}
	if c.now.IsZero() {
		c.now = c.clock()
	}
	want := c.now.Add(d) // the end of the last request: close enough to now
	if c.deadline.IsZero() || want.Sub(c.deadline) > time.Second || c.deadline.After(want) {
		c.deadline = want
		c.nc.SetReadDeadline(want)
	}
}

// shortenReadDeadline brings the read deadline to at most d from now (slow heads and bodies).
func (c *clientConn) shortenReadDeadline(d time.Duration) {
	if d <= 0 {
		return
	}
	if want := time.Now().Add(d); c.deadline.IsZero() || c.deadline.After(want) {
		c.deadline = want
		c.nc.SetReadDeadline(want)
	}
}

// handOff gives the connection, with what was read of it, to net/http.
func (c *clientConn) handOff() bool {
	c.s.log.Debug("connection handed to net/http", "reason", c.handoffWhy, "client", string(c.client))
	if f := c.s.front.opts.Load().OnHandoff; f != nil {
		f(c.handoffWhy)
	}
	c.deadline = time.Time{}
	c.nc.SetReadDeadline(c.deadline) // net/http sets its own
	return c.s.handoff.give(c.s.guarded(&handedConn{Conn: c.nc, r: c.br}, nil))
}
