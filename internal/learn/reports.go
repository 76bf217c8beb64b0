package learn

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The forked workers' reports: each sends datagrams {"modules": [names]} to a unix datagram
// socket in the private socket directory. The kernel attaches the sender's pid (SO_PASSCRED),
// so a report is taken only from a process that is a worker of the pool, whatever it claims.
const (
	maxReport        = 64 << 10 // the helper splits its reports below this
	maxReportModules = 1024
)

func reportSocketPath(dir string) string { return filepath.Join(dir, "learn.sock") }

type reportSocket struct {
	path string
	conn *net.UnixConn
}

func listenReports(path string) (*reportSocket, error) {
	os.Remove(path) // a socket left by a warmpool that was killed
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("the socket workers report their imports to: %w", err)
	}
	raw, err := conn.SyscallConn()
	if err == nil {
		var serr error
		err = raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
		err = errors.Join(err, serr)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("SO_PASSCRED on %s: %w", path, err)
	}
	return &reportSocket{path: path, conn: conn}, nil
}

// serve reads reports until close, handing each sender's pid and names to take.
func (rs *reportSocket) serve(take func(pid int, names []string)) {
	buf := make([]byte, maxReport)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		n, oobn, _, _, err := rs.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a truncated datagram, or credentials that did not fit: skip it
		}
		pid, ok := senderPID(oob[:oobn])
		if !ok {
			continue
		}
		var report struct {
			Modules []string `json:"modules"`
		}
		if json.Unmarshal(buf[:n], &report) != nil || len(report.Modules) > maxReportModules {
			continue
		}
		take(pid, report.Modules)
	}
}

func senderPID(oob []byte) (int, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for i := range msgs {
		if cred, err := unix.ParseUnixCredentials(&msgs[i]); err == nil {
			return int(cred.Pid), true
		}
	}
	return 0, false
}

func (rs *reportSocket) close() {
	rs.conn.Close()
	os.Remove(rs.path)
}
