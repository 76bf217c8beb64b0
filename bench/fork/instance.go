package main

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

	"warmpool/bench/benchutil"
	"warmpool/internal/worker"
)

// instance is one running warmpool, its log lines kept with their arrival times.
type instance struct {
	cmd   *exec.Cmd
	addr  string
	admin string
	mu    sync.Mutex
	lines []logLine
	ready chan struct{}
	done  chan struct{}
}

type logLine struct {
	at   time.Time
	text string
}

// startInstance runs warmpool with the config text and waits until its pool is ready.
func startInstance(ctx context.Context, wp, tmp, config, addr, admin string) (*instance, error) {
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
	in := &instance{cmd: cmd, addr: addr, admin: admin, ready: make(chan struct{}), done: make(chan struct{})}
	go in.read(stderr)
	select {
	case <-in.ready:
		return in, nil
	case <-in.done:
		return nil, fmt.Errorf("warmpool exited before its pool was ready:\n%s", in.tail(20))
	case <-time.After(90 * time.Second):
		in.stop()
		return nil, fmt.Errorf("warmpool not ready within 90s:\n%s", in.tail(20))
	}
}

func (in *instance) read(r interface{ Read([]byte) (int, error) }) {
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

func (in *instance) tail(n int) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []string
	for _, l := range in.lines[max(0, len(in.lines)-n):] {
		out = append(out, l.text)
	}
	return strings.Join(out, "\n")
}

// logged returns the lines with message msg that arrived in [from, to].
func (in *instance) logged(msg string, from, to time.Time) []string {
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

// attr is the value of key in a text log line.
func attr(line, key string) string {
	for _, m := range attrPattern.FindAllStringSubmatch(line, -1) {
		if m[1] == key {
			return strings.Trim(m[2], `"`)
		}
	}
	return ""
}

func durationAttr(line, key string) time.Duration {
	d, _ := time.ParseDuration(attr(line, key))
	return d
}

// stop ends warmpool with SIGTERM (SIGKILL after 20s) and waits for it.
func (in *instance) stop() {
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

// status is what the bench reads of /status.
type status struct {
	Workers []struct {
		ID        int       `json:"id"`
		PID       int       `json:"pid"`
		State     string    `json:"state"`
		Served    int64     `json:"requests_served"`
		Origin    string    `json:"origin"`
		StartedAt time.Time `json:"started_at"`
	} `json:"workers"`
	Templates []struct {
		PID   int    `json:"pid"`
		State string `json:"state"`
	} `json:"templates"`
}

func (in *instance) status() (status, error) {
	var st status
	err := benchutil.Status(in.admin, &st)
	return st, err
}

// templatePID is the ready template's pid; 0 when there is none.
func (st status) templatePID() int {
	for _, t := range st.Templates {
		if t.State == "ready" {
			return t.PID
		}
	}
	return 0
}

// treePSS is the proportional memory of pid and its descendants (a gunicorn worker's arbiter and
// its worker process), from /proc/PID/smaps_rollup.
func treePSS(pid int) int64 {
	total := pss(pid)
	for _, kid := range benchutil.Children(pid) {
		total += treePSS(kid)
	}
	return total
}

func pss(pid int) int64 {
	_, p, _ := worker.ProcessMemory(pid)
	return p
}
