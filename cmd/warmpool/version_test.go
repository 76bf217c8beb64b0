package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// `warmpool version` and `warmpool --version` print the build's version and Go's.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		var out, errOut bytes.Buffer
		if code := run([]string{arg}, &out, &errOut); code != 0 {
			t.Fatalf("%s: exit %d: %s", arg, code, errOut.String())
		}
		if s := out.String(); !strings.HasPrefix(s, "warmpool ") || !strings.Contains(s, runtime.Version()) {
			t.Fatalf("%s: %q", arg, s)
		}
	}
}
