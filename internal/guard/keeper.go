package guard

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"warmpool/internal/config"
)

// EnvInstance marks every process of one warmpool instance: its workers and their descendants
// inherit it.
const EnvInstance = "WARMPOOL_INSTANCE"

// envKeeper starts a process as the keeper of the instance it names.
const envKeeper = "WARMPOOL_GUARD_OF"

// Keeper is the handle of a running keeper process. New has no side effects; Start spawns it.
type Keeper struct {
	instance string
	cmd      *exec.Cmd
	pipe     *os.File // warmpool's end: lines to the keeper, and EOF at warmpool's end
}

// New returns a keeper for instance, not yet started.
func New(instance string) *Keeper { return &Keeper{instance: instance} }

// NewInstance returns a mark unique to this warmpool process.
func NewInstance() string {
	return strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// Start spawns the keeper: warmpool's own binary, in a process group of its own so that a
// signal to warmpool's group (Ctrl-C) does not end it before warmpool.
func (k *Keeper) Start() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(config.ChildEnv(os.Environ()), envKeeper+"="+k.instance)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r, os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := StartChild(cmd); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("guard: start the keeper: %w", err)
	}
	r.Close()
	k.cmd, k.pipe = cmd, w
	return nil
}

// RemoveAtEnd tells the keeper to remove dir once warmpool has ended and its processes are gone.
func (k *Keeper) RemoveAtEnd(dir string) error {
	if k.pipe == nil {
		return nil
	}
	_, err := fmt.Fprintf(k.pipe, "remove %s\n", dir)
	return err
}

// Close ends the keeper as warmpool's own end would (it then finds nothing left to kill, after
// a clean shutdown), and waits for it.
func (k *Keeper) Close() error {
	if k.cmd == nil {
		return nil
	}
	k.pipe.Close()
	err := k.cmd.Wait()
	ChildDone(k.cmd.Process.Pid)
	return err
}

// RunIfKeeper runs the keeper and exits, when this process was started as one; otherwise it
// returns at once.
func RunIfKeeper() {
	instance := os.Getenv(envKeeper)
	if instance == "" {
		return
	}
	// Only warmpool's end ends the keeper: signals to its group or session are not for it.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGPIPE)
	var remove []string
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() { // until EOF: warmpool has ended, however it ended
		if dir, ok := strings.CutPrefix(sc.Text(), "remove "); ok {
			remove = append(remove, dir)
		}
	}
	killed := KillMarked(instance, 2*time.Second)
	for _, dir := range remove {
		os.RemoveAll(dir)
	}
	if killed > 0 {
		fmt.Fprintf(os.Stderr, "warmpool guard: warmpool ended; killed %d of its workers' processes that were left\n", killed)
	}
	os.Exit(0)
}

// KillMarked kills every process (but this one) whose environment carries instance's mark,
// scanning again until none is left or within passes. It returns how many it killed.
func KillMarked(instance string, within time.Duration) int {
	mark := []byte(EnvInstance + "=" + instance + "\x00")
	self := os.Getpid()
	killed := map[int]bool{}
	deadline := time.Now().Add(within)
	for {
		found := 0
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self {
				continue
			}
			env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
			if err != nil || !(bytes.HasPrefix(env, mark) || bytes.Contains(env, append([]byte{0}, mark...))) {
				continue // gone, not ours, or not readable (another user's)
			}
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				found++
				killed[pid] = true
			}
		}
		if found == 0 || time.Now().After(deadline) {
			return len(killed)
		}
		time.Sleep(20 * time.Millisecond) // a killed process's children may just have been born
	}
}
