package worker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"warmpool/internal/guard"
)

// Spec is everything needed to spawn one worker.
type Spec struct {
	ID         int
	Generation int
	// Command is the argv template with "{socket}" or "{port}" (and optionally "{id}").
	Command []string
	// UsePort gives the worker a free loopback TCP port instead of a unix socket.
	UsePort bool
	Dir     string
	// Env is the complete environment before warmpool's own variables are added.
	Env []string
	// LogOutput is the level of the worker's output lines in warmpool's log: "info" (also
	// ""), "debug", or "off".
	LogOutput string
	// SocketDir is where the worker's unix socket and notify socket are created.
	SocketDir string
	// Notify creates a NOTIFY_SOCKET for the worker and makes NotifyReady meaningful.
	Notify bool
	// Concurrency sizes the connection pool to the worker.
	Concurrency int
	// ResponseHeaderTimeout bounds the wait for a response's headers on this worker's transport.
	ResponseHeaderTimeout time.Duration
	// Launcher makes the process; nil means exec of Command (ExecLauncher).
	Launcher Launcher
	// Bind makes warmpool bind the worker's socket and pass it as fd 3 (ListenFD), instead of
	// the worker binding WARMPOOL_SOCKET or $PORT itself.
	Bind bool
	// ExtraFiles are passed to an exec'd process after the bound listener.
	ExtraFiles []*os.File
	// BootIdle says the worker is not needed yet (it replaces one that still serves below its
	// limit); otherwise it is needed now, and a launcher that can makes it at normal priority
	// (a template forks it so). The pool sets each boot's priority once the process exists.
	BootIdle bool
	// Role names the process in logs in place of "worker" (a Python template is one).
	Role   string
	Logger *slog.Logger
}

// Worker is one worker process. New has no side effects; Start spawns the process.
type Worker struct {
	spec    Spec
	log     *slog.Logger
	state   stateBox
	network string
	address string
	port    int

	proc      Process
	origin    atomic.Pointer[string] // proc's Origin, read by the status while Start runs
	pid       atomic.Int64
	startedAt atomic.Int64 // unix nanoseconds
	notify    *notifyListener
	transport *http.Transport

	done    chan struct{} // closed once the process has exited and been reaped
	outputs []*os.File    // read ends of the worker's stdout and stderr
	pumped  chan struct{} // one value per output pump that finished
	exitErr error         // valid after done
	stopped atomic.Bool   // warmpool asked the worker to stop
	served  atomic.Bool   // it reached Ready: its output is logged at the log_output level
	recent  recentLines   // its last output lines
	wg      sync.WaitGroup
}

// New prepares a worker; nothing runs until Start.
func New(spec Spec) *Worker {
	if spec.Logger == nil {
		spec.Logger = slog.New(slog.DiscardHandler)
	}
	if spec.Launcher == nil {
		spec.Launcher = ExecLauncher{}
	}
	role := spec.Role
	if role == "" {
		role = "worker"
	}
	return &Worker{
		spec: spec,
		log:  spec.Logger.With(role, spec.ID, "generation", spec.Generation),
		done: make(chan struct{}),
	}
}

// ID is the worker's number, unique within one warmpool process.
func (w *Worker) ID() int { return w.spec.ID }

// Generation is the reload generation the worker was started in.
func (w *Worker) Generation() int { return w.spec.Generation }

// PID is the worker's process id (0 before Start).
func (w *Worker) PID() int { return int(w.pid.Load()) }

// State is the worker's current state.
func (w *Worker) State() State { return w.state.load() }

// SetState moves the worker to s, unless it already stopped or failed.
func (w *Worker) SetState(s State) bool {
	ok := w.state.advance(s)
	if ok && s == Ready {
		w.served.Store(true)
	}
	return ok
}

// StartedAt is when the process was spawned.
func (w *Worker) StartedAt() time.Time {
	if ns := w.startedAt.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Address is where the worker listens: a socket path or host:port.
func (w *Worker) Address() string { return w.address }

// Done is closed once the process has exited.
func (w *Worker) Done() <-chan struct{} { return w.done }

// ExitErr is the exit status (nil for exit 0); only valid after Done is closed.
func (w *Worker) ExitErr() error { return w.exitErr }

// StopRequested reports whether warmpool asked the worker to stop (so its exit is no crash).
func (w *Worker) StopRequested() bool { return w.stopped.Load() }

// Start makes the process through the spec's Launcher (ctx bounds a launcher that waits, such
// as a fork from a template still warming). The process has its own process group and dies
// with warmpool.
func (w *Worker) Start(ctx context.Context) (err error) {
	var opened []*os.File // descriptors to close whether or not the launch succeeds
	defer func() {
		for _, f := range opened {
			f.Close()
		}
		if err == nil {
			return
		}
		for _, f := range w.outputs {
			f.Close()
		}
		if w.spec.Bind && w.network == "unix" {
			_ = os.Remove(w.address) // the socket it bound for a process that never came
		}
		w.closeNotify()
		w.state.advance(Failed)
		w.exitErr = err
		close(w.done) // Done must close on every path, or the pool would wait forever
		err = fmt.Errorf("%s %d: %w", w.role(), w.spec.ID, err)
	}()
	if err := w.prepareAddress(); err != nil {
		return err
	}
	l := Launch{ID: w.spec.ID, Generation: w.spec.Generation, Argv: w.expand(w.spec.Command), Dir: w.spec.Dir, Idle: w.spec.BootIdle}
	l.Env, l.Vars = w.environment()
	if w.spec.Notify {
		n, err := listenNotify(filepath.Join(w.spec.SocketDir, fmt.Sprintf("w%d.notify", w.spec.ID)), w.log)
		if err != nil {
			return err
		}
		w.notify = n
		l.Env = append(l.Env, EnvNotify+"="+n.path)
		l.Vars = append(l.Vars, EnvNotify+"="+n.path)
	}
	if w.spec.Bind {
		f, err := w.bind()
		if err != nil {
			return err
		}
		opened = append(opened, f)
		l.Listener = f
		l.Files = append(l.Files, f)
	}
	l.Files = append(l.Files, w.spec.ExtraFiles...)
	// Our own pipes, read with small buffers: os/exec's copying would hold 32 KiB per stream.
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	w.outputs = append(w.outputs, outR)
	opened = append(opened, outW)
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	w.outputs = append(w.outputs, errR)
	opened = append(opened, errW)
	l.Stdout, l.Stderr = outW, errW
	w.state.advance(Starting)
	proc, err := w.spec.Launcher.Launch(ctx, l)
	if err != nil {
		return err
	}
	w.proc = proc
	origin := proc.Origin()
	w.origin.Store(&origin)
	w.pid.Store(int64(proc.Pid()))
	w.startedAt.Store(time.Now().UnixNano())
	w.transport = w.newTransport()
	if w.notify != nil {
		w.wg.Go(w.notify.serve)
	}
	w.pumped = make(chan struct{}, 2)
	w.wg.Go(func() {
		pumpLines(outR, newLineLogger(w.log, "stdout", w.spec.LogOutput, &w.recent, w.served.Load))
		w.pumped <- struct{}{}
	})
	w.wg.Go(func() {
		pumpLines(errR, newLineLogger(w.log, "stderr", w.spec.LogOutput, &w.recent, w.served.Load))
		w.pumped <- struct{}{}
	})
	w.wg.Go(w.reap)
	w.log.Info(w.role()+" spawned", "pid", w.PID(), "address", w.address, "origin", proc.Origin())
	return nil
}

func (w *Worker) role() string {
	if w.spec.Role != "" {
		return w.spec.Role
	}
	return "worker"
}

// Origin says how the process was made: "exec", "fork" or "fresh"; "" before Start.
func (w *Worker) Origin() string {
	if o := w.origin.Load(); o != nil {
		return *o
	}
	return ""
}

// bind creates the worker's listening socket; the process gets a copy as fd 3.
func (w *Worker) bind() (*os.File, error) {
	l, err := net.Listen(w.network, w.address)
	if err != nil {
		return nil, fmt.Errorf("bind the worker's socket: %w", err)
	}
	if ul, ok := l.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false) // the path stays for the worker; reap removes it
	}
	defer l.Close()
	f, err := l.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		return nil, fmt.Errorf("bind the worker's socket: %w", err)
	}
	return f, nil
}

func (w *Worker) prepareAddress() error {
	if w.spec.UsePort {
		port, err := freePort()
		if err != nil {
			return fmt.Errorf("worker %d: %w", w.spec.ID, err)
		}
		w.network, w.port = "tcp", port
		w.address = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		return nil
	}
	w.network = "unix"
	w.address = filepath.Join(w.spec.SocketDir, fmt.Sprintf("%c%d.sock", w.role()[0], w.spec.ID))
	_ = os.Remove(w.address)
	return nil
}

// environment is the process's complete environment and, of it, warmpool's per-worker variables.
func (w *Worker) environment() (env, vars []string) {
	env = make([]string, 0, len(w.spec.Env)+4)
	for _, kv := range w.spec.Env {
		// warmpool's own NOTIFY_SOCKET belongs to systemd and warmpool, never to a worker.
		if strings.HasPrefix(kv, EnvNotify+"=") {
			continue
		}
		env = append(env, kv)
	}
	vars = []string{EnvWorkerID + "=" + strconv.Itoa(w.spec.ID), EnvGeneration + "=" + strconv.Itoa(w.spec.Generation)}
	if w.network == "unix" {
		vars = append(vars, EnvSocket+"="+w.address)
	} else {
		vars = append(vars, EnvPort+"="+strconv.Itoa(w.port))
	}
	return append(env, vars...), vars
}

func (w *Worker) expand(template []string) []string {
	out := make([]string, len(template))
	for i, a := range template {
		a = strings.ReplaceAll(a, "{socket}", w.address)
		a = strings.ReplaceAll(a, "{port}", strconv.Itoa(w.port))
		a = strings.ReplaceAll(a, "{id}", strconv.Itoa(w.spec.ID))
		out[i] = a
	}
	return out
}

func (w *Worker) reap() {
	err := w.proc.Wait()
	if w.stopped.Load() {
		w.state.advance(Stopped)
	} else {
		w.state.advance(Failed)
	}
	w.exitErr = err
	w.closeNotify()
	if w.network == "unix" {
		_ = os.Remove(w.address)
	}
	w.transport.CloseIdleConnections()
	close(w.done)
	// A child the worker left behind may hold its stdout open: read on for a moment, then stop.
	grace := time.NewTimer(2 * time.Second)
	defer grace.Stop()
	for pending := len(w.outputs); pending > 0; {
		select {
		case <-w.pumped:
			pending--
		case <-grace.C:
			pending = 0
		}
	}
	for _, f := range w.outputs {
		f.Close() // ends a pump still blocked on a child's open copy
	}
}

func (w *Worker) closeNotify() {
	if w.notify != nil {
		w.notify.close()
	}
}

// NotifyReady is closed when the worker sent READY=1; nil when Spec.Notify is off.
func (w *Worker) NotifyReady() <-chan struct{} {
	if w.notify == nil {
		return nil
	}
	return w.notify.ready
}

// WaitListening returns once the worker's socket accepts a connection, or with an error when
// the worker exits or ctx ends first.
func (w *Worker) WaitListening(ctx context.Context) error {
	delay := 2 * time.Millisecond
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, w.network, w.address)
		if err == nil {
			conn.Close()
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-w.done:
			t.Stop()
			return fmt.Errorf("worker exited before listening: %v", DescribeExit(w.exitErr))
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("worker not listening on %s: %w (last dial error: %v)", w.address, context.Cause(ctx), err)
		case <-t.C:
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// Transport is the HTTP transport to this worker; requests may use any URL host.
func (w *Worker) Transport() *http.Transport { return w.transport }

// ResponseHeaderTimeout is how long the worker may take to send response headers.
func (w *Worker) ResponseHeaderTimeout() time.Duration { return w.spec.ResponseHeaderTimeout }

// Dial connects to the worker's socket; a failure is a *DialError.
func (w *Worker) Dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, w.network, w.address)
	if err != nil {
		return nil, &DialError{WorkerID: w.spec.ID, Err: err}
	}
	return conn, nil
}

func (w *Worker) newTransport() *http.Transport {
	return &http.Transport{
		DialContext:           func(ctx context.Context, _, _ string) (net.Conn, error) { return w.Dial(ctx) },
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   max(w.spec.Concurrency*2, 2),
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: w.spec.ResponseHeaderTimeout,
	}
}

// DialError is a failure to connect to a worker: nothing of the request was sent, so it is
// safe to retry elsewhere.
type DialError struct {
	WorkerID int
	Err      error
}

func (e *DialError) Error() string { return fmt.Sprintf("connect to worker %d: %v", e.WorkerID, e.Err) }
func (e *DialError) Unwrap() error { return e.Err }

// Stop asks the worker to exit: SIGTERM to its process group, then SIGKILL when ctx ends.
// It returns once the process has exited.
func (w *Worker) Stop(ctx context.Context) {
	if w.proc == nil {
		return
	}
	w.stopped.Store(true)
	select {
	case <-w.done:
		return
	default:
	}
	_ = syscall.Kill(-w.PID(), syscall.SIGTERM)
	select {
	case <-w.done:
		return
	case <-ctx.Done():
		w.log.Warn("worker did not exit in time; killing it", "pid", w.PID())
	}
	w.Kill()
	<-w.done
}

// Kill sends SIGKILL to the worker's whole process group at once.
func (w *Worker) Kill() {
	if w.proc == nil {
		return
	}
	select {
	case <-w.done:
		return
	default:
	}
	_ = syscall.Kill(-w.PID(), syscall.SIGKILL)
}

// MarkStopping records that an exit is expected (a forced kill by warmpool is no crash).
func (w *Worker) MarkStopping() { w.stopped.Store(true) }

// RecentOutput is the worker's last n lines of output (stdout and stderr as they came).
func (w *Worker) RecentOutput(n int) []string { return w.recent.last(n) }

// Wait waits for the worker's goroutines; call after Done or Stop.
func (w *Worker) Wait() { w.wg.Wait() }

// RSS is the resident memory of the worker's process group.
func (w *Worker) RSS() (int64, error) {
	pid := w.PID()
	if pid == 0 {
		return 0, errors.New("rss: worker not started")
	}
	return groupRSS(pid)
}

// DescribeExit renders an exit error for humans ("exit status 3", "signal: killed").
// CannotRun reports whether a launch failed because the program does not exist or may not be
// run: retrying cannot change that.
func CannotRun(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, exec.ErrNotFound)
}

// ExitCode is the exit status of a process that exited by itself (not by a signal), whichever
// way it was waited for (os/exec, or an adopted fork); false when it did not.
func ExitCode(err error) (int, bool) {
	var execExit *exec.ExitError
	if errors.As(err, &execExit) && execExit.Exited() {
		return execExit.ExitCode(), true
	}
	var adopted *guard.ExitError
	if errors.As(err, &adopted) && adopted.Status.Exited() {
		return adopted.Status.ExitStatus(), true
	}
	return 0, false
}

func DescribeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
