package migrate

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
)

// ReadCommand reads a server's settings from its command line, as given to `gunicorn` or
// `uwsgi` (a config file it names, -c or --ini, first; the options over it, as the server
// itself layers them).
func ReadCommand(ctx context.Context, python string, argv []string) (*Settings, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("import: an empty command line")
	}
	switch filepath.Base(argv[0]) {
	case "gunicorn":
		return readGunicornCommand(ctx, python, argv[1:])
	case "uwsgi":
		return readUWSGICommand(argv[1:])
	}
	return nil, fmt.Errorf("import: %q is neither gunicorn nor uwsgi", argv[0])
}

// gunicornFlags are gunicorn's command-line options and the settings they set ("" for a flag
// that takes no value: it sets the setting to true).
var gunicornFlags = map[string]struct {
	setting string
	value   bool
}{
	"-b": {"bind", true}, "--bind": {"bind", true}, "-w": {"workers", true}, "--workers": {"workers", true},
	"--threads": {"threads", true}, "-k": {"worker_class", true}, "--worker-class": {"worker_class", true},
	"--max-requests": {"max_requests", true}, "--max-requests-jitter": {"max_requests_jitter", true},
	"-t": {"timeout", true}, "--timeout": {"timeout", true}, "--graceful-timeout": {"graceful_timeout", true},
	"--preload": {"preload_app", false}, "--access-logfile": {"accesslog", true}, "--error-logfile": {"errorlog", true},
	"--log-file": {"errorlog", true}, "--log-level": {"loglevel", true}, "--chdir": {"chdir", true},
	"-e": {"raw_env", true}, "--env": {"raw_env", true}, "--forwarded-allow-ips": {"forwarded_allow_ips", true},
	"--keep-alive": {"keepalive", true}, "-u": {"user", true}, "--user": {"user", true}, "-g": {"group", true},
	"--group": {"group", true}, "-D": {"daemon", false}, "--daemon": {"daemon", false}, "-p": {"pidfile", true},
	"--pid": {"pidfile", true}, "--reload": {"reload", false}, "--limit-request-line": {"limit_request_line", true},
	"--certfile": {"certfile", true}, "--keyfile": {"keyfile", true}, "--worker-connections": {"worker_connections", true},
	"--statsd-host": {"statsd_host", true}, "--pythonpath": {"pythonpath", true},
}

func readGunicornCommand(ctx context.Context, python string, args []string) (*Settings, error) {
	cli := map[string]any{}
	var file, app string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := strings.Cut(a, "=")
		if name == "-c" || name == "--config" {
			if !hasValue {
				if i+1 >= len(args) {
					return nil, fmt.Errorf("import: %s takes a file", name)
				}
				i++
				value = args[i]
			}
			file = value
			continue
		}
		f, ok := gunicornFlags[name]
		switch {
		case !strings.HasPrefix(a, "-"):
			app = a
			continue
		case !ok:
			cli[strings.TrimLeft(name, "-")] = value // reported unmapped (or ignored) as a setting
			continue
		case !f.value:
			cli[f.setting] = true
			continue
		case !hasValue:
			if i+1 >= len(args) {
				return nil, fmt.Errorf("import: %s takes a value", name)
			}
			i++
			value = args[i]
		}
		switch f.setting {
		case "bind", "raw_env": // repeatable
			prev, _ := cli[f.setting].([]any)
			cli[f.setting] = append(prev, value)
		default:
			cli[f.setting] = number(value)
		}
	}
	cfg, hooks := map[string]any{}, []string(nil)
	if file != "" {
		var err error
		if cfg, hooks, err = readGunicornFile(ctx, python, file); err != nil {
			return nil, err
		}
	}
	for k, v := range cli {
		cfg[k] = v
	}
	source := "command line"
	if file != "" {
		source = "command line with " + file
	}
	return mapGunicorn(source, cfg, hooks, app), nil
}

// number reads a command-line value as the config file would have written it.
func number(v string) any {
	var f float64
	if _, err := fmt.Sscan(v, &f); err == nil && fmt.Sprint(f) == v {
		return f
	}
	return v
}

func readUWSGICommand(args []string) (*Settings, error) {
	var opts []option
	source := "command line"
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return nil, fmt.Errorf("import: unexpected %q on the uwsgi command line", a)
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !hasValue {
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				value = args[i]
			} else {
				value = "true"
			}
		}
		name = strings.ReplaceAll(name, "_", "-")
		if name == "ini" {
			fileOpts, err := readUWSGIFile(value)
			if err != nil {
				return nil, err
			}
			opts = append(fileOpts, opts...) // the file first: options given after it win
			source = "command line with " + value
			continue
		}
		opts = append(opts, option{name, value})
	}
	return mapUWSGI(source, opts), nil
}
