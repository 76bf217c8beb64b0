package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"warmpool/internal/migrate"
)

// importCommand is `warmpool import FILE`: another server's config as warmpool's.
type importCommand struct{ stdout, stderr io.Writer }

const importHelp = `warmpool import [--python P] [--app module:callable] FILE
warmpool import [--python P] -- gunicorn|uwsgi ARGS...

Reads a gunicorn config file (gunicorn.conf.py, run the way gunicorn runs it, with the app's
Python: --python) or a uWSGI .ini file, and prints a commented warmpool config to stdout:
every setting imported says where it came from, every one left out is listed with the reason,
and a first warm-up plan says what to point it at. A summary goes to stderr.

  warmpool import --python venv/bin/python --app mysite.wsgi gunicorn.conf.py > warmpool.toml
  warmpool import uwsgi.ini > warmpool.toml && warmpool check --config warmpool.toml
  warmpool import -- gunicorn -c gunicorn.conf.py -w 4 --threads 2 mysite.wsgi > warmpool.toml

Flags:
`

func (c *importCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("import")
	python := fs.String("python", "python3", "the app's interpreter: it runs a gunicorn config file (which may import the app's modules)")
	app := fs.String("app", "", "the app as on the server's command line (mysite.wsgi or mysite.wsgi:application), when the file names none")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), importHelp)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageError{err.Error()}
	}
	var s *migrate.Settings
	var err error
	if fs.NArg() > 1 || fs.NArg() == 1 && (fs.Arg(0) == "gunicorn" || fs.Arg(0) == "uwsgi") {
		s, err = migrate.ReadCommand(ctx, *python, fs.Args())
		if err == nil && *app != "" {
			s.App = *app
		}
		return c.write(s, err, *python)
	}
	if fs.NArg() != 1 {
		return usageError{"warmpool import takes one file (a gunicorn config, a uWSGI .ini) or, after --, a gunicorn or uwsgi command line"}
	}
	path := fs.Arg(0)
	switch strings.ToLower(filepath.Ext(path)) {
	case ".ini":
		s, err = migrate.ReadUWSGI(path)
		if err == nil && *app != "" {
			s.App = *app
		}
	default:
		s, err = migrate.ReadGunicorn(ctx, *python, path, *app)
	}
	return c.write(s, err, *python)
}

// write prints what was read as warmpool's config, and the summary on stderr.
func (c *importCommand) write(s *migrate.Settings, err error, python string) error {
	if err != nil {
		return err
	}
	if err := migrate.WriteConfig(c.stdout, s, migrate.Options{Python: python}); err != nil {
		return err
	}
	fmt.Fprintln(c.stderr, migrate.Summary(s))
	return nil
}
