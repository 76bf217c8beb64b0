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

// SetNice sets the CPU nice value of every thread of every process in the worker's process
// group. On Linux a nice value belongs to a thread, so each one is set.
func (w *Worker) SetNice(n int) error {
	pid := w.PID()
	if pid == 0 {
		return errors.New("nice: worker not started")
	}
	procs, err := groupProcesses(pid)
	if err != nil {
		return fmt.Errorf("nice: %w", err)
	}
	var errs []error
	for _, p := range procs {
		tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p.pid), "task"))
		if err != nil {
			continue // exited meanwhile
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, n); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("thread %d: %w", tid, err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("nice %d: %w", n, errors.Join(errs...))
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
