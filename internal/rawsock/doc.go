// Package rawsock reads and writes connected stream sockets (TCP and unix) on the request
// path with raw system calls, and waits through Go's netpoller only when a socket is not
// ready.
//
// A net.Conn read or write enters and leaves the scheduler's syscall state around the call, so
// that a blocking call cannot hold a P; on a non-blocking socket the call never blocks, and
// that bookkeeping was about a tenth of the front's user CPU per request. Deadlines, Close and
// the netpoller's wake-ups still go through the net.Conn's own descriptor, so everything else
// about the connection is unchanged.
package rawsock
