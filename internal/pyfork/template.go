package pyfork

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"warmpool/internal/config"
	"warmpool/internal/guard"
	"warmpool/internal/warmup"
	"warmpool/internal/worker"
)

// TemplateSpec is how to start one generation's template.
type TemplateSpec struct {
	Generation int
	Config     *config.Config
	// Helper is the path of the written helper.
	Helper    string
	SocketDir string
	// Env is the template's environment before warmpool's own variables (worker.env applied).
	Env  []string
	Plan *warmup.Plan
	// Learned are the modules learned from traffic (internal/learn) that the template imports
	// after the app, one by one, leaving out any that fails.
	Learned []string
	// LearnSocket is where its forked workers report the modules they import; "" for none.
	LearnSocket string
	// Nice is the template's CPU nice value: it yields the CPU to the workers serving traffic.
	// A worker that is needed now (not Launch.Idle) is forked at normal priority; the pool sets
	// each fork's boot priority right after (internal/pool's priority policy). The template is
	// never put in the idle class: its heartbeat must be answered on a busy machine. 0: normal
	// priority, always.
	Nice int
	// BootAtNormal: the template boots at normal priority and lowers itself to Nice once ready
	// (the first start, when no worker serves yet and everything waits for it).
	BootAtNormal bool
	Logger       *slog.Logger
}

// Template is one template process. NewTemplate has no side effects; Boot starts it.
type Template struct {
	spec TemplateSpec
	log  *slog.Logger
	proc *worker.Worker
	// process is proc once it exists, for readers on other goroutines (the status).
	process atomic.Pointer[worker.Worker]
	ctl     *Conn
	mu      sync.Mutex // one fork at a time: the control socket carries one exchange at a time
	// imported is the template's report of its learned modules, once Boot got it.
	imported Imported
}

// Imported is the template's report of the learned modules it imported and dropped (after
// Boot returned).
func (t *Template) Imported() Imported { return t.imported }

// writeLearned writes the learned modules for the helper's --learned, in the private socket
// directory; Boot removes it.
func (t *Template) writeLearned() (string, error) {
	f, err := os.CreateTemp(t.spec.SocketDir, "learned-*.json")
	if err != nil {
		return "", fmt.Errorf("writing the learned modules for the template: %w", err)
	}
	err = json.NewEncoder(f).Encode(map[string][]string{"modules": t.spec.Learned})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("writing the learned modules for the template: %w", err)
	}
	return f.Name(), nil
}

// NewTemplate prepares a template; nothing runs until Boot.
func NewTemplate(spec TemplateSpec) *Template {
	log := spec.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	spec.Logger = log
	return &Template{spec: spec, log: log.With("template", spec.Generation)}
}

// Command is the helper's argv for mode "template" or "serve" (a fresh worker process).
func Command(cfg *config.Config, helper, mode string) []string {
	p := &cfg.Worker.Python
	argv := []string{p.Executable, helper, mode, "--app", p.App, "--interface", p.Interface,
		"--threads", strconv.Itoa(cfg.Worker.Concurrency)}
	if p.PostFork != "" {
		argv = append(argv, "--post-fork", p.PostFork)
	}
	if p.PreFork != "" && mode == "template" {
		argv = append(argv, "--pre-fork", p.PreFork)
	}
	if p.Interface == config.InterfaceASGI && mode == "template" {
		argv = append(argv, "--lifespan", p.Lifespan)
	}
	if mode == "template" {
		for _, peer := range p.AllowInheritedSockets {
			argv = append(argv, "--allow-socket", peer)
		}
	}
	for _, name := range p.Preload {
		argv = append(argv, "--preload", name)
	}
	return argv
}

// Env is the environment of every Python process warmpool starts: base plus unbuffered output,
// so that a worker's lines reach the log as they are written, and one-thread OpenMP and BLAS
// pools unless base sets their sizes. Those pools start threads when NumPy or pandas is
// imported, which would keep the template from forking (GNU OpenMP's pool hangs a forked
// child), and in a web worker they only compete with the request threads.
func Env(base []string) []string {
	env := append(base[:len(base):len(base)], "PYTHONUNBUFFERED=1")
	for _, name := range singleThreadPools {
		if !hasVar(base, name) {
			env = append(env, name+"=1")
		}
	}
	return env
}

// singleThreadPools are the thread-pool sizes Env sets to 1 unless they are set.
var singleThreadPools = []string{"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}

func hasVar(env []string, name string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}

// RefusedError says the template cannot fork: it runs other threads, or holds connections
// every fork would share, named here.
type RefusedError struct {
	Threads []Thread
	Sockets []Socket
}

// Reason is the refusal's label for the fallback metric: "threads" or "sockets".
func (e *RefusedError) Reason() string {
	if len(e.Threads) > 0 {
		return "threads"
	}
	return "sockets"
}

func (e *RefusedError) Error() string {
	var parts []string
	if len(e.Threads) > 0 {
		names := make([]string, len(e.Threads))
		for i, t := range e.Threads {
			names[i] = fmt.Sprintf("%q (%s)", t.Name, t.Target)
		}
		parts = append(parts, "the template runs other threads besides its main one, and a fork would copy none of them and keep any lock they hold: "+
			strings.Join(names, ", ")+"; start them in post_fork instead of at import")
	}
	if len(e.Sockets) > 0 {
		names := make([]string, len(e.Sockets))
		for i, s := range e.Sockets {
			names[i] = fmt.Sprintf("fd %d (%s to %s)", s.FD, s.Kind, s.Peer)
		}
		parts = append(parts, "the template holds connections that every forked worker would share, mixing their traffic: "+
			strings.Join(names, ", ")+"; close them in pre_fork and open them in post_fork, or allow one by its peer in worker.python.allow_inherited_sockets")
	}
	return strings.Join(parts, "; and ")
}

// PreloadError says a learned module made the template unfit to fork (its import started a
// thread or opened a connection): a new template is started without it.
type PreloadError struct{ Dropped []DroppedModule }

func (e *PreloadError) Error() string {
	parts := make([]string, len(e.Dropped))
	for i, d := range e.Dropped {
		parts[i] = d.Module + ": " + d.Reason
	}
	return "a learned module made the template unfit to fork: " + strings.Join(parts, "; ")
}

// Boot starts the template, waits for its import, warms it with the plan (one request at a
// time, in its main thread) and has it prepare to fork. nil means it can fork; a *RefusedError
// that it runs threads; any other error that it failed (it is then stopped).
func (t *Template) Boot(ctx context.Context) (err error) {
	cfg := t.spec.Config
	ctl, theirs, err := newControl()
	if err != nil {
		return err
	}
	t.ctl = ctl
	argv := Command(cfg, t.spec.Helper, "template")
	if t.spec.LearnSocket != "" {
		argv = append(argv, "--learn-socket", t.spec.LearnSocket)
	}
	if len(t.spec.Learned) > 0 {
		file, err := t.writeLearned()
		if err != nil {
			ctl.Close()
			theirs.Close()
			return err
		}
		defer os.Remove(file)
		argv = append(argv, "--learned", file)
	}
	t.proc = worker.New(worker.Spec{
		ID:                    t.spec.Generation,
		Generation:            t.spec.Generation,
		Role:                  "template",
		Command:               argv,
		UsePort:               cfg.Worker.UsesPort(),
		Dir:                   cfg.Worker.Dir,
		Env:                   Env(t.spec.Env),
		LogOutput:             cfg.Worker.LogOutput,
		SocketDir:             t.spec.SocketDir,
		Concurrency:           1,
		ResponseHeaderTimeout: cfg.Warmup.Timeout.Duration,
		Bind:                  true,
		ExtraFiles:            []*os.File{theirs},
		Logger:                t.spec.Logger,
	})
	t.process.Store(t.proc)
	err = t.proc.Start(ctx)
	theirs.Close()
	if err != nil {
		ctl.Close()
		return err
	}
	if !t.spec.BootAtNormal {
		t.setNice(t.spec.Nice)
	}
	defer func() {
		var refused *RefusedError
		if err != nil && !errors.As(err, &refused) {
			stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			t.Stop(stopCtx)
		}
	}()
	// The template's exit ends every wait below with its exit status and last words.
	ctx, cancel := context.WithCancelCause(ctx)
	var watch sync.WaitGroup
	defer func() {
		cancel(nil)
		watch.Wait()
	}()
	watch.Go(func() {
		select {
		case <-t.proc.Done():
			cancel(t.exited())
		case <-ctx.Done():
		}
	})
	hello, err := expect[Hello](ctx, ctl)
	if err != nil {
		return fmt.Errorf("starting the helper: %w", t.explain(err))
	}
	if hello.Version != ProtocolVersion {
		return fmt.Errorf("the helper %s speaks control protocol version %d and this warmpool version %d: it is not the helper this warmpool wrote (restart warmpool, which writes its own)",
			t.spec.Helper, hello.Version, ProtocolVersion)
	}
	imported, err := expect[Imported](ctx, ctl)
	if err != nil {
		return fmt.Errorf("importing %s: %w", cfg.Worker.Python.App, t.explain(err))
	}
	for _, name := range t.spec.Learned {
		_, loaded := imported.Preloaded[name]
		if !loaded && !slices.ContainsFunc(imported.Dropped, func(d DroppedModule) bool { return d.Module == name }) {
			imported.Implied = append(imported.Implied, name)
		}
	}
	t.imported = imported
	var fatal []DroppedModule
	for _, d := range imported.Dropped {
		if d.Fatal {
			fatal = append(fatal, d)
		}
	}
	if len(fatal) > 0 {
		return &PreloadError{Dropped: fatal}
	}
	t.log.Info("template imported the app", "pid", t.proc.PID(), "app", cfg.Worker.Python.App, "learned_modules", len(imported.Preloaded))
	if cfg.Warmup.Enabled && t.spec.Plan != nil {
		t.proc.SetState(worker.Warming)
		plan := *t.spec.Plan
		plan.Concurrency = 1 // the template warms in its main thread, one request at a time
		res, err := plan.Run(ctx, t.proc.Transport())
		t.proc.Transport().CloseIdleConnections()
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
				err = fmt.Errorf("%w (%w)", err, cause)
			}
			return fmt.Errorf("the template's warm-up: %w", err)
		}
		t.log.Info("template warmed", "requests", res.Requests, "warmup", res.Duration.Round(1e6), "slowest_warmup_request", res.Slowest.Round(1e6))
	}
	if err := ctl.Send(Prepare{}); err != nil {
		return fmt.Errorf("preparing to fork: %w", t.explain(err))
	}
	prepared, err := expect[Prepared](ctx, ctl)
	if err != nil {
		return fmt.Errorf("preparing to fork: %w", t.explain(err))
	}
	if !prepared.OK {
		return &RefusedError{Threads: prepared.Threads, Sockets: prepared.Sockets}
	}
	if t.spec.BootAtNormal {
		t.setNice(t.spec.Nice)
	}
	t.proc.SetState(worker.Ready)
	t.log.Info("template ready to fork", "pid", t.proc.PID(), "closed_before_fork", strings.Join(prepared.Closed, ", "))
	return nil
}

// setNice sets the template's nice value (0 is normal); a failure only costs speed.
func (t *Template) setNice(nice int) {
	if t.spec.Nice == 0 {
		return // priorities are not changed at all
	}
	if err := t.proc.SetPriority(worker.Priority{Nice: nice}); err != nil {
		t.log.Debug("could not set the template's priority", "nice", nice, "error", err)
	}
}

// lastWords is what a process said last (all warmpool keeps of it), for an error that
// explains its exit: a traceback's last lines name the exception.
func lastWords(w *worker.Worker) string {
	if said := w.RecentOutput(20); len(said) > 0 {
		return "; its last output:\n" + strings.Join(said, "\n")
	}
	return ""
}

// exited is the error of a template that exited: its status and last output, once that was
// read to the end (bounded by the worker's own grace).
func (t *Template) exited() error {
	t.proc.Wait()
	return fmt.Errorf("the template exited: %s%s", worker.DescribeExit(t.proc.ExitErr()), lastWords(t.proc))
}

// explain turns a control socket's end into the template's exit and last output, when it
// exited: the socket closes as the process ends, before its exit status is known, and "EOF"
// would hide the SyntaxError the template printed.
func (t *Template) explain(err error) error {
	if !errors.Is(err, errTemplateGone) && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		return err
	}
	select {
	case <-t.proc.Done():
		return t.exited()
	case <-time.After(2 * time.Second):
		return err
	}
}

// Fork makes a worker process: a child of the template, adopted by warmpool.
//
// The exchange is waited for up to within, whether or not ctx ends meanwhile: an answer left
// unread would be read as the next exchange's. A fork whose launch was cancelled (a shutdown,
// a reload) is then killed and reaped, and the template lives on.
func (t *Template) Fork(ctx context.Context, l worker.Launch, within time.Duration) (worker.Process, error) {
	if l.Listener == nil {
		return nil, errors.New("fork: the worker has no bound socket to pass")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !l.Idle && t.spec.Nice > 0 {
		// Needed now: the fork (and the double fork's intermediate process) do not queue behind
		// serving work.
		t.setNice(0)
		defer t.setNice(t.spec.Nice)
	}
	vars := make(map[string]string, len(l.Vars))
	for _, kv := range l.Vars {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	if err := t.ctl.Send(Fork{ID: l.ID, Env: vars, WarmpoolPID: os.Getpid()}, l.Listener, l.Stdout, l.Stderr); err != nil {
		return nil, err
	}
	exchange, cancel := context.WithTimeout(context.WithoutCancel(ctx), within)
	defer cancel()
	forked, err := expect[Forked](exchange, t.ctl)
	if err != nil {
		if failed := (*FailedError)(nil); !errors.As(err, &failed) {
			// No answer in time: it may still come, and would be read as the next one's.
			// This template is done.
			t.proc.Kill()
		}
		return nil, fmt.Errorf("fork: %w", err)
	}
	pid := forked.PID
	if pid <= 0 {
		return nil, fmt.Errorf("fork: the template answered pid %d", pid)
	}
	guard.Adopt(pid)
	if ctx.Err() != nil {
		// The launch was cancelled while the template forked: the child waits for a release
		// that never comes. It is warmpool's (adopted): killed and reaped.
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = guard.WaitAdopted(pid)
		return nil, context.Cause(ctx)
	}
	if _, ppid, err := guard.StateAndParent(pid); err != nil || ppid != os.Getpid() {
		guard.ChildDone(pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return nil, fmt.Errorf("fork: worker %d (pid %d) was not adopted by warmpool (its parent is %d: %v); is warmpool a child subreaper?", l.ID, pid, ppid, err)
	}
	if err := t.ctl.Send(Release{PID: pid}); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = guard.WaitAdopted(pid)
		return nil, err
	}
	return forkedProcess(pid), nil
}

// Ping is the heartbeat: the template must answer within ctx. busy: a fork holds the control
// socket now (its own timeout watches the template then), and nothing was sent.
func (t *Template) Ping(ctx context.Context, seq int) (busy bool, err error) {
	if !t.mu.TryLock() {
		return true, nil
	}
	defer t.mu.Unlock()
	if err := t.ctl.Send(Ping{Seq: seq}); err != nil {
		return false, err
	}
	pong, err := expect[Pong](ctx, t.ctl)
	if err != nil {
		return false, t.explain(err)
	}
	if pong.Seq != seq {
		return false, fmt.Errorf("the template answered ping %d with pong %d", seq, pong.Seq)
	}
	return false, nil
}

// Stopped says whether the template's process is stopped (SIGSTOP, a debugger): it answers
// nothing until it is continued.
func (t *Template) Stopped() bool {
	pid := t.PID()
	if pid == 0 {
		return false
	}
	state, _, err := guard.StateAndParent(pid)
	return err == nil && (state == "T" || state == "t")
}

// forkedProcess is a worker forked by a template and adopted by warmpool.
type forkedProcess int

func (p forkedProcess) Pid() int       { return int(p) }
func (p forkedProcess) Origin() string { return "fork" }
func (p forkedProcess) Wait() error    { return guard.WaitAdopted(int(p)) }

// PID is the template's process id (0 before Boot).
func (t *Template) PID() int {
	if p := t.process.Load(); p != nil {
		return p.PID()
	}
	return 0
}

// Done is closed once the template process exited.
func (t *Template) Done() <-chan struct{} { return t.proc.Done() }

// Process is the template's process, for its exit status and memory; nil before Boot.
func (t *Template) Process() *worker.Worker { return t.process.Load() }

// Stop ends the template: its control socket closes (it exits on that), then SIGTERM, and
// SIGKILL when ctx ends. Its forked workers are warmpool's children and live on.
func (t *Template) Stop(ctx context.Context) {
	if t.proc == nil {
		return
	}
	t.ctl.Close()
	t.proc.Stop(ctx)
	t.proc.Wait()
}
