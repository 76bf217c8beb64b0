package migrate

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ReadUWSGI reads the [uwsgi] section of a uWSGI .ini file. Options given twice (env) keep
// every value; "%(...)" and "%k" placeholders, which uWSGI computes, are reported unmapped.
func ReadUWSGI(path string) (*Settings, error) {
	opts, err := readUWSGIFile(path)
	if err != nil {
		return nil, err
	}
	return mapUWSGI(path, opts), nil
}

// option is one uWSGI option as given (a key may come more than once).
type option struct{ key, value string }

// readUWSGIFile reads the [uwsgi] section of an .ini file.
func readUWSGIFile(path string) ([]option, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	var opts []option
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		if section != "uwsgi" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			opts = append(opts, option{strings.TrimSpace(k), "true"}) // a bare flag
			continue
		}
		v = strings.TrimSpace(v)
		if i := strings.Index(v, " #"); i >= 0 { // a trailing comment, as people write them
			v = strings.TrimSpace(v[:i])
		}
		opts = append(opts, option{strings.ReplaceAll(strings.TrimSpace(k), "_", "-"), v})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if len(opts) == 0 {
		return nil, fmt.Errorf("import: %s has no [uwsgi] section", path)
	}
	return opts, nil
}

// mapUWSGI turns uWSGI's options into Settings.
func mapUWSGI(source string, opts []option) *Settings {
	s := &Settings{Server: "uWSGI", Source: source, Interface: "wsgi", Workers: 1, Threads: 1, GracefulTimeout: 30 * time.Second}
	var module, callable, wsgiFile string
	for _, o := range opts {
		k, v := o.key, o.value
		if strings.Contains(v, "%(") || strings.Contains(v, "%k") || strings.Contains(v, "$(") {
			s.unmapped(k, v, "uWSGI computes this value; write the number warmpool should use")
			continue
		}
		switch k {
		case "module", "wsgi":
			module = v
			s.mapped(k, v, "[worker.python] app")
		case "callable":
			callable = v
			s.mapped(k, v, "[worker.python] app")
		case "wsgi-file", "file":
			wsgiFile = v
			s.mapped(k, v, "[worker.python] app")
		case "lazy-apps", "lazy":
			s.LazyApps = truthy(v)
			s.mapped(k, v, "the warm fork mode ([worker.python]; see there)")
		case "http-socket", "http":
			addr, ok := listenAddr(v)
			if !ok {
				s.unmapped(k, v, "warmpool listens on TCP (listen)")
				continue
			}
			s.Listen = addr
			why := "listen"
			if k == "http" {
				why = "listen (warmpool is the HTTP front uWSGI's http router was)"
			}
			s.mapped(k, v, why)
		case "socket", "uwsgi-socket":
			addr, ok := listenAddr(v)
			if !ok {
				s.unmapped(k, v, "a uwsgi-protocol unix socket: warmpool speaks HTTP on TCP (listen); in nginx, replace uwsgi_pass with proxy_pass to it")
				continue
			}
			if s.Listen == "" {
				s.Listen = addr
			}
			s.mapped(k, v, "listen: warmpool speaks HTTP, not the uwsgi protocol; in nginx, replace uwsgi_pass with proxy_pass http://"+addr)
		case "home", "virtualenv", "venv", "pyhome":
			s.Executable = filepath.Join(v, "bin", "python")
			s.mapped(k, v, "[worker.python] executable")
		case "env":
			if s.Env == nil {
				s.Env = map[string]string{}
			}
			for kk, vv := range envOf([]string{v}) {
				s.Env[kk] = vv
			}
			s.mapped(k, v, "worker.env")
		case "reload-on-rss":
			s.MaxRSSMiB = intOf(v, 0)
			s.mapped(k, v, "worker.max_rss")
		case "max-worker-lifetime":
			s.MaxLifetime = seconds(v)
			s.mapped(k, v, "worker.max_lifetime")
		case "buffer-size":
			s.MaxHeaderBytes = max(intOf(v, 0), 8<<10)
			s.mapped(k, v, "proxy.max_header_bytes")
		case "master":
			s.mapped(k, v, "warmpool is the master: it starts, warms, recycles and stops the workers")
		case "enable-threads":
			s.mapped(k, v, "Python threads are always on in warmpool's workers")
		default:
			c, isCommon := uwsgiCommon[k]
			why, known := uwsgiUnmapped[k]
			switch {
			case isCommon:
				s.applyCommon(c, k, v)
			case known:
				s.unmapped(k, v, why)
			default:
				s.unmapped(k, v, "no counterpart in warmpool")
			}
		}
	}
	switch {
	case module != "":
		app := module
		if callable != "" && !strings.Contains(app, ":") {
			app += ":" + callable
		}
		s.App = normalizeApp(app)
	case wsgiFile != "":
		mod := strings.TrimSuffix(filepath.ToSlash(filepath.Clean(wsgiFile)), ".py")
		mod = strings.ReplaceAll(strings.TrimPrefix(mod, "./"), "/", ".")
		if callable == "" {
			callable = "application"
		}
		s.App = mod + ":" + callable
	}
	s.sortNotes()
	return s
}

// uwsgiCommon are uWSGI's names for the settings gunicorn has too.
var uwsgiCommon = map[string]common{"processes": commonWorkers, "workers": commonWorkers, "p": commonWorkers,
	"threads": commonThreads, "max-requests": commonMaxRequests, "max-requests-delta": commonJitter,
	"harakiri": commonTimeout, "worker-reload-mercy": commonGraceful, "reload-mercy": commonGraceful, "chdir": commonDir}

// uwsgiUnmapped are uWSGI options warmpool has no counterpart for, with the reason.
var uwsgiUnmapped = map[string]string{
	"vacuum":             "warmpool removes its workers' sockets itself",
	"die-on-term":        "warmpool drains and exits on SIGTERM",
	"uid":                "set the user in the systemd unit (User=) or the container (USER)",
	"gid":                "set the group in the systemd unit (Group=) or the container (USER)",
	"chmod-socket":       "warmpool's worker sockets are private to it",
	"chown-socket":       "warmpool's worker sockets are private to it",
	"pidfile":            "systemd and containers track warmpool's pid themselves",
	"safe-pidfile":       "systemd and containers track warmpool's pid themselves",
	"daemonize":          "run warmpool under systemd or a container runtime instead",
	"daemonize2":         "run warmpool under systemd or a container runtime instead",
	"logto":              "warmpool logs to stderr, workers' output included",
	"logto2":             "warmpool logs to stderr, workers' output included",
	"logger":             "warmpool logs to stderr, workers' output included",
	"disable-logging":    "the access log is telemetry.access_log (off by default)",
	"post-buffering":     "warmpool reads every request body whole before a worker sees it",
	"limit-post":         "set proxy.max_body_size",
	"static-map":         "serve static files with WhiteNoise in the app, or from the proxy in front",
	"static-cache-paths": "serve static files with WhiteNoise in the app, or from the proxy in front",
	"stats":              "warmpool's /status and /metrics on admin_listen",
	"memory-report":      "warmpool recycles a worker past worker.max_rss; kubectl top or ps show the rest",
	"need-app":           "warmpool admits no worker that failed its warm-up",
	"strict":             "warmpool refuses unknown settings always",
	"single-interpreter": "each forked worker runs one interpreter",
	"thunder-lock":       "warmpool balances requests itself (least outstanding)",
	"procname-prefix":    "warmpool names its processes itself",
	"procname":           "warmpool names its processes itself",
	"procname-master":    "warmpool names its processes itself",
	"auto-procname":      "warmpool names its processes itself",
	"harakiri-verbose":   "warmpool logs every request past the timeout, with the worker",
	"no-orphans":         "warmpool's workers die with it (a keeper reaps them)",
	"hook-master-start":  "warmpool drains on SIGTERM without a hook",
	"add-header":         "add response headers in the app",
	"http-timeout":       "proxy.client_body_timeout and proxy.send_timeout bound clients",
	"touch-reload":       "reload with SIGHUP (systemctl reload warmpool)",
	"offload-threads":    "warmpool relays response bodies itself",
	"cheaper":            "warmpool runs worker.count workers; scale with SIGTTIN/SIGTTOU or more pods",
	"listen":             "warmpool's listen backlog is the kernel's (net.core.somaxconn)",
	"plugins":            "warmpool runs Python apps with waitress or uvicorn in forked workers",
	"plugin":             "warmpool runs Python apps with waitress or uvicorn in forked workers",
	"exit-on-reload":     "warmpool reloads on SIGHUP, warm-first",
	"max-fd":             "set LimitNOFILE in the systemd unit",
	"limit-as":           "set worker.max_rss to recycle a worker past a resident size",
}
