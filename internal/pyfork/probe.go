package pyfork

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// probeScript imports the server a forked worker needs and the app, as the helper will, and
// says what it found as one JSON line. Stdlib only; it runs in the app's environment.
const probeScript = `
import importlib, json, sys
server, target = sys.argv[1], sys.argv[2]
def say(**kw):
    print(json.dumps(kw)); sys.exit(0)
try:
    importlib.import_module(server)
except ImportError as e:
    say(missing_server=e.name or server, error=str(e))
sys.path.insert(0, ".")
mod, _, attr = target.partition(":")
try:
    obj = importlib.import_module(mod)
except ImportError as e:
    say(missing_module=e.name or mod, error=str(e))
except Exception as e:
    say(app_error="%s: %s" % (type(e).__name__, e))
for part in (attr or "application").split("."):
    try:
        obj = getattr(obj, part)
    except AttributeError:
        say(missing_attr=attr or "application")
say(ok=True, python=sys.version.split()[0])
`

// ProbeError is what an app's environment lacks for the fork mode, said with what to do.
type ProbeError struct{ Msg string }

func (e *ProbeError) Error() string { return e.Msg }

// Probe runs the app's interpreter in dir with env, as a template would start, and checks that
// it imports the server of the interface (waitress for WSGI, uvicorn for ASGI) and the app
// ("module:callable"), within timeout. A *ProbeError names what is missing and how to get it;
// another error is a failure to run the interpreter at all.
func Probe(ctx context.Context, executable, dir string, env []string, app, iface string, timeout time.Duration) error {
	server := "waitress"
	if iface == "asgi" {
		server = "uvicorn"
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, executable, "-c", probeScript, server, app)
	cmd.Dir, cmd.Env = dir, env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return &ProbeError{fmt.Sprintf("importing %s with %s took over %s: an app that does slow work at import (a connection that hangs?) — check with --offline to skip this", app, executable, timeout)}
	}
	var said struct {
		OK            bool   `json:"ok"`
		MissingServer string `json:"missing_server"`
		MissingModule string `json:"missing_module"`
		MissingAttr   string `json:"missing_attr"`
		AppError      string `json:"app_error"`
		Error         string `json:"error"`
	}
	if jerr := json.Unmarshal(bytes.TrimSpace(lastLine(stdout.Bytes())), &said); jerr != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) || err == nil {
			return &ProbeError{fmt.Sprintf("%s could not run the check: %s", executable, strings.TrimSpace(tail(stderr.String(), 5)))}
		}
		return fmt.Errorf("run %s: %w", executable, err)
	}
	switch {
	case said.OK:
		return nil
	case said.MissingServer != "":
		return &ProbeError{fmt.Sprintf("%s cannot import %s, which serves each forked %s worker: install it in the app's environment (%s -m pip install %s; Debian: apt-get install python3-%s)",
			executable, said.MissingServer, strings.ToUpper(iface), executable, server, server)}
	case said.MissingModule != "":
		return &ProbeError{fmt.Sprintf("%s cannot import %s for the app %s (%s): run from worker.dir (%q), with the app's virtualenv as worker.python.executable, or install the package",
			executable, said.MissingModule, app, said.Error, dir)}
	case said.MissingAttr != "":
		return &ProbeError{fmt.Sprintf("the app %s: its module has no %s", app, said.MissingAttr)}
	default:
		return &ProbeError{fmt.Sprintf("importing the app %s failed: %s", app, said.AppError)}
	}
}

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
