package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"warmpool/internal/migrate"
)

// initCommand is `warmpool init`: a starter config for the app in a directory.
type initCommand struct{ stdout, stderr io.Writer }

const initHelp = `warmpool init [--dir D] [--force]

Looks at the app's directory (a Django project's manage.py, a module making a Flask, FastAPI or
Starlette app, a wsgi.py or asgi.py) and writes warmpool.toml there: the warm fork mode for
the app, the virtualenv in the directory if there is one, and a first warm-up plan to point at
a real route. It never overwrites a warmpool.toml unless --force.

Flags:
`

func (c *initCommand) Run(_ context.Context, args []string) error {
	set := newFlagSet("init")
	dir := set.String("dir", ".", "the app's directory")
	force := set.Bool("force", false, "overwrite an existing warmpool.toml")
	set.Usage = func() {
		fmt.Fprint(set.Output(), initHelp)
		set.PrintDefaults()
	}
	if err := parseFlags(set, args); err != nil {
		return err
	}
	s, err := migrate.Detect(*dir)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := migrate.WriteConfig(&b, s, migrate.Options{}); err != nil {
		return err
	}
	path := filepath.Join(*dir, "warmpool.toml")
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if *force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return usageError{path + " exists: warmpool init does not overwrite it (--force does)"}
	}
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("init: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	fmt.Fprintf(c.stdout, "wrote %s for %s: %s in the warm fork mode (%s).\nNext: point its [[warmup.request]] at a real route with your production Host, then\n  warmpool check && warmpool run\n",
		path, s.Source, s.App, s.Interface)
	return nil
}
