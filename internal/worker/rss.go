package worker

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

var pageSize = int64(os.Getpagesize())

// groupProcess is one process of a worker's process group, as /proc shows it.
type groupProcess struct {
	pid      int
	rssBytes int64
}

// groupProcesses lists the processes of process group pgid, which the worker (pid pgid) leads:
// the worker and those of its descendants that stayed in its group. It walks the process tree
// from the worker (/proc/PID/task/TID/children) instead of reading every process on the
// machine, which made each recycle cost milliseconds on a busy host; a kernel without those
// files gets the full scan. A descendant orphaned to init is not found by the walk.
func groupProcesses(pgid int) ([]groupProcess, error) {
	out, err := walkGroup(pgid)
	if errors.Is(err, errNoChildrenFiles) {
		out, err = scanGroup(pgid)
	}
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("process group %d not found", pgid)
	}
	return out, nil
}

var errNoChildrenFiles = errors.New("no /proc/PID/task/TID/children")

func walkGroup(pgid int) ([]groupProcess, error) {
	var out []groupProcess
	queue := []int{pgid}
	seen := map[int]bool{}
	for len(queue) > 0 {
		pid := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		pgrp, rss, ok := readStat(pid)
		if !ok {
			continue // exited meanwhile
		}
		if pgrp == pgid || pid == pgid {
			out = append(out, groupProcess{pid: pid, rssBytes: rss})
		}
		taskDir := filepath.Join("/proc", strconv.Itoa(pid), "task")
		tasks, err := os.ReadDir(taskDir)
		if err != nil {
			continue
		}
		for _, t := range tasks {
			children, err := os.ReadFile(filepath.Join(taskDir, t.Name(), "children"))
			if errors.Is(err, fs.ErrNotExist) && pid == pgid && t.Name() == strconv.Itoa(pid) {
				return nil, errNoChildrenFiles
			}
			for _, f := range bytes.Fields(children) {
				if child, err := strconv.Atoi(string(f)); err == nil {
					queue = append(queue, child)
				}
			}
		}
	}
	return out, nil
}

// scanGroup reads every process on the machine.
func scanGroup(pgid int) ([]groupProcess, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []groupProcess
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pgrp, rss, ok := readStat(pid); ok && (pgrp == pgid || pid == pgid) {
			out = append(out, groupProcess{pid: pid, rssBytes: rss})
		}
	}
	return out, nil
}

// readStat reads a process's group and resident memory from /proc/PID/stat.
func readStat(pid int) (pgrp int, rssBytes int64, ok bool) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, false
	}
	// Fields after the command name, which is in parentheses and may contain spaces.
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, 0, false
	}
	fields := bytes.Fields(stat[end+1:])
	// fields[0] is field 3 (state); pgrp is field 5, rss (pages) field 24.
	if len(fields) < 22 {
		return 0, 0, false
	}
	pgrp, _ = strconv.Atoi(string(fields[2]))
	pages, _ := strconv.ParseInt(string(fields[21]), 10, 64)
	return pgrp, pages * pageSize, true
}

// groupRSS sums the resident memory of every process in process group pgid.
func groupRSS(pgid int) (int64, error) {
	procs, err := groupProcesses(pgid)
	if err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	var total int64
	for _, p := range procs {
		total += p.rssBytes
	}
	return total, nil
}

// GroupMemory is the resident and proportional set sizes of process group pgid (a worker and
// the descendants in its group), from each process's /proc/PID/smaps_rollup. PSS divides each
// shared page among the processes that share it: the figure that shows what a fork from a
// template saves, where RSS counts the shared pages in full in every process.
func GroupMemory(pgid int) (rss, pss int64, err error) {
	procs, err := groupProcesses(pgid)
	if err != nil {
		return 0, 0, fmt.Errorf("memory: %w", err)
	}
	for _, p := range procs {
		r, s, err := ProcessMemory(p.pid)
		if err != nil {
			continue // exited meanwhile
		}
		rss, pss = rss+r, pss+s
	}
	return rss, pss, nil
}

// ProcessMemory reads a process's RSS and PSS from /proc/PID/smaps_rollup.
func ProcessMemory(pid int) (rss, pss int64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, 0, err
	}
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		name, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var into *int64
		switch string(name) {
		case "Rss":
			into = &rss
		case "Pss":
			into = &pss
		default:
			continue
		}
		fields := bytes.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		kb, err := strconv.ParseInt(string(fields[0]), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("smaps_rollup of %d: %w", pid, err)
		}
		*into = kb << 10
	}
	return rss, pss, nil
}

// CPUTime is the CPU time the worker's process group has used so far: the scheduler's own
// nanosecond accounting of each live thread (/proc/PID/task/TID/schedstat). The pool reads it
// at admission: what a new worker cost to boot and warm.
func (w *Worker) CPUTime() (time.Duration, error) {
	pid := w.PID()
	if pid == 0 {
		return 0, errors.New("cpu: worker not started")
	}
	procs, err := groupProcesses(pid)
	if err != nil {
		return 0, fmt.Errorf("cpu: %w", err)
	}
	var total time.Duration
	for _, p := range procs {
		total += processCPU(p.pid)
	}
	return total, nil
}

// processCPU sums the run time of a process's live threads.
func processCPU(pid int) time.Duration {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tasks, _ := os.ReadDir(dir)
	var ns int64
	for _, t := range tasks {
		data, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue
		}
		if f := bytes.Fields(data); len(f) > 0 {
			n, _ := strconv.ParseInt(string(f[0]), 10, 64)
			ns += n
		}
	}
	return time.Duration(ns)
}
