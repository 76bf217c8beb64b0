package migrate

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"warmpool/internal/config"
)

// warmpool init on the layouts of a Django, a Flask and a FastAPI project: the app and its
// interface are found, the virtualenv in the directory is used, and warmpool's loader accepts
// the starter config.
func TestDetectLayouts(t *testing.T) {
	for _, tc := range []struct {
		name       string
		files      map[string]string
		app, iface string
	}{
		{"Django", map[string]string{
			"manage.py":          "import os, sys\n\ndef main():\n    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'shop.settings')\n",
			"shop/__init__.py":   "",
			"shop/settings.py":   "ALLOWED_HOSTS = []\n",
			"shop/wsgi.py":       "application = None\n",
			"shop/asgi.py":       "application = None\n",
			".venv/bin/python":   "",
			"orders/__init__.py": "",
		}, "shop.wsgi:application", "wsgi"},
		{"Flask", map[string]string{
			"app.py":              "from flask import Flask\n\napp = Flask(__name__)\n",
			"tests/test_views.py": "app = Flask('test')\n",
		}, "app:app", "wsgi"},
		{"FastAPI", map[string]string{
			"requirements.txt": "fastapi\n",
			"api/__init__.py":  "",
			"api/main.py":      "from fastapi import FastAPI\n\napi: FastAPI = FastAPI(title='x')\n",
		}, "api.main:api", "asgi"},
		{"wsgi.py alone", map[string]string{"wsgi.py": "def application(e, s): ...\n"}, "wsgi:application", "wsgi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				path := filepath.Join(dir, name)
				os.MkdirAll(filepath.Dir(path), 0o755)
				if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Detect(dir)
			if err != nil {
				t.Fatal(err)
			}
			if s.App != tc.app || s.Interface != tc.iface {
				t.Fatalf("detected %s (%s), want %s (%s)", s.App, s.Interface, tc.app, tc.iface)
			}
			var out bytes.Buffer
			if err := WriteConfig(&out, s, Options{}); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "warmpool.toml")
			os.WriteFile(path, out.Bytes(), 0o644)
			l, err := config.LoadAndValidate(config.Layers{Files: []string{path}})
			if err != nil {
				t.Fatalf("warmpool refuses the starter config: %v\n%s", err, out.String())
			}
			py := l.Config.Worker.Python
			if py.App != tc.app || py.Interface != tc.iface {
				t.Errorf("config: %+v", py)
			}
			if _, ok := tc.files[".venv/bin/python"]; ok != strings.HasSuffix(py.Executable, ".venv/bin/python") {
				t.Errorf("executable %s", py.Executable)
			}
		})
	}
	if _, err := Detect(t.TempDir()); err == nil || !strings.Contains(err.Error(), "found no app") {
		t.Errorf("an empty directory: %v", err)
	}
}
