package benchutil

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Instance is one running warmpool, its log lines kept with their arrival times.
type Instance struct {
	cmd *exec.Cmd
	// Addr and Admin are its listen and admin_listen addresses.
	Addr  string
	Admin string
	mu    sync.Mutex
	lines []logLine
	ready chan struct{}
	done  chan struct{}
}

type logLine struct {
	at   time.Time
	text string
}

// StartInstance runs the warmpool binary wp with the config text (written into tmp), whose
// listen and admin_listen are addr and admin, and waits until its pool is ready.
func StartInstance(ctx context.Context, wp, tmp, config, addr, admin string) (*Instance, error) {
	path := filepath.Join(tmp, fmt.Sprintf("warmpool-%d.toml", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, wp, "run", "--config", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	in := &Instance{cmd: cmd, Addr: addr, Admin: admin, ready: make(chan struct{}), done: make(chan struct{})}
	go in.read(stderr)
	select {
	case <-in.ready:
		return in, nil
	case <-in.done:
		return nil, fmt.Errorf("warmpool exited before its pool was ready:\n%s", in.Tail(20))
	case <-time.After(90 * time.Second):
		in.Stop()
		return nil, fmt.Errorf("warmpool not ready within 90s:\n%s", in.Tail(20))
	}
}

func (in *Instance) read(r interface{ Read([]byte) (int, error) }) {
	defer close(in.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	readySeen := false
	for sc.Scan() {
		in.mu.Lock()
		in.lines = append(in.lines, logLine{at: time.Now(), text: sc.Text()})
		in.mu.Unlock()
		if !readySeen && strings.Contains(sc.Text(), `msg="pool ready"`) {
			readySeen = true
			close(in.ready)
		}
	}
}

// Tail is its last n log lines.
func (in *Instance) Tail(n int) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []string
	for _, l := range in.lines[max(0, len(in.lines)-n):] {
		out = append(out, l.text)
	}
	return strings.Join(out, "\n")
}

// Logged returns the lines with message msg that arrived in [from, to].
func (in *Instance) Logged(msg string, from, to time.Time) []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []string
	for _, l := range in.lines {
		if !l.at.Before(from) && !l.at.After(to) && strings.Contains(l.text, `msg="`+msg+`"`) {
			out = append(out, l.text)
		}
	}
	return out
}

var attrPattern = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S+)`)

// Attr is the value of key in a text log line.
func Attr(line, key string) string {
	for _, m := range attrPattern.FindAllStringSubmatch(line, -1) {
		if m[1] == key {
			return strings.Trim(m[2], `"`)
		}
	}
	return ""
}

// DurationAttr is the duration value of key in a text log line (0 when none).
func DurationAttr(line, key string) time.Duration {
	d, _ := time.ParseDuration(Attr(line, key))
	return d
}

// Stop ends warmpool with SIGTERM (SIGKILL after 20s) and waits for it.
func (in *Instance) Stop() {
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan struct{})
	go func() {
		in.cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}
