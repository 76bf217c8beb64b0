package app

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// A socket directory whose owner process is gone is removed at the next start; one whose
// owner lives, and one without an owner file, are left alone.
func TestStaleSocketDirsAreRemoved(t *testing.T) {
	tmp := t.TempDir()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{"warmpool-gone": strconv.Itoa(gone.Process.Pid), "warmpool-alive": strconv.Itoa(os.Getpid()), "warmpool-unmarked": ""}
	for name, owner := range dirs {
		dir := filepath.Join(tmp, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner), 0o600)
		}
	}
	removeStaleSocketDirs(tmp, slog.New(slog.DiscardHandler))
	for name := range dirs {
		_, err := os.Stat(filepath.Join(tmp, name))
		if exists := err == nil; exists != (name != "warmpool-gone") {
			t.Errorf("%s: exists %v", name, exists)
		}
	}
}
