package pyfork

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// control is warmpool's end of a template's control socket: a SOCK_SEQPACKET pair, so each
// JSON message is one packet and the descriptors sent with it (SCM_RIGHTS) belong to it.
type control struct {
	conn *net.UnixConn
}

// newControl makes the socket pair; the second value is the template's end, for its fd 4.
func newControl() (*control, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("control socket: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "template-control")
	theirs := os.NewFile(uintptr(fds[1]), "template-control")
	fc, err := net.FileConn(ours)
	ours.Close() // FileConn made its own copy
	if err != nil {
		theirs.Close()
		return nil, nil, fmt.Errorf("control socket: %w", err)
	}
	return &control{conn: fc.(*net.UnixConn)}, theirs, nil
}

// templateMessage is every message a template sends; each kind fills some fields.
type templateMessage struct {
	Event   string   `json:"event"` // "imported"
	OK      *bool    `json:"ok"`    // the answer to prepare
	Threads []Thread `json:"threads"`
	Closed  []string `json:"closed"`
	PID     int      `json:"pid"` // the answer to fork
	Error   string   `json:"error"`
}

// Thread is a thread the template runs besides its main one, which keeps it from forking.
type Thread struct {
	Name   string `json:"name"`
	Target string `json:"target"`
}

func (c *control) send(msg any, files ...*os.File) error {
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	_, _, err = c.conn.WriteMsgUnix(data, oob, nil)
	if err != nil {
		return fmt.Errorf("write to the template: %w", err)
	}
	return nil
}

var errTemplateGone = errors.New("the template closed its control socket")

// receive waits for the template's next message until ctx ends.
func (c *control) receive(ctx context.Context) (templateMessage, error) {
	stop := context.AfterFunc(ctx, func() { c.conn.SetReadDeadline(time.Now()) })
	defer func() {
		if !stop() { // the deadline was set: clear it for the next read
			c.conn.SetReadDeadline(time.Time{})
		}
	}()
	buf := make([]byte, 64<<10)
	n, _, _, _, err := c.conn.ReadMsgUnix(buf, nil)
	if err != nil {
		if ctx.Err() != nil {
			return templateMessage{}, context.Cause(ctx)
		}
		return templateMessage{}, fmt.Errorf("read from the template: %w", err)
	}
	if n == 0 {
		return templateMessage{}, errTemplateGone
	}
	var m templateMessage
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		return templateMessage{}, fmt.Errorf("the template's message %q: %w", buf[:n], err)
	}
	return m, nil
}

func (c *control) close() error { return c.conn.Close() }
