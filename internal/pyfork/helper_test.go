package pyfork

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The helper's own unit tests (helper_test.py), under the machine's python3.
func TestHelperUnitTests(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 on PATH: the helper's unit tests need one")
	}
	cmd := exec.Command(python, "-m", "unittest", "-v", "helper_test")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper_test.py failed: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// The helper compiles, as do the test apps: a syntax error would otherwise surface only when a
// template starts.
func TestHelperCompiles(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 on PATH")
	}
	files, _ := filepath.Glob("testdata/*.py")
	args := append([]string{"-m", "py_compile", "helper.py", "helper_test.py"}, files...)
	if out, err := exec.Command(python, args...).CombinedOutput(); err != nil {
		t.Fatalf("py_compile: %v\n%s", err, out)
	}
}

// WriteHelper writes the embedded helper, and leaves an identical copy alone.
func TestWriteHelper(t *testing.T) {
	dir := t.TempDir()
	path, err := WriteHelper(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, helperSource) {
		t.Fatalf("written helper differs from the embedded one (%v)", err)
	}
	before, _ := os.Stat(path)
	if _, err := WriteHelper(dir); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) {
		t.Error("an identical helper was rewritten")
	}
	if err := os.WriteFile(path, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteHelper(dir); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, helperSource) {
		t.Error("a stale helper was not replaced")
	}
}

// The helper's protocol tables are Go's: the same version, the same messages each way with the
// same fields, and the same exit status for a failure retrying cannot heal.
func TestHelperSpeaksTheSameProtocol(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 on PATH")
	}
	out, err := exec.Command(python, "-c", `import helper, json
print(json.dumps({"version": helper.PROTOCOL_VERSION, "unfixable": helper.EXIT_UNFIXABLE,
    "ops": {k: sorted(v) for k, v in helper.OPS.items()}, "replies": {k: sorted(v) for k, v in helper.REPLIES.items()}}))`).Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	var py struct {
		Version, Unfixable int
		Ops, Replies       map[string][]string
	}
	if err := json.Unmarshal(out, &py); err != nil {
		t.Fatal(err)
	}
	fields := func(table map[string]reflect.Type) map[string][]string {
		out := map[string][]string{}
		for kind, typ := range table {
			names := []string{}
			for i := range typ.NumField() {
				name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
				if name != "-" { // warmpool's own, not on the wire
					names = append(names, name)
				}
			}
			slices.Sort(names)
			out[kind] = names
		}
		return out
	}
	if py.Version != ProtocolVersion || py.Unfixable != ExitUnfixable {
		t.Errorf("helper: version %d, unfixable exit %d; Go: %d, %d", py.Version, py.Unfixable, ProtocolVersion, ExitUnfixable)
	}
	if want := fields(ops); !reflect.DeepEqual(py.Ops, want) {
		t.Errorf("ops: helper %v, Go %v", py.Ops, want)
	}
	if want := fields(replies); !reflect.DeepEqual(py.Replies, want) {
		t.Errorf("replies: helper %v, Go %v", py.Replies, want)
	}
}
