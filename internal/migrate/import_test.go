package migrate

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"warmpool/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// Golden tests over configs in the shape of real-world ones (their sources named in each
// file): the output is stable, and warmpool's own loader accepts it with no problem.
func TestImportGolden(t *testing.T) {
	cases := []struct {
		file, app string
	}{
		{"netbox.gunicorn.py", "netbox.wsgi"},
		{"django-docker.gunicorn.conf.py", ""},
		{"fastapi.gunicorn.conf.py", "app.main:app"},
		{"django-docs.uwsgi.ini", ""},
		{"api.uwsgi.ini", ""},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			var s *Settings
			var err error
			if strings.HasSuffix(tc.file, ".ini") {
				s, err = ReadUWSGI(path)
			} else {
				s, err = ReadGunicorn(context.Background(), "python3", path, tc.app)
			}
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := WriteConfig(&out, s, Options{Python: "python3"}); err != nil {
				t.Fatal(err)
			}
			golden := path + ".toml"
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != string(want) {
				t.Errorf("differs from %s (go test -update to accept):\n%s", golden, out.String())
			}
			// What warmpool check runs: load and validate, every problem listed.
			l, err := config.LoadAndValidate(config.Layers{Files: []string{golden}})
			if err != nil {
				t.Fatalf("warmpool refuses the imported config: %v", err)
			}
			if !l.Config.Worker.IsPython() || l.Config.Worker.Count != s.Workers || l.Config.Worker.Concurrency != s.Threads {
				t.Errorf("imported: %+v", l.Config.Worker)
			}
			warned := false
			for _, w := range l.Warnings() {
				warned = warned || strings.Contains(w, "sends no Host header")
			}
			if !warned {
				t.Error("check does not warn about the warm-up plan's missing Host")
			}
		})
	}
}

// A gunicorn or uwsgi command line imports as its config file would, the options given on it
// over the file they name, as the servers themselves layer them.
func TestImportCommandLine(t *testing.T) {
	for _, tc := range []struct {
		argv          []string
		listen, app   string
		count, thread int
		timeout       string
	}{
		{[]string{"gunicorn", "-c", "testdata/netbox.gunicorn.py", "-w", "2", "--threads=8", "-b", "0.0.0.0:9000", "netbox.wsgi"},
			"0.0.0.0:9000", "netbox.wsgi:application", 2, 8, "2m0s"},
		{[]string{"gunicorn", "--bind", ":8000", "--workers", "3", "--preload", "--timeout", "45", "-k", "uvicorn.workers.UvicornWorker", "app.main:app"},
			"0.0.0.0:8000", "app.main:app", 3, 1, "45s"},
		{[]string{"uwsgi", "--ini", "testdata/django-docs.uwsgi.ini", "--processes", "3", "--http-socket", ":8081", "--master"},
			"0.0.0.0:8081", "mysite.wsgi:application", 3, 1, "20s"},
		{[]string{"uwsgi", "--http-socket=:8080", "--module=api.wsgi", "--processes=4", "--threads=2", "--harakiri=60", "--lazy-apps"},
			"0.0.0.0:8080", "api.wsgi:application", 4, 2, "1m0s"},
	} {
		s, err := ReadCommand(context.Background(), "python3", tc.argv)
		if err != nil {
			t.Fatalf("%v: %v", tc.argv, err)
		}
		var out bytes.Buffer
		if err := WriteConfig(&out, s, Options{Python: "python3"}); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "warmpool.toml")
		os.WriteFile(path, out.Bytes(), 0o644)
		l, err := config.LoadAndValidate(config.Layers{Files: []string{path}})
		if err != nil {
			t.Fatalf("%v: warmpool refuses it: %v\n%s", tc.argv, err, out.String())
		}
		c := l.Config
		if c.Listen != tc.listen || c.Worker.Python.App != tc.app || c.Worker.Count != tc.count || c.Worker.Concurrency != tc.thread ||
			c.Proxy.RequestTimeout.String() != tc.timeout {
			t.Errorf("%v: listen %s app %s count %d concurrency %d timeout %s", tc.argv, c.Listen, c.Worker.Python.App, c.Worker.Count,
				c.Worker.Concurrency, c.Proxy.RequestTimeout)
		}
	}
	if _, err := ReadCommand(context.Background(), "python3", []string{"waitress-serve", "app:app"}); err == nil {
		t.Error("a command of another server was read")
	}
}
