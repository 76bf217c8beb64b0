package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

type versionCommand struct{ stdout io.Writer }

// version, when set at build time (-ldflags "-X main.version=v1.2.3"), wins over the build
// information Go records.
var version = ""

func (c *versionCommand) Run(context.Context, []string) error {
	fmt.Fprintln(c.stdout, "warmpool", versionString())
	return nil
}

// versionString is the module version (set by go install of a tagged module), else the VCS
// revision and time recorded by go build, and the Go version.
func versionString() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	v := version
	if v == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		v = info.Main.Version
	}
	var rev, at, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	var parts []string
	if v != "" {
		parts = append(parts, v)
	}
	if rev != "" {
		parts = append(parts, "revision "+rev[:min(len(rev), 12)]+dirty)
	}
	if at != "" {
		parts = append(parts, at)
	}
	if len(parts) == 0 {
		parts = append(parts, "dev (no version or revision recorded)")
	}
	return strings.Join(parts, ", ") + ", " + info.GoVersion
}
