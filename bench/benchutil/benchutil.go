// Package benchutil holds what the benchmark harnesses share: free loopback addresses, the
// module root, building binaries, and CPU time and machine facts read from /proc.
package benchutil

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FreeAddr returns a loopback address with a port nobody listens on now.
func FreeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ModuleRoot is the directory of go.mod above the working directory.
func ModuleRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}

// Build compiles package pkg ("./cmd/warmpool") of this module to out.
func Build(ctx context.Context, out, pkg string) error {
	b := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	b.Dir = ModuleRoot()
	if o, err := b.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", pkg, err, o)
	}
	return nil
}

const clockTicks = 100.0 // USER_HZ on Linux

// MachineTicks reads the whole machine's CPU time from /proc/stat, in clock ticks: idle
// (idle and iowait) and total (every state; guest time is already inside user).
func MachineTicks() (idle, total float64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		x, _ := strconv.ParseFloat(v, 64)
		total += x
		if i == 3 || i == 4 {
			idle += x
		}
	}
	return idle, total
}

// eachProcess calls fn with every process's pid and the fields of /proc/PID/stat after the
// command name (f[1] is the parent's pid, f[2] the process group, f[11] and f[12] user and
// system ticks).
func eachProcess(fn func(pid int, f []string)) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) >= 13 {
			fn(p, f)
		}
	}
}

// Children lists the pids of pid's child processes.
func Children(pid int) []int {
	var kids []int
	eachProcess(func(p int, f []string) {
		if ppid, _ := strconv.Atoi(f[1]); ppid == pid {
			kids = append(kids, p)
		}
	})
	return kids
}

// CPU is the user+system CPU time of process pid, or of every process of process group pid
// when group is true.
func CPU(pid int, group bool) time.Duration {
	var ticks float64
	eachProcess(func(p int, f []string) {
		if g, _ := strconv.Atoi(f[2]); (group && g != pid) || (!group && p != pid) {
			return
		}
		u, _ := strconv.ParseFloat(f[11], 64)
		sy, _ := strconv.ParseFloat(f[12], 64)
		ticks += u + sy
	})
	return time.Duration(ticks / clockTicks * float64(time.Second))
}

// ThreadCPU is the CPU time of process pid's live threads, to the nanosecond (the scheduler's
// own accounting in /proc/PID/task/*/schedstat), for costs below the 10 ms tick that CPU reads.
func ThreadCPU(pid int) time.Duration {
	tasks, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	var ns int64
	for _, t := range tasks {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", t.Name(), "schedstat"))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(data)); len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			ns += v
		}
	}
	return time.Duration(ns)
}

// RSS is the resident memory of process pid.
func RSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// CPUModel names the processor.
func CPUModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "model name") {
			if _, v, ok := strings.Cut(line, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown CPU"
}

// Status decodes warmpool's /status, served on the admin address admin, into v.
func Status(admin string, v any) error {
	resp, err := http.Get("http://" + admin + "/status")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/status: %s", resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// WriteResult writes a results file, creating its directory; an empty path writes nothing.
func WriteResult(path, content string) error {
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

// Bar is one row of a BarChart.
type Bar struct {
	Label string
	Value float64
	Text  string // printed after the bar
	// Highlight draws the bar in warmpool's colour.
	Highlight bool
	// Skipped draws no bar, only the word.
	Skipped bool
}

// BarChart renders horizontal bars as an SVG image, scaled to the largest value (on a log
// scale when log is set, for values that span orders of magnitude).
func BarChart(title string, bars []Bar, log bool) string {
	var b strings.Builder
	scale := func(v float64) float64 {
		if log {
			return math.Log10(max(v, 1))
		}
		return v
	}
	top := 1e-9
	for _, bar := range bars {
		top = max(top, scale(bar.Value))
	}
	rowH, left, width := 34, 230, 480
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="13">`, left+width+140, rowH*len(bars)+40)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="20" font-weight="bold">%s</text>`, html.EscapeString(title))
	for i, bar := range bars {
		y := 34 + i*rowH
		fmt.Fprintf(&b, `<text x="10" y="%d">%s</text>`, y+16, html.EscapeString(bar.Label))
		if bar.Skipped {
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#888">skipped</text>`, left, y+16)
			continue
		}
		w := max(int(float64(width)*scale(bar.Value)/top), 1)
		color := "#8aa4c8"
		if bar.Highlight {
			color = "#2e9d57"
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="22" fill="%s"/>`, left, y, w, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`, left+w+6, y+16, html.EscapeString(bar.Text))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// Median is the median of ds (the lower middle of an even count); 0 for none.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// PairedRatio is the median over rounds of each round's value over the reference's value in the
// same round: paired by round, so that a noisy spell of the shared machine in one round does not
// decide the ratio (pooled percentiles let one bad round dominate either side). false when the
// rounds do not pair up.
func PairedRatio(rounds, ref []time.Duration) (float64, bool) {
	if len(ref) != len(rounds) || len(rounds) == 0 {
		return 0, false
	}
	ratios := make([]float64, len(rounds))
	for i := range rounds {
		ratios[i] = float64(rounds[i]) / float64(ref[i])
	}
	slices.Sort(ratios)
	return ratios[(len(ratios)-1)/2], true
}
