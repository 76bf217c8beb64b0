package guard

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The processes warmpool started with os/exec are reaped by their exec.Cmd's Wait; the Reaper
// must leave them alone, or that Wait would fail. StartChild and ChildDone keep that set; the
// lock makes a start and its registration one step as the Reaper sees it.
var (
	childrenMu sync.Mutex
	children   = map[int]bool{}
)

// StartChild starts cmd and registers it as a child its own Wait reaps.
func StartChild(cmd *exec.Cmd) error {
	childrenMu.Lock()
	defer childrenMu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	children[cmd.Process.Pid] = true
	return nil
}

// ChildDone forgets a child once its Wait returned.
func ChildDone(pid int) {
	childrenMu.Lock()
	delete(children, pid)
	childrenMu.Unlock()
}

// Reaper collects the exit of descendants that were orphaned and reparented to warmpool (it is
// a child subreaper), so that none stays a zombie. New has no side effects; Start makes the
// process a subreaper and starts the goroutine, Close stops it.
type Reaper struct {
	sigs chan os.Signal
	stop chan struct{}
	wg   sync.WaitGroup
}

// NewReaper returns a reaper, not yet started.
func NewReaper() *Reaper { return &Reaper{sigs: make(chan os.Signal, 1), stop: make(chan struct{})} }

// Start makes this process a child subreaper and reaps orphans as they exit.
func (r *Reaper) Start() error {
	if err := BecomeSubreaper(); err != nil {
		return err
	}
	signal.Notify(r.sigs, syscall.SIGCHLD)
	r.wg.Go(func() {
		for {
			r.ReapOrphans()
			select {
			case <-r.sigs:
			case <-r.stop:
				return
			}
		}
	})
	return nil
}

// Close stops reaping.
func (r *Reaper) Close() {
	signal.Stop(r.sigs)
	close(r.stop)
	r.wg.Wait()
}

// ReapOrphans collects every exited child that is not one of StartChild's, and returns how
// many it collected.
func (r *Reaper) ReapOrphans() int {
	childrenMu.Lock() // no child starts meanwhile: every child is either registered or not ours
	defer childrenMu.Unlock()
	self := os.Getpid()
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || children[pid] {
			continue
		}
		state, ppid, err := StateAndParent(pid)
		if err != nil || state != "Z" || ppid != self {
			continue
		}
		var ws syscall.WaitStatus
		if got, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); got == pid {
			n++
		}
	}
	return n
}

// StateAndParent reads a process's state ("R", "S", "Z", ...) and parent pid from
// /proc/PID/stat.
func StateAndParent(pid int) (state string, ppid int, err error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, err
	}
	// After the command name's closing parenthesis: " state ppid ..."
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return "", 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err
}

// Adopt registers pid, a process reparented to warmpool (a worker forked by a template, whose
// parent exited), as a child that WaitAdopted reaps rather than the Reaper.
func Adopt(pid int) {
	childrenMu.Lock()
	children[pid] = true
	childrenMu.Unlock()
}

// BecomeSubreaper makes orphaned descendants this process's children, so that warmpool can
// adopt and reap the workers a template forks. The Reaper does it too; a template does it
// without one (in tests).
func BecomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// WaitAdopted waits for an adopted process to exit, reaps it and forgets it. The error reads
// as os/exec's does: nil for exit status 0, else "exit status N" or "signal: killed".
func WaitAdopted(pid int) error {
	defer ChildDone(pid)
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for process %d: %w", pid, err)
		}
		break
	}
	if ws.Exited() && ws.ExitStatus() == 0 {
		return nil
	}
	return &ExitError{Status: ws}
}

// ExitError is how an adopted process ended, when not with exit status 0.
type ExitError struct{ Status syscall.WaitStatus }

func (e *ExitError) Error() string {
	switch {
	case e.Status.Exited():
		return "exit status " + strconv.Itoa(e.Status.ExitStatus())
	case e.Status.Signaled():
		return "signal: " + e.Status.Signal().String()
	default:
		return fmt.Sprintf("wait status %#x", uint32(e.Status))
	}
}
