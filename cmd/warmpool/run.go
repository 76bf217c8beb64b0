package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"warmpool/internal/app"
	"warmpool/internal/config"
	"warmpool/internal/pyfork"
)

// configFlags are the flags that choose the configuration layers.
type configFlags struct {
	paths stringList
	sets  stringList
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func (c *configFlags) register(fs *flag.FlagSet) {
	fs.Var(&c.paths, "config", "the TOML config file (default: warmpool.toml when it exists); repeatable: each a layer over the ones before")
	fs.Var(&c.sets, "set", "override one setting, key=value (repeatable), e.g. --set worker.count=4")
}

func (c *configFlags) layers() config.Layers {
	paths := []string(c.paths)
	if len(paths) == 0 {
		if _, err := os.Stat("warmpool.toml"); err == nil {
			paths = []string{"warmpool.toml"}
		}
	}
	return config.Layers{Files: paths, Env: os.Environ(), Sets: c.sets}
}

// load reads and validates the configuration; the error lists every problem, and says so when
// no config file was found.
func (c *configFlags) load() (*config.Loaded, error) {
	layers := c.layers()
	l, err := config.LoadAndValidate(layers)
	if err != nil && len(layers.Files) == 0 {
		return nil, noConfigError{err}
	}
	return l, err
}

// noConfigError is a configuration made without any file that does not hold.
type noConfigError struct{ err error }

func (e noConfigError) Error() string { return e.err.Error() + "\n" + noConfigHint }
func (e noConfigError) Unwrap() error { return e.err }

// noConfigHint follows the problems of a configuration made without any file.
const noConfigHint = `no config file: there is no warmpool.toml here and no --config was given. Write one:
  warmpool init                       in your app's directory (Django, Flask, FastAPI)
  warmpool import gunicorn.conf.py    from a gunicorn or uWSGI (.ini) config`

// configError lists every problem of a configuration: exit status 2.
type configError struct{ err error }

func (e configError) Error() string {
	var nc noConfigError
	errs := e.err
	if errors.As(errs, &nc) {
		errs = nc.err
	}
	problems := splitErrors(errs)
	var b strings.Builder
	fmt.Fprintf(&b, "the configuration has %d problem(s):", len(problems))
	for _, p := range problems {
		b.WriteString("\n  - " + p)
	}
	if errs != e.err {
		b.WriteString("\n" + noConfigHint)
	}
	return b.String()
}

func splitErrors(err error) []string {
	var out []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, splitErrors(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

// runCommand logs as the configuration says (log_level, log_format) once it is loaded.
type runCommand struct{ stderr io.Writer }

const runHelp = `Usage: warmpool run [--config F] [--set key=value]...

Serves the workers the configuration describes; every new worker is warmed before it gets traffic.

Signals:
  SIGTERM, SIGINT   stop accepting, finish in-flight requests, stop the workers, exit 0
  SIGHUP            re-read the configuration; if valid, roll every worker to it, warm-first
  SIGTTIN, SIGTTOU  add or remove one worker (never below min_ready)

Example:
  warmpool check --config warmpool.toml && warmpool run --config warmpool.toml
  kill -HUP $(pidof warmpool)     # after a deploy: new code, warm-first

Flags:
`

func (c *runCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("run")
	var cf configFlags
	cf.register(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), runHelp)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	l, err := cf.load()
	if err != nil {
		return configError{err}
	}
	return app.Run(ctx, l, cf.load, l.Config.NewLogger(c.stderr))
}

type checkCommand struct{ stdout io.Writer }

func (c *checkCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("check")
	var cf configFlags
	cf.register(fs)
	showSecrets := fs.Bool("show-secrets", false, "print the values of worker.env and of warm-up headers and bodies (masked by default: check's output is often kept, as in the journal)")
	offline := fs.Bool("offline", false, "skip the Python side: do not run worker.python.executable to import the server and the app (on a machine without the app's environment)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	layers := cf.layers()
	l, err := cf.load()
	if err != nil {
		return configError{err}
	}
	pythonSide := ""
	if w := &l.Config.Worker; w.IsPython() && !*offline {
		if err := probePython(ctx, w); err != nil {
			return configError{fmt.Errorf("the Python side: %w", err)}
		}
		pythonSide = fmt.Sprintf("# The Python side: %s imports %s and %s (skip with --offline).\n", w.Python.Executable, serverOf(w.Python.Interface), w.Python.App)
	}
	what := "defaults, environment and flags (no config file)"
	if len(layers.Files) > 0 {
		what = strings.Join(layers.Files, " with ")
	}
	fmt.Fprintf(c.stdout, "# %s is valid. Effective configuration, each value with its source:\n", what)
	for _, w := range l.Warnings() {
		fmt.Fprintf(c.stdout, "# WARNING: %s\n", w)
	}
	fmt.Fprint(c.stdout, pythonSide)
	l.Explain(c.stdout, *showSecrets)
	return nil
}

func isConfigError(err error) bool {
	var ce configError
	return errors.As(err, &ce)
}

// probePython runs the app's interpreter as a template would start (in worker.dir, with the
// workers' environment) and checks that it imports the server and the app.
func probePython(ctx context.Context, w *config.Worker) error {
	env := config.ChildEnv(os.Environ())
	for k, v := range w.Env {
		env = append(env, k+"="+v)
	}
	return pyfork.Probe(ctx, w.Python.Executable, w.Dir, pyfork.Env(env), w.Python.App, w.Python.Interface, 30*time.Second)
}

func serverOf(iface string) string {
	if iface == config.InterfaceASGI {
		return "uvicorn"
	}
	return "waitress"
}
