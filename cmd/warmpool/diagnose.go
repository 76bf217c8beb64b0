package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"warmpool/internal/diagnose"
)

type diagnoseCommand struct {
	log    *slog.Logger
	stdout io.Writer
}

// coldPathsError: the warm-up plan leaves paths cold; exit status 1.
type coldPathsError struct{ n int }

func (e coldPathsError) Error() string {
	return fmt.Sprintf("%d request(s) stay cold after the warm-up plan", e.n)
}

// errorAnswersError: warm-up requests got a 4xx or 5xx; exit status 1.
type errorAnswersError struct{ requests []string }

func (e errorAnswersError) Error() string {
	return fmt.Sprintf("warm-up request(s) answered with an error: %s", strings.Join(e.requests, ", "))
}

func (c *diagnoseCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("diagnose")
	var cf configFlags
	cf.register(fs)
	var paths stringList
	fs.Var(&paths, "path", "also measure GET of this path (repeatable): the routes your users hit")
	host := fs.String("host", "", "Host header for --path requests (default: the warm-up plan's, else localhost)")
	allowErrors := fs.Bool("allow-error-answers", false, "exit 0 even when warm-up requests are answered with a 4xx or 5xx")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	l, err := cf.load()
	if err != nil {
		return configError{err}
	}
	if py := l.Config.Worker.Python; py.App != "" {
		fmt.Fprintf(c.stdout, "warmpool diagnose: Python %s app %s (fresh processes of %s)\n%s\n", strings.ToUpper(py.Interface), py.App, py.Executable, l.WarmupSummary())
	} else {
		fmt.Fprintf(c.stdout, "warmpool diagnose: worker %q\n%s\n", l.Config.Worker.Command, l.WarmupSummary())
	}
	fmt.Fprintln(c.stdout, "Worker 1 starts without warm-up (cold first requests, then steady); worker 2 runs the warm-up plan first.")
	rep, err := diagnose.Run(ctx, diagnose.Options{Config: &l.Config, Paths: paths, Host: *host, Logger: c.log})
	if err != nil {
		return err
	}
	rep.Write(c.stdout)
	if n := rep.Uncovered(); n > 0 {
		return coldPathsError{n}
	}
	if bad := rep.ErrorAnswers(); len(bad) > 0 && !*allowErrors {
		return errorAnswersError{bad}
	}
	return nil
}
