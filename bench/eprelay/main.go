// Command eprelay is the proxy benchmark's second reference floor, not a proxy: bench/gorelay's
// relay written as an event loop, the way nginx works, instead of a goroutine per connection
// over Go's netpoller. Each of GOMAXPROCS loops owns a thread, its own listening socket
// (SO_REUSEPORT spreads the clients) and its own epoll set, and relays every read from one side
// to the other with raw system calls. Like gorelay it only works for exchanges that fit in one
// read and one write, as the benchmark's do. Its distance to gorelay is what the goroutine
// model costs on this machine: the netpoller leaves CPUs idle between wake-ups that an event
// loop fills.
//
//	eprelay --listen 127.0.0.1:8080 127.0.0.1:9001 127.0.0.1:9002
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

const soReusePort = 0xf // SO_REUSEPORT, which package syscall does not name

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve (IPv4)")
	flag.Parse()
	var workers []netip.AddrPort
	for _, a := range flag.Args() {
		ap, err := netip.ParseAddrPort(a)
		if err != nil || !ap.Addr().Is4() {
			fail(fmt.Errorf("worker %q: an IPv4 address and port are needed", a))
		}
		workers = append(workers, ap)
	}
	addr, err := netip.ParseAddrPort(*listen)
	if err != nil || !addr.Addr().Is4() || len(workers) == 0 {
		fail(fmt.Errorf("usage: eprelay --listen IPv4:PORT WORKER..."))
	}
	loops := make([]*loop, runtime.GOMAXPROCS(0))
	for i := range loops {
		if loops[i], err = newLoop(addr, workers, i); err != nil {
			fail(err)
		}
	}
	fmt.Fprintln(os.Stderr, "eprelay listening")
	for _, l := range loops[1:] {
		go l.run()
	}
	loops[0].run()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "eprelay:", err)
	os.Exit(1)
}

type loop struct {
	ln, ep  int
	workers []netip.AddrPort
	next    int
	peer    map[int]int // each socket's other side
	buf     []byte
	events  []syscall.EpollEvent
}

func newLoop(addr netip.AddrPort, workers []netip.AddrPort, first int) (*loop, error) {
	ln, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	syscall.SetsockoptInt(ln, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.SetsockoptInt(ln, syscall.SOL_SOCKET, soReusePort, 1); err != nil {
		return nil, fmt.Errorf("SO_REUSEPORT: %w", err)
	}
	if err := syscall.Bind(ln, &syscall.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}); err != nil {
		return nil, fmt.Errorf("bind %s: %w", addr, err)
	}
	if err := syscall.Listen(ln, 1024); err != nil {
		return nil, err
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	l := &loop{ln: ln, ep: ep, workers: workers, next: first, peer: map[int]int{},
		buf: make([]byte, 16<<10), events: make([]syscall.EpollEvent, 128)}
	return l, l.watch(ln)
}

func (l *loop) watch(fd int) error {
	return syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)})
}

func (l *loop) run() {
	runtime.LockOSThread() // the loop is the thread, as an nginx worker is its process
	for {
		n, err := syscall.EpollWait(l.ep, l.events, -1)
		if err != nil {
			continue // EINTR
		}
		for _, ev := range l.events[:n] {
			if fd := int(ev.Fd); fd == l.ln {
				l.accept()
			} else {
				l.relay(fd)
			}
		}
	}
}

func (l *loop) accept() {
	for {
		c, _, err := syscall.Accept4(l.ln, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN: none left
		}
		w := l.workers[l.next%len(l.workers)]
		l.next++
		u, err := dial(w)
		if err != nil {
			syscall.Close(c)
			continue
		}
		syscall.SetsockoptInt(c, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		l.peer[c], l.peer[u] = u, c
		if l.watch(c) != nil || l.watch(u) != nil {
			l.closePair(c)
		}
	}
}

// dial connects to a worker (blocking: loopback connects at once), then makes the socket
// non-blocking.
func dial(w netip.AddrPort) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: int(w.Port()), Addr: w.Addr().As4()}); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	return fd, syscall.SetNonblock(fd, true)
}

func (l *loop) relay(fd int) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&l.buf[0])), uintptr(len(l.buf)))
	switch {
	case errno == syscall.EAGAIN:
		return
	case errno != 0 || n == 0:
		l.closePair(fd)
		return
	}
	_, _, errno = syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(l.peer[fd]), uintptr(unsafe.Pointer(&l.buf[0])), n,
		syscall.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		l.closePair(fd)
	}
}

func (l *loop) closePair(fd int) {
	p, ok := l.peer[fd]
	if !ok {
		return
	}
	delete(l.peer, fd)
	delete(l.peer, p)
	syscall.Close(fd) // closing removes it from the epoll set
	syscall.Close(p)
}
