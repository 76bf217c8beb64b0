package proxy

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Server serves the front's cleartext listener. Every connection starts on the lean HTTP/1.1
// path (see conn.go): requests are parsed in place and forwarded without net/http's per-request
// machinery. The first request that path does not take (HTTP/1.0, a chunked or large upload,
// an upgrade, "Expect: 100-continue", a head over 8 KiB or one net/http should judge) hands the
// connection, with the bytes already read, to the net/http server for good; Options.OnHandoff
// is told why.
type Server struct {
	front   *Front
	http    *http.Server
	handoff *handoffListener
	log     *slog.Logger

	readHeaderTimeout, idleTimeout time.Duration

	mu       sync.Mutex
	ln       net.Listener
	conns    map[*clientConn]struct{}
	shutting atomic.Bool
	wg       sync.WaitGroup // connection goroutines and net/http's Serve
	idle     chan struct{}  // signalled when a connection ends during shutdown

	// A connection goroutine that finished its connection waits a while for the next one: a
	// fresh goroutine would grow its stack again, copying it, for every connection.
	next     chan *clientConn
	stop     chan struct{} // closed when serving ends: waiting goroutines exit
	stopOnce sync.Once
}

// HTTPMaxHeaderBytes is the http.Server.MaxHeaderBytes that refuses heads over limit bytes:
// net/http reads 4 KiB past its setting before it answers 431.
func HTTPMaxHeaderBytes(limit int64) int { return int(max(limit-4<<10, 4<<10)) }

// connReuseWait is how long a connection goroutine waits for another connection.
const connReuseWait = 10 * time.Second

// NewServer returns a server for front; srv (its Handler is the front) serves handed-off
// connections, and its ReadHeaderTimeout and IdleTimeout apply on the lean path too.
func NewServer(front *Front, srv *http.Server) *Server {
	return &Server{front: front, http: srv, log: front.log, handoff: newHandoffListener(),
		readHeaderTimeout: srv.ReadHeaderTimeout, idleTimeout: srv.IdleTimeout,
		conns: map[*clientConn]struct{}{}, idle: make(chan struct{}, 1),
		next: make(chan *clientConn), stop: make(chan struct{})}
}

// Serve accepts connections on ln until Shutdown or Close, and then returns
// http.ErrServerClosed. ln is closed on return.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.ln = ln
	s.mu.Unlock()
	defer ln.Close()
	s.handoff.setAddr(ln.Addr())
	httpDone := make(chan error, 1)
	s.wg.Go(func() { httpDone <- s.http.Serve(s.handoff) })
	var backoff time.Duration
	for seq := 0; ; seq++ {
		nc, err := ln.Accept()
		if err != nil {
			if s.shutting.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || acceptMayRecover(err) {
				// Out of file descriptors and the like: wait and retry, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "error", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			s.http.Close()
			<-httpDone
			return err
		}
		backoff = 0
		c := newClientConn(s, nc, seq)
		s.mu.Lock()
		if s.shutting.Load() {
			s.mu.Unlock()
			nc.Close()
			return http.ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.front.watchdog.track(c)
		s.mu.Unlock()
		select {
		case s.next <- c: // a goroutine that served another connection takes it
		default:
			s.wg.Go(func() { s.serveConns(c) })
		}
	}
}

// serveConns serves c, then the connections Serve hands it, until none comes for a while.
func (s *Server) serveConns(c *clientConn) {
	wait := time.NewTimer(connReuseWait)
	defer wait.Stop()
	for {
		c.serve()
		wait.Reset(connReuseWait)
		select {
		case c = <-s.next:
		case <-wait.C:
			return
		case <-s.stop:
			return
		}
	}
}

func (s *Server) stopConnGoroutines() { s.stopOnce.Do(func() { close(s.stop) }) }

// acceptMayRecover is an accept failure that passes (out of file descriptors or memory).
func acceptMayRecover(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// forget is called as a connection ends.
func (s *Server) forget(c *clientConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.front.watchdog.untrack(c)
	s.mu.Unlock()
	if s.shutting.Load() {
		select {
		case s.idle <- struct{}{}:
		default:
		}
	}
}

// Shutdown stops accepting, closes idle connections, lets each active one finish its request
// and close, and shuts down the net/http side the same way. When ctx ends first, the remaining
// connections are cut off and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutting.Store(true)
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
	// The lean side first: its connections may still hand requests to net/http meanwhile.
	for {
		s.mu.Lock()
		for c := range s.conns {
			c.closeIfIdle()
		}
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-s.idle:
		case <-time.After(100 * time.Millisecond): // a safety net; connections signal idle
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		}
	}
	s.stopConnGoroutines()
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
	}
	s.wg.Wait()
	return err
}

// Close closes the listener and every connection at once, and waits for their goroutines.
func (s *Server) Close() error {
	s.shutting.Store(true)
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.stopConnGoroutines()
	err := s.http.Close()
	s.wg.Wait()
	return err
}

// handoffListener feeds connections from the lean path to net/http's Serve.
type handoffListener struct {
	conns  chan net.Conn
	done   chan struct{}
	once   sync.Once
	addrMu sync.Mutex
	addr   net.Addr
}

func newHandoffListener() *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) setAddr(a net.Addr) {
	l.addrMu.Lock()
	l.addr = a
	l.addrMu.Unlock()
}

// give passes c to net/http; false when the listener is closed (c is then the caller's).
func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr {
	l.addrMu.Lock()
	defer l.addrMu.Unlock()
	if l.addr == nil {
		return &net.TCPAddr{}
	}
	return l.addr
}

// handedConn is a connection given to net/http with the bytes the lean path already read.
type handedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *handedConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil // drained: read the socket directly from now on
	}
	return c.Conn.Read(p)
}
