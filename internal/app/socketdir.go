package app

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A socket directory warmpool makes holds an owner file with its pid. The keeper removes the
// directory when warmpool dies (internal/guard); if the keeper died too, a later start removes
// directories whose owner is gone.

const (
	socketDirPattern = "warmpool-"
	ownerFile        = "owner.pid"
)

// makeSocketDir creates this run's socket directory under the temporary directory and marks it
// as this process's.
func makeSocketDir(log *slog.Logger) (string, error) {
	removeStaleSocketDirs(os.TempDir(), log)
	dir, err := os.MkdirTemp("", socketDirPattern)
	if err != nil {
		return "", fmt.Errorf("socket directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("socket directory: %w", err)
	}
	return dir, nil
}

// removeStaleSocketDirs removes the socket directories under tmp whose owner process is gone.
func removeStaleSocketDirs(tmp string, log *slog.Logger) {
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), socketDirPattern) {
			continue
		}
		dir := filepath.Join(tmp, e.Name())
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours to judge (another user's, or made before owner files)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue // its owner may be alive
		}
		if err := os.RemoveAll(dir); err == nil {
			log.Info("removed the socket directory of a warmpool that is gone", "dir", dir, "pid", pid)
		}
	}
}
