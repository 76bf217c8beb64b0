package pyfork

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
)

//go:embed helper.py
var helperSource []byte

// HelperName is the helper's file name in the runtime directory.
const HelperName = "warmpool_python_helper.py"

// HelperPath is where WriteHelper puts the helper in dir.
func HelperPath(dir string) string { return filepath.Join(dir, HelperName) }

// WriteHelper writes the embedded helper into dir (warmpool's private runtime directory),
// unless an identical copy is there already.
func WriteHelper(dir string) (string, error) {
	path := HelperPath(dir)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, helperSource) {
		return path, nil
	}
	tmp, err := os.CreateTemp(dir, ".helper-*.py")
	if err != nil {
		return "", fmt.Errorf("write the Python helper: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(helperSource); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write the Python helper: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write the Python helper: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", fmt.Errorf("write the Python helper: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("write the Python helper: %w", err)
	}
	return path, nil
}
