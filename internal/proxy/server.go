package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Server serves the front's listener. On a cleartext one, every connection starts on the lean
// HTTP/1.1 path (see conn.go): requests are parsed in place and forwarded without net/http's
// per-request machinery. The first request that path does not take (HTTP/1.0, a chunked or
// large upload, an upgrade, "Expect: 100-continue", a head over 8 KiB or one net/http should
// judge) hands the connection, with the bytes already read, to the net/http server for good;
// Options.OnHandoff is told why. With TLS (ServeTLS), the Server ends TLS itself and gives
// each connection to net/http: HTTP/2 as it is, HTTP/1.1 through the framing guard that
// handed-off connections have too (guard.go), so that every HTTP/1.x request net/http parses
// is held to the lean path's framing rules.
type Server struct {
	front   *Front
	http    *http.Server
	handoff *handoffListener
	log     *slog.Logger

	readHeaderTimeout, idleTimeout time.Duration
	tlsConfig                      *tls.Config // set by ServeTLS

	mu         sync.Mutex
	ln         net.Listener
	conns      map[*clientConn]struct{}
	handshakes map[net.Conn]struct{} // TLS connections in their handshake
	shutting   atomic.Bool
	wg         sync.WaitGroup // connection goroutines and net/http's Serve
	idle       chan struct{}  // signalled when a connection ends during shutdown

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
	s := &Server{front: front, http: srv, log: front.log, handoff: newHandoffListener(),
		readHeaderTimeout: srv.ReadHeaderTimeout, idleTimeout: srv.IdleTimeout,
		conns: map[*clientConn]struct{}{}, handshakes: map[net.Conn]struct{}{}, idle: make(chan struct{}, 1),
		next: make(chan *clientConn), stop: make(chan struct{})}
	prior := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if prior != nil {
			ctx = prior(ctx, c)
		}
		if g, ok := c.(*guardedConn); ok && g.tls != nil { // net/http sees no *tls.Conn: r.TLS is nil
			st := g.tls.ConnectionState()
			ctx = context.WithValue(ctx, tlsStateKey{}, &st)
		}
		return ctx
	}
	return s
}

// tlsStateKey carries the TLS state of a guarded connection in its requests' contexts.
type tlsStateKey struct{}

// tlsState is the TLS state of the connection r came on; nil for cleartext.
func tlsState(r *http.Request) *tls.ConnectionState {
	if r.TLS != nil {
		return r.TLS
	}
	st, _ := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
	return st
}

// ServeTLS is Serve for a TLS listener with the certificate and key in these PEM files:
// HTTP/2 and HTTP/1.1 are offered (ALPN).
func (s *Server) ServeTLS(ln net.Listener, certFile, keyFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		ln.Close()
		return fmt.Errorf("tls: %w", err)
	}
	s.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	return s.Serve(ln)
}

// tlsHandshakeTimeout bounds a TLS handshake (net/http's bound is its ReadHeaderTimeout too).
const tlsHandshakeTimeout = 10 * time.Second

// handshake ends TLS on nc and gives the connection to net/http: an HTTP/2 one as it is, an
// HTTP/1.1 one guarded.
func (s *Server) handshake(nc net.Conn) {
	tc := tls.Server(nc, s.tlsConfig)
	timeout := tlsHandshakeTimeout
	if s.readHeaderTimeout > 0 {
		timeout = min(timeout, s.readHeaderTimeout)
	}
	tc.SetDeadline(time.Now().Add(timeout))
	err := tc.Handshake()
	s.mu.Lock()
	delete(s.handshakes, nc)
	s.mu.Unlock()
	if err != nil {
		s.log.Debug("TLS handshake failed", "client", nc.RemoteAddr().String(), "error", err)
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{}) // net/http sets its own
	var c net.Conn = tc
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		c = s.guarded(tc, tc)
	}
	if !s.handoff.give(c) {
		tc.Close()
	}
}

// guarded wraps a connection for net/http in the framing guard, which logs a refusal.
func (s *Server) guarded(c net.Conn, tc *tls.Conn) *guardedConn {
	client := c.RemoteAddr().String()
	return &guardedConn{Conn: c, tls: tc, onRefuse: func(reason string) {
		s.log.Warn("request refused", "status", http.StatusBadRequest, "client", client, "reason", reason)
	}}
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
			if backoff = s.acceptBackoff(err, backoff); backoff > 0 {
				continue
			}
			s.http.Close()
			<-httpDone
			return err
		}
		backoff = 0
		if s.tlsConfig != nil {
			s.mu.Lock()
			if s.shutting.Load() {
				s.mu.Unlock()
				nc.Close()
				return http.ErrServerClosed
			}
			s.handshakes[nc] = struct{}{}
			s.mu.Unlock()
			s.wg.Go(func() { s.handshake(nc) })
			continue
		}
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

// acceptBackoff waits after an accept failure that passes (out of file descriptors and the
// like), as net/http does, and returns the wait for the next one; 0: the failure is final.
func (s *Server) acceptBackoff(err error, last time.Duration) time.Duration {
	var ne net.Error
	if !(errors.As(err, &ne) && ne.Timeout() || acceptMayRecover(err)) {
		return 0
	}
	backoff := min(max(2*last, 5*time.Millisecond), time.Second)
	s.log.Warn("accept failed; retrying", "error", err, "in", backoff)
	time.Sleep(backoff)
	return backoff
}

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
	for nc := range s.handshakes { // no request yet
		nc.Close()
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
	for nc := range s.handshakes {
		nc.Close()
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
