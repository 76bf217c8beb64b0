package worker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"warmpool/internal/guard"
)

// ListenFD is the descriptor of the socket warmpool bound for a worker (Spec.Bind).
const ListenFD = 3

// Launcher makes a worker's process: the one seam between the pool and how processes come to
// be. A Worker is the same whatever made it, so admission, drain, stop and telemetry are one
// code path: exec of a command (ExecLauncher) or a fork of a warm template (internal/pyfork).
type Launcher interface {
	Launch(ctx context.Context, l Launch) (Process, error)
}

// Launch is what a process is made with.
type Launch struct {
	ID, Generation int
	// Argv is the expanded command, for launchers that exec.
	Argv []string
	Dir  string
	// Env is the complete environment; Vars are warmpool's per-worker variables in it (a forked
	// process inherits its template's environment and gets only these).
	Env, Vars []string
	// Stdout and Stderr are the write ends of the pipes warmpool reads the process's output from.
	Stdout, Stderr *os.File
	// Files are passed from fd 3 on: the bound listener first (Spec.Bind), then Spec.ExtraFiles.
	Files []*os.File
	// Listener is the bound listener (also in Files); nil when the process binds its own.
	Listener *os.File
	// Idle: Spec.BootIdle.
	Idle bool
}

// Process is a running process a Launcher made.
type Process interface {
	Pid() int
	// Wait blocks until the process exited and was reaped; nil for exit status 0.
	Wait() error
	// Origin says how it was made: "exec", "fork", or "fresh" (a fork's fallback).
	Origin() string
}

// ExecLauncher starts the command in a process group of its own that dies with warmpool.
type ExecLauncher struct {
	// Origin is what its processes report as their Origin; "" means "exec".
	Origin string
}

// Launch implements Launcher.
func (e ExecLauncher) Launch(_ context.Context, l Launch) (Process, error) {
	cmd := exec.Command(l.Argv[0], l.Argv[1:]...)
	cmd.Dir = l.Dir
	cmd.Env = l.Env
	cmd.Stdout, cmd.Stderr = l.Stdout, l.Stderr
	cmd.ExtraFiles = l.Files
	// Own process group: signals reach the worker's children too. Pdeathsig: a worker never
	// outlives warmpool, even when warmpool is killed with SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := guard.StartChild(cmd); err != nil {
		return nil, fmt.Errorf("spawn %q: %w", l.Argv[0], err)
	}
	origin := e.Origin
	if origin == "" {
		origin = "exec"
	}
	return &execProcess{cmd: cmd, origin: origin}, nil
}

type execProcess struct {
	cmd    *exec.Cmd
	origin string
}

func (p *execProcess) Pid() int       { return p.cmd.Process.Pid }
func (p *execProcess) Origin() string { return p.origin }
func (p *execProcess) Wait() error {
	err := p.cmd.Wait()
	guard.ChildDone(p.cmd.Process.Pid)
	return err
}
