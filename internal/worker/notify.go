package worker

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
)

// notifyListener receives sd_notify datagrams from one worker and closes ready on READY=1.
type notifyListener struct {
	path  string
	conn  *net.UnixConn
	ready chan struct{}
	log   *slog.Logger
}

func listenNotify(path string, log *slog.Logger) (*notifyListener, error) {
	_ = os.Remove(path)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	return &notifyListener{path: path, conn: conn, ready: make(chan struct{}), log: log}, nil
}

// serve reads datagrams until the socket is closed.
func (n *notifyListener) serve() {
	buf := make([]byte, 4096)
	readySeen := false
	for {
		k, err := n.conn.Read(buf)
		if err != nil {
			return
		}
		for _, line := range bytes.Split(buf[:k], []byte("\n")) {
			switch {
			case bytes.Equal(line, []byte("READY=1")) && !readySeen:
				readySeen = true
				close(n.ready)
			case bytes.HasPrefix(line, []byte("STATUS=")):
				n.log.Info("worker status", "status", string(line[len("STATUS="):]))
			}
		}
	}
}

func (n *notifyListener) close() {
	n.conn.Close()
	_ = os.Remove(n.path)
}
