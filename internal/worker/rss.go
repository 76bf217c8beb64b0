package worker

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

var pageSize = int64(os.Getpagesize())

// groupProcess is one process of a worker's process group, as /proc shows it.
type groupProcess struct {
	pid      int
	rssBytes int64
}

// groupProcesses lists the processes in process group pgid (a gunicorn master and its
// children, say), so a worker is measured and reprioritised whole.
func groupProcesses(pgid int) ([]groupProcess, error) {
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
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// Fields after the command name, which is in parentheses and may contain spaces.
		end := bytes.LastIndexByte(stat, ')')
		if end < 0 {
			continue
		}
		fields := bytes.Fields(stat[end+1:])
		// fields[0] is field 3 (state); pgrp is field 5, rss (pages) field 24.
		if len(fields) < 22 {
			continue
		}
		if g, _ := strconv.Atoi(string(fields[2])); g != pgid && pid != pgid {
			continue
		}
		pages, _ := strconv.ParseInt(string(fields[21]), 10, 64)
		out = append(out, groupProcess{pid: pid, rssBytes: pages * pageSize})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("process group %d not found", pgid)
	}
	return out, nil
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

// GroupRSS is the resident memory of process group pgid (a worker started by this package).
func GroupRSS(pgid int) (int64, error) { return groupRSS(pgid) }
