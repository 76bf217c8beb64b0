package worker

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

var pageSize = int64(os.Getpagesize())

// groupRSS sums the resident memory of every process in process group pgid, so a worker that
// forks (a gunicorn master and its child) is measured whole.
func groupRSS(pgid int) (int64, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	var total int64
	found := false
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
		// fields[0] is state (field 3); pgrp is field 5, rss (pages) is field 24.
		if len(fields) < 22 {
			continue
		}
		if g, _ := strconv.Atoi(string(fields[2])); g != pgid && pid != pgid {
			continue
		}
		pages, _ := strconv.ParseInt(string(fields[21]), 10, 64)
		total += pages * pageSize
		found = true
	}
	if !found {
		return 0, fmt.Errorf("rss: process group %d not found", pgid)
	}
	return total, nil
}
