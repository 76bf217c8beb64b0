package pyfork

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"time"

	"golang.org/x/sys/unix"

	"warmpool/internal/worker"
)

// The control protocol between warmpool and a template, over the template's fd 4: every
// message of either side is in the two tables below, and helper.py keeps the same tables
// (OPS, REPLIES) with the same version. Each message is one JSON object in one SOCK_SEQPACKET
// packet, its kind in "type"; file descriptors travel with it (SCM_RIGHTS). One exchange at a
// time: warmpool sends an op and waits for its reply (release has none).
//
//	template                           warmpool
//	hello{version, pid}        ->                       at start, before the app's import
//	imported{preloaded, dropped} ->                     the app and its preloads are imported: warm-up follows
//	                           <-      prepare          the warm-up is done
//	prepared{ok, threads, sockets, closed} ->
//	                           <-      fork{id, env, warmpool_pid} + listener, stdout, stderr
//	forked{pid} | failed{error} ->
//	                           <-      release{pid}     warmpool adopted the worker: it may run
//	                           <-      ping{seq}        the heartbeat, while it is ready
//	pong{seq}                  ->
//
// An op the template cannot carry out now is answered failed{error}.
const ProtocolVersion = 3

// ExitUnfixable is the helper's exit status (EX_CONFIG) when the app's environment lacks what it
// needs to serve (waitress or uvicorn): retrying cannot help, so warmpool stops retrying.
const ExitUnfixable = 78

// Unfixable reports whether a helper process's exit (its wait error) says that the app's
// environment lacks what the helper needs.
func Unfixable(exit error) bool {
	code, ok := worker.ExitCode(exit)
	return ok && code == ExitUnfixable
}

// Message is one message of the protocol; Kind is its "type".
type Message interface{ Kind() string }

// What warmpool sends (ops).
type (
	Prepare struct{}
	Fork    struct {
		ID          int               `json:"id"`
		Env         map[string]string `json:"env"`
		WarmpoolPID int               `json:"warmpool_pid"`
	}
	Release struct {
		PID int `json:"pid"`
	}
	Ping struct {
		Seq int `json:"seq"`
	}
)

// What a template sends (replies and events).
type (
	Hello struct {
		Version int `json:"version"`
		PID     int `json:"pid"`
	}
	Imported struct {
		// Preloaded are the learned modules the template imported, with what each took (ms).
		Preloaded map[string]float64 `json:"preloaded"`
		// Dropped are the learned modules it left out, and why.
		Dropped []DroppedModule `json:"dropped"`
		// Implied are the learned modules that were imported already when their turn came
		// (the app, or a module before them, imported them): warmpool's own tally, not sent.
		Implied []string `json:"-"`
	}
	Prepared struct {
		OK      bool     `json:"ok"`
		Threads []Thread `json:"threads"`
		Sockets []Socket `json:"sockets"`
		Closed  []string `json:"closed"`
	}
	Forked struct {
		PID int `json:"pid"`
	}
	Failed struct {
		Error string `json:"error"`
	}
	Pong struct {
		Seq int `json:"seq"`
	}
)

// DroppedModule is a learned module a template did not keep. Fatal: its import started a
// thread or opened a connection, and the template can no longer fork.
type DroppedModule struct {
	Module string `json:"module"`
	Reason string `json:"reason"`
	Fatal  bool   `json:"fatal"`
}

// Socket is a connection the template holds, which every fork would share: it keeps the
// template from forking unless allowed by its peer.
type Socket struct {
	FD   int    `json:"fd"`
	Kind string `json:"kind"` // "tcp", "tcp6" or "unix"
	Peer string `json:"peer"` // host:port, or a unix socket's path ("" for an unnamed one)
}

// Thread is a thread the template runs besides its main one, which keeps it from forking.
type Thread struct {
	Name   string `json:"name"`
	Target string `json:"target"`
}

func (Prepare) Kind() string  { return "prepare" }
func (Fork) Kind() string     { return "fork" }
func (Release) Kind() string  { return "release" }
func (Ping) Kind() string     { return "ping" }
func (Hello) Kind() string    { return "hello" }
func (Imported) Kind() string { return "imported" }
func (Prepared) Kind() string { return "prepared" }
func (Forked) Kind() string   { return "forked" }
func (Failed) Kind() string   { return "failed" }
func (Pong) Kind() string     { return "pong" }

// ops and replies are the two tables: each end accepts only what the other may send.
var (
	ops     = kinds(Prepare{}, Fork{}, Release{}, Ping{})
	replies = kinds(Hello{}, Imported{}, Prepared{}, Forked{}, Failed{}, Pong{})
)

func kinds(ms ...Message) map[string]reflect.Type {
	t := make(map[string]reflect.Type, len(ms))
	for _, m := range ms {
		t[m.Kind()] = reflect.TypeOf(m)
	}
	return t
}

// Conn is one end of a control socket: warmpool's (NewWarmpoolConn) reads replies, a
// template's (NewTemplateConn, for a template written in Go: the tests' fake) reads ops.
type Conn struct {
	conn    *net.UnixConn
	accepts map[string]reflect.Type
}

// newControl makes the socket pair; the second value is the template's end, for its fd 4.
func newControl() (*Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("control socket: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "template-control")
	theirs := os.NewFile(uintptr(fds[1]), "template-control")
	c, err := fileConn(ours, replies)
	if err != nil {
		theirs.Close()
		return nil, nil, err
	}
	return c, theirs, nil
}

// NewTemplateConn is a template's end of the control socket it was given as f.
func NewTemplateConn(f *os.File) (*Conn, error) { return fileConn(f, ops) }

func fileConn(f *os.File, accepts map[string]reflect.Type) (*Conn, error) {
	fc, err := net.FileConn(f)
	f.Close() // FileConn made its own copy
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &Conn{conn: fc.(*net.UnixConn), accepts: accepts}, nil
}

// Send writes m with files passed along.
func (c *Conn) Send(m Message, files ...*os.File) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	kind, _ := json.Marshal(m.Kind())
	data := append([]byte(`{"type":`), kind...)
	if len(body) > 2 { // fields follow
		data = append(append(data, ','), body[1:]...)
	} else {
		data = append(data, '}')
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.conn.WriteMsgUnix(data, oob, nil); err != nil {
		return fmt.Errorf("write to the control socket: %w", err)
	}
	return nil
}

// errTemplateGone: the other end closed the socket (the template exited, or warmpool did).
var errTemplateGone = errors.New("the control socket was closed")

// maxMessage bounds a message; a fork carries the worker's variables, a prepared reply the
// app's threads.
const maxMessage = 1 << 20

// Receive waits for the next message until ctx ends; files are those that came with it (the
// receiver owns them). A message of a kind this end does not accept is an error.
func (c *Conn) Receive(ctx context.Context) (m Message, files []*os.File, err error) {
	stop := context.AfterFunc(ctx, func() { c.conn.SetReadDeadline(time.Now()) })
	defer func() {
		if !stop() { // the deadline was set: clear it for the next read
			c.conn.SetReadDeadline(time.Time{})
		}
	}()
	buf := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(8*4))
	n, oobn, _, _, err := c.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, context.Cause(ctx)
		}
		return nil, nil, fmt.Errorf("read from the control socket: %w", err)
	}
	if oobn > 0 {
		files, err = receivedFiles(oob[:oobn])
		if err != nil {
			return nil, nil, err
		}
	}
	if n == 0 {
		closeAll(files)
		return nil, nil, errTemplateGone
	}
	m, err = c.decode(buf[:n])
	if err != nil {
		closeAll(files)
		return nil, nil, err
	}
	return m, files, nil
}

func (c *Conn) decode(data []byte) (Message, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("control message %q: %w", data, err)
	}
	typ := c.accepts[head.Type]
	if typ == nil {
		return nil, fmt.Errorf("control message %q: a %q message is not expected here", data, head.Type)
	}
	m := reflect.New(typ)
	if err := json.Unmarshal(data, m.Interface()); err != nil {
		return nil, fmt.Errorf("control message %q: %w", data, err)
	}
	return m.Elem().Interface().(Message), nil
}

func receivedFiles(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message descriptors: %w", err)
	}
	var files []*os.File
	for _, cm := range msgs {
		fds, err := unix.ParseUnixRights(&cm)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "control-passed"))
		}
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// Close closes this end.
func (c *Conn) Close() error { return c.conn.Close() }

// expect receives the next message and returns it as a T; any other kind is an error that
// names what came instead (a failed reply, its error).
func expect[T Message](ctx context.Context, c *Conn) (T, error) {
	var zero T
	m, files, err := c.Receive(ctx)
	if err != nil {
		return zero, err
	}
	closeAll(files) // a template sends none
	if v, ok := m.(T); ok {
		return v, nil
	}
	if f, ok := m.(Failed); ok {
		return zero, &FailedError{Reason: f.Error}
	}
	return zero, fmt.Errorf("the template sent %q where %q was expected", m.Kind(), zero.Kind())
}

// FailedError is a template's failed reply: the exchange itself went well.
type FailedError struct{ Reason string }

func (e *FailedError) Error() string { return "the template could not do it: " + e.Reason }
