package rawsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns both ends of a connected socket of the network ("tcp" or "unix").
func pair(t *testing.T, network string) (client, server net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			c = nil
		}
		accepted <- c
	}()
	client, err = net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func raw(t *testing.T, nc net.Conn) *Conn {
	t.Helper()
	c := New()
	if !c.Reset(nc) {
		t.Fatalf("Reset(%T) = false", nc)
	}
	return c
}

func TestReadWriteBothWays(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			a, b := pair(t, network)
			ra, rb := raw(t, a), raw(t, b)
			if n, err := ra.Write([]byte("ping")); n != 4 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			buf := make([]byte, 16)
			n, err := io.ReadAtLeast(rb, buf, 4)
			if err != nil || string(buf[:n]) != "ping" {
				t.Fatalf("Read = %q, %v", buf[:n], err)
			}
			// The reader waits for data that comes later (the netpoller path, not a busy loop).
			got := make(chan string, 1)
			go func() {
				n, err := ra.Read(buf)
				if err != nil {
					got <- err.Error()
					return
				}
				got <- string(buf[:n])
			}()
			if _, err := rb.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			if s := <-got; s != "pong" {
				t.Fatalf("Read after wait = %q", s)
			}
		})
	}
}

// A write larger than the socket buffers completes as the reader drains it.
func TestLargeWriteWaitsForRoom(t *testing.T) {
	a, b := pair(t, "tcp")
	ra := raw(t, a)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	done := make(chan error, 1)
	go func() {
		n, err := ra.Write(payload)
		if err == nil && n != len(payload) {
			err = io.ErrShortWrite
		}
		done <- err
	}()
	got, err := io.ReadAll(io.LimitReader(b, int64(len(payload))))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("read %d bytes, not the %d written", len(got), len(payload))
	}
}

func TestEOF(t *testing.T) {
	a, b := pair(t, "tcp")
	ra := raw(t, a)
	b.Close()
	if n, err := ra.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer closed = %d, %v; want io.EOF", n, err)
	}
}

// A peer that reset the connection fails the read with ECONNRESET and the next write with
// EPIPE, and raises no SIGPIPE: the test process would die of it.
func TestPeerReset(t *testing.T) {
	a, b := pair(t, "tcp")
	ra := raw(t, a)
	b.(*net.TCPConn).SetLinger(0) // Close sends a RST
	b.Close()
	if _, err := ra.Read(make([]byte, 8)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after a reset = %v; want ECONNRESET", err)
	}
	if _, err := ra.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("Write after a reset = %v; want EPIPE", err)
	}
}

func TestDeadlineAndClose(t *testing.T) {
	a, _ := pair(t, "unix")
	ra := raw(t, a)
	a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := ra.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %v; want a timeout", err)
	}
	a.SetReadDeadline(time.Time{})
	a.Close()
	if _, err := ra.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close = %v; want net.ErrClosed", err)
	}
	if _, err := ra.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v; want net.ErrClosed", err)
	}
}

func TestResetRefusesWhatIsNoSocket(t *testing.T) {
	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	if New().Reset(p) {
		t.Fatal("Reset(net.Pipe) = true; a pipe has no descriptor")
	}
	if New().Reset(nil) {
		t.Fatal("Reset(nil) = true")
	}
}

func TestReadWriteAllocateNothing(t *testing.T) {
	a, b := pair(t, "tcp")
	ra, rb := raw(t, a), raw(t, b)
	msg, buf := []byte("hello"), make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := ra.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rb, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a write and a read allocate %.1f times; want 0", allocs)
	}
}
