package worker

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Priority is a CPU scheduling priority. Idle puts threads in the idle scheduling class
// (SCHED_IDLE): they get only the CPU time no other thread wants, and a thread that wakes up
// preempts them at once, which a nice value alone does not promise. Otherwise Nice is the nice
// value (0 is normal).
type Priority struct {
	Idle bool
	Nice int
}

// SetPriority sets the scheduling class and nice value of every thread of every process in the
// worker's process group. On Linux both belong to a thread, so each one is set; threads started
// later inherit them from the thread that starts them.
func (w *Worker) SetPriority(pr Priority) error {
	pid := w.PID()
	if pid == 0 {
		return errors.New("priority: worker not started")
	}
	procs, err := groupProcesses(pid)
	if err != nil {
		return fmt.Errorf("priority: %w", err)
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL, Nice: int32(pr.Nice)}
	if pr.Idle {
		attr.Policy = unix.SCHED_IDLE
	}
	var errs []error
	for _, p := range procs {
		// A thread started meanwhile by one not yet set inherits the old priority: list the
		// threads again until a pass finds none new.
		done := map[int]bool{}
		for pass, found := 0, true; found && pass < 5; pass++ {
			found = false
			tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p.pid), "task"))
			if err != nil {
				break // exited meanwhile
			}
			for _, t := range tasks {
				tid, err := strconv.Atoi(t.Name())
				if err != nil || done[tid] {
					continue
				}
				done[tid], found = true, true
				if err := unix.SchedSetAttr(tid, &attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
					errs = append(errs, fmt.Errorf("thread %d: %w", tid, err))
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("priority %+v: %w", pr, errors.Join(errs...))
	}
	return nil
}

// CanRestorePriority reports whether this process may lower a nice value back to 0 (it has
// CAP_SYS_NICE, or RLIMIT_NICE allows it), and if not, why.
func CanRestorePriority() (bool, string) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NICE, &lim); err == nil && lim.Cur >= 20 {
		return true, ""
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false, "cannot read capabilities: " + err.Error()
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err == nil && caps&(1<<unix.CAP_SYS_NICE) != 0 {
				return true, ""
			}
		}
	}
	return false, "restoring a worker's priority after its warm-up needs CAP_SYS_NICE or RLIMIT_NICE of at least 20 (LimitNICE=20 in a systemd unit)"
}
