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
