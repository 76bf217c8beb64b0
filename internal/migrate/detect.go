package migrate

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Detect looks at an app's directory and says how warmpool would run it: a Django project
// (manage.py and its settings module's package), or a module that makes a Flask, FastAPI or
// Starlette app, or a wsgi.py/asgi.py. The settings are a starter's: 2 workers of 4 threads,
// the warm fork mode, the virtualenv in the directory if there is one.
func Detect(dir string) (*Settings, error) {
	s := &Settings{Workers: 2, Threads: 4, Interface: "wsgi", GracefulTimeout: 30 * time.Second, Listen: "127.0.0.1:8000"}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	s.Dir = dir // as given: a config committed with the app stays valid elsewhere
	for _, venv := range []string{".venv", "venv", "env"} {
		if py := filepath.Join(abs, venv, "bin", "python"); isFile(py) {
			s.Executable = filepath.Join(dir, venv, "bin", "python")
			break
		}
	}
	if manage := filepath.Join(abs, "manage.py"); isFile(manage) {
		return s, s.detectDjango(abs, manage)
	}
	if s.detectFramework(abs) {
		return s, nil
	}
	for _, f := range []struct{ file, iface string }{{"wsgi.py", "wsgi"}, {"asgi.py", "asgi"}, {"app/wsgi.py", "wsgi"}} {
		if isFile(filepath.Join(abs, f.file)) {
			s.App = strings.ReplaceAll(strings.TrimSuffix(f.file, ".py"), "/", ".") + ":application"
			s.Interface, s.Source = f.iface, f.file
			return s, nil
		}
	}
	return nil, fmt.Errorf("init: found no app in %s: no manage.py, no module making a Flask, FastAPI or Starlette app, no wsgi.py or asgi.py; write warmpool.toml yourself (see the README), or run warmpool import on a gunicorn or uWSGI config", abs)
}

var settingsModule = regexp.MustCompile(`DJANGO_SETTINGS_MODULE["']\s*,\s*["']([\w.]+)["']`)

func (s *Settings) detectDjango(dir, manage string) error {
	b, err := os.ReadFile(manage)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	m := settingsModule.FindSubmatch(b)
	if m == nil {
		return fmt.Errorf("init: %s sets no DJANGO_SETTINGS_MODULE; name the app in warmpool.toml yourself", manage)
	}
	pkg, _, _ := strings.Cut(string(m[1]), ".")
	switch {
	case isFile(filepath.Join(dir, pkg, "wsgi.py")):
		s.App = pkg + ".wsgi:application"
	case isFile(filepath.Join(dir, pkg, "asgi.py")):
		s.App, s.Interface = pkg+".asgi:application", "asgi"
	default:
		return fmt.Errorf("init: the Django project %s has neither %s/wsgi.py nor %s/asgi.py", pkg, pkg, pkg)
	}
	s.Source = "manage.py: the Django project " + pkg + " (" + string(m[1]) + ")"
	return nil
}

// frameworkApp finds "name = Flask(" and its kin at the start of a line.
var frameworkApp = regexp.MustCompile(`(?m)^(\w+)\s*(?::\s*\w+\s*)?=\s*(Flask|FastAPI|Starlette|Quart)\(`)

func (s *Settings) detectFramework(dir string) bool {
	var candidates []string
	for _, pattern := range []string{"*.py", "*/*.py"} {
		m, _ := filepath.Glob(filepath.Join(dir, pattern))
		candidates = append(candidates, m...)
	}
	sort.Strings(candidates)
	for _, path := range candidates {
		rel, _ := filepath.Rel(dir, path)
		if strings.HasPrefix(rel, ".") || strings.Contains(rel, "venv") || strings.HasPrefix(filepath.Base(rel), "test") {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		m := frameworkApp.FindSubmatch(b)
		if m == nil {
			continue
		}
		module := strings.ReplaceAll(strings.TrimSuffix(filepath.ToSlash(rel), ".py"), "/", ".")
		s.App = module + ":" + string(m[1])
		if framework := string(m[2]); framework != "Flask" {
			s.Interface = "asgi"
		}
		s.Source = fmt.Sprintf("%s: a %s app", rel, m[2])
		return true
	}
	return false
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
