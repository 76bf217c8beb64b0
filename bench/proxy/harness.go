package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"warmpool/bench/benchutil"
)

type harness struct {
	dir          string
	warmpoolBin  string
	upstreamBin  string
	relayBin     string
	loopRelayBin string
	workers      []string // the two TCP workers the others front (warmpool starts its own two)
	sockets      []string // the two unix-socket workers nginx fronts in the unix pair
	// The pids of the TCP and the unix-socket pair.
	tcpWorkerPids, unixWorkerPids []int
	procs                         []*proc
	log                           io.Writer
}

// proc is a process the harness started in its own process group.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// workersCPU is the CPU used so far by the workers t fronts: warmpool's own children, or the
// harness's pair (direct reaches the first TCP worker only).
func (h *harness) workersCPU(t target, p *proc) time.Duration {
	var pids []int
	switch {
	case t.ownWorkers && p != nil:
		pids = benchutil.Children(p.cmd.Process.Pid)
	case t.unixWorkers:
		pids = h.unixWorkerPids
	case p == nil:
		pids = h.tcpWorkerPids[:1]
	default:
		pids = h.tcpWorkerPids
	}
	var sum time.Duration
	for _, pid := range pids {
		sum += benchutil.CPU(pid, false)
	}
	return sum
}

func (h *harness) freeAddr() string { return benchutil.FreeAddr() }

// spawn starts argv; with a marker it waits for that line on stderr.
func (h *harness) spawn(name string, argv []string, marker string) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	h.procs = append(h.procs, p)
	ready := make(chan struct{})
	var once sync.Once
	var tail []string
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			tail = append(tail, sc.Text())
			if len(tail) > 20 {
				tail = tail[1:]
			}
			mu.Unlock()
			if marker != "" && strings.Contains(sc.Text(), marker) {
				once.Do(func() { close(ready) })
			}
		}
		cmd.Wait()
		close(p.done)
	}()
	if marker == "" {
		return p, nil
	}
	select {
	case <-ready:
		return p, nil
	case <-p.done:
	case <-time.After(30 * time.Second):
	}
	mu.Lock()
	defer mu.Unlock()
	return p, fmt.Errorf("%s did not become ready:\n%s", name, strings.Join(tail, "\n"))
}

func (h *harness) waitListening(network, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial(network, addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond) // polling a port: there is no event for "now listening"
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (h *harness) close() {
	for i := len(h.procs) - 1; i >= 0; i-- {
		h.procs[i].stop()
	}
}

var rpsRe = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)

// wrk runs one closed-loop measurement and returns requests per second and the requests done.
// With connClose, every request asks for its connection to be closed.
func runWrk(ctx context.Context, addr string, d time.Duration, connClose bool) (rps float64, err error) {
	args := []string{"-t2", "-c64", "-d" + strconv.Itoa(int(d.Seconds())) + "s"}
	if connClose {
		args = append(args, "-H", "Connection: close")
	}
	out, err := exec.CommandContext(ctx, "wrk", append(args, "http://"+addr+"/")...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	m := rpsRe.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("wrk output without Requests/sec:\n%s", out)
	}
	if strings.Contains(string(out), "Non-2xx") || strings.Contains(string(out), "Socket errors") {
		return 0, fmt.Errorf("wrk saw errors:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
