// Command warmpool is an application server that only ever serves warm workers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"warmpool/internal/guard"
)

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// command is one subcommand.
type command interface {
	Run(ctx context.Context, args []string) error
}

func commands(stdout, stderr io.Writer) map[string]command {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel()}))
	return map[string]command{
		"run":         &runCommand{stderr: stderr},
		"check":       &checkCommand{stdout: stdout},
		"import":      &importCommand{stdout: stdout, stderr: stderr},
		"init":        &initCommand{stdout: stdout, stderr: stderr},
		"diagnose":    &diagnoseCommand{log: log, stdout: stdout},
		"learned":     &learnedCommand{stdout: stdout},
		"demo":        &demoCommand{log: log, stdout: stdout},
		"demo-worker": &demoWorkerCommand{},
		"version":     &versionCommand{stdout: stdout},
	}
}

const usage = `warmpool: an application server that only ever serves warm workers

Usage:
  warmpool run [--config F]... [--set key=value]...  serve the workers the config describes (each --config a layer over the last)
  warmpool check [--config F] [--set key=value]... [--show-secrets]
                                                    validate; print every effective value and its source
                                                    (worker.env and warm-up header values masked)
  warmpool init [--dir D]                            write warmpool.toml for the app here (Django, Flask, FastAPI)
  warmpool import [--python P] [--app A] FILE          a gunicorn.conf.py or uwsgi.ini as a commented warmpool config
  warmpool diagnose [--config F] [--path P]... [--host H]
                                                    measure cold, warmed and steady latency per path:
                                                    does the warm-up plan reach the slow code?
  warmpool learned [--config F] [--state FILE] [--json]
                                                    what traffic taught the warm-up (warmup.learn), printed
                                                    as [[warmup.request]] tables and a preload list to commit
  warmpool demo                                     the built-in demo: warm recycling with nothing installed
  warmpool version (or --version)                   print the version, revision and build time

Layers, lowest first: defaults, the config file, WARMPOOL_SECTION_KEY environment variables
(WARMPOOL_WORKER_COUNT=4), --set flags. Signals: SIGTERM/SIGINT drain and exit; SIGHUP re-reads
the config and rolls every worker to it, warm-first; SIGTTIN/SIGTTOU add/remove a worker.
`

func main() {
	guard.RunIfKeeper() // this process may be the keeper of another warmpool's workers
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can call it.
func run(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0: // a mistake: usage on stderr
		fmt.Fprint(stderr, usage)
		return 2
	case isHelp(args[0]) || args[0] == "help": // asked for: on stdout
		fmt.Fprint(stdout, usage)
		return 0
	}
	flagOutput = stderr
	for _, a := range args[1:] {
		if isHelp(a) {
			flagOutput = stdout // a subcommand's help, asked for
		}
	}
	if args[0] == "--version" || args[0] == "-version" {
		args = []string{"version"}
	}
	cmd, ok := commands(stdout, stderr)[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "warmpool: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	err := cmd.Run(context.Background(), args[1:])
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue) || isConfigError(err):
		fmt.Fprintf(stderr, "warmpool %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "warmpool %s: %v\n", args[0], err)
		return 1
	}
}

// logLevel is the level of the commands that run without a configuration (run's logger
// follows log_level, which WARMPOOL_LOG_LEVEL also sets).
func logLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("WARMPOOL_LOG_LEVEL"))); err != nil {
		return slog.LevelInfo
	}
	return l
}

// flagOutput is where flag sets print: stdout when help was asked for, else stderr.
var flagOutput io.Writer = os.Stderr

func isHelp(arg string) bool { return arg == "-h" || arg == "--help" || arg == "-help" }

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("warmpool "+name, flag.ContinueOnError)
	fs.SetOutput(flagOutput)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}
