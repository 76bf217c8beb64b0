package migrate

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

//go:embed gunicorn_conf.py
var gunicornReader []byte

// ReadGunicorn reads a gunicorn config file (gunicorn.conf.py) the way gunicorn does: by
// running it, with python (the app's interpreter, whose imports the file may need), in the
// file's directory. app is the WSGI app named on gunicorn's command line ("" if none: the
// file's wsgi_app is used).
func ReadGunicorn(ctx context.Context, python, path, app string) (*Settings, error) {
	cfg, hooks, err := readGunicornFile(ctx, python, path)
	if err != nil {
		return nil, err
	}
	return mapGunicorn(path, cfg, hooks, app), nil
}

// readGunicornFile runs a gunicorn config file and returns its module-level settings and the
// names of its functions.
func readGunicornFile(ctx context.Context, python, path string) (map[string]any, []string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, fmt.Errorf("import: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", string(gunicornReader), abs)
	cmd.Dir = filepath.Dir(abs)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, nil, fmt.Errorf("import: %s could not run %s: %s", python, path, lastLines(stderr.String(), 6))
		}
		return nil, nil, fmt.Errorf("import: run %s (set --python to the app's interpreter): %w", python, err)
	}
	var out struct {
		Settings map[string]any `json:"settings"`
		Hooks    []string       `json:"hooks"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, nil, fmt.Errorf("import: reading %s's settings: %w", path, err)
	}
	return out.Settings, out.Hooks, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// gunicornUnmapped are gunicorn settings warmpool has no counterpart for, with the reason.
var gunicornUnmapped = map[string]string{
	"keepalive":                         "warmpool keeps client connections open up to its own idle timeout (120 s) and pools its connections to workers",
	"worker_connections":                "for async workers (gevent, eventlet); a forked worker serves worker.concurrency threads",
	"daemon":                            "run warmpool under systemd or a container runtime instead",
	"pidfile":                           "systemd and containers track warmpool's pid themselves",
	"user":                              "set the user in the systemd unit (User=) or the container (USER)",
	"group":                             "set the group in the systemd unit (Group=) or the container (USER)",
	"umask":                             "set UMask= in the systemd unit",
	"initgroups":                        "set the user in the systemd unit or the container",
	"reload":                            "warmpool reloads on SIGHUP (systemctl reload), warm-first",
	"reload_engine":                     "warmpool reloads on SIGHUP",
	"reload_extra_files":                "warmpool reloads on SIGHUP",
	"errorlog":                          "warmpool logs to stderr, workers' output included (log_format for JSON)",
	"capture_output":                    "workers' stdout and stderr reach warmpool's log (worker.log_output)",
	"access_log_format":                 "the access log's format is warmpool's (telemetry.access_log_format: json or combined)",
	"proc_name":                         "warmpool names its processes itself",
	"default_proc_name":                 "warmpool names its processes itself",
	"worker_tmp_dir":                    "warmpool watches its workers through their sockets, not heartbeat files",
	"tmp_upload_dir":                    "request bodies wait in warmpool's own temporary files (TMPDIR)",
	"statsd_host":                       "warmpool exports Prometheus metrics on the admin listener (/metrics) and OpenTelemetry traces",
	"statsd_prefix":                     "see statsd_host",
	"dogstatsd_tags":                    "see statsd_host",
	"secure_scheme_headers":             "warmpool sets X-Forwarded-Proto itself when it ends TLS, and passes a trusted proxy's; keep your framework's setting (Django's SECURE_PROXY_SSL_HEADER)",
	"certfile":                          "set tls_cert (and tls_key) to serve HTTPS and HTTP/2",
	"keyfile":                           "set tls_key (and tls_cert) to serve HTTPS and HTTP/2",
	"ssl_version":                       "warmpool serves TLS 1.2 and 1.3",
	"ciphers":                           "warmpool uses Go's TLS defaults",
	"backlog":                           "warmpool's listen backlog is the kernel's (net.core.somaxconn)",
	"sendfile":                          "warmpool relays response bodies itself",
	"reuse_port":                        "one warmpool per address",
	"logconfig":                         "warmpool's log settings: log_level, log_format",
	"logconfig_dict":                    "warmpool's log settings: log_level, log_format",
	"syslog":                            "warmpool logs to stderr; journald or the container runtime collects it",
	"proxy_protocol":                    "not supported: put warmpool behind a proxy that sends X-Forwarded-For",
	"proxy_allow_ips":                   "not supported (PROXY protocol)",
	"limit_request_fields":              "warmpool bounds the whole head (proxy.max_header_bytes)",
	"limit_request_field_size":          "warmpool bounds the whole head (proxy.max_header_bytes)",
	"pythonpath":                        "add it to worker.env as PYTHONPATH",
	"paste":                             "name the WSGI app as module:callable in [worker.python] app",
	"spew":                              "a debugging aid of gunicorn's",
	"check_config":                      "use warmpool check",
	"print_config":                      "use warmpool check",
	"enable_stdio_inheritance":          "workers' output always reaches warmpool's log",
	"strip_header_spaces":               "warmpool refuses malformed field names",
	"forwarder_headers":                 "warmpool passes forwarding headers from proxy.trusted_proxies only",
	"header_map":                        "warmpool drops fields with '_' in the name by default (proxy.underscore_headers)",
	"permit_unconventional_http_method": "warmpool passes any token method; net/http judges the rest",
	"casefold_http_method":              "methods pass as sent",
	"permit_obsolete_folding":           "warmpool refuses obsolete line folding",
	"tolerate_dangerous_framing":        "warmpool always refuses ambiguous framing (Content-Length with Transfer-Encoding)",
	"raw_paste_global_conf":             "name the WSGI app as module:callable in [worker.python] app",
	"cert_reqs":                         "warmpool does not ask clients for certificates",
	"ca_certs":                          "warmpool does not ask clients for certificates",
	"suppress_ragged_eofs":              "Go's TLS handles a client's ragged end",
	"do_handshake_on_connect":           "warmpool completes the TLS handshake before reading a request",
	"syslog_addr":                       "warmpool logs to stderr; journald or the container runtime collects it",
	"syslog_prefix":                     "warmpool logs to stderr",
	"syslog_facility":                   "warmpool logs to stderr",
	"disable_redirect_access_to_syslog": "warmpool logs to stderr",
}

// gunicornCommon are gunicorn's names for the settings uWSGI has too.
var gunicornCommon = map[string]common{"workers": commonWorkers, "threads": commonThreads, "max_requests": commonMaxRequests,
	"max_requests_jitter": commonJitter, "timeout": commonTimeout, "graceful_timeout": commonGraceful, "chdir": commonDir}

// gunicornHooks are gunicorn's server hooks: functions in the config file.
var gunicornHooks = map[string]bool{"on_starting": true, "on_reload": true, "when_ready": true, "pre_fork": true,
	"post_fork": true, "post_worker_init": true, "worker_int": true, "worker_abort": true, "pre_exec": true,
	"pre_request": true, "post_request": true, "child_exit": true, "worker_exit": true, "nworkers_changed": true,
	"on_exit": true, "ssl_context": true}

// mapGunicorn turns gunicorn's settings into Settings.
func mapGunicorn(path string, cfg map[string]any, hooks []string, app string) *Settings {
	s := &Settings{Server: "gunicorn", Source: path, Interface: "wsgi", Workers: 1, Threads: 1,
		GracefulTimeout: 30 * time.Second, Timeout: 30 * time.Second, TimeoutKey: "timeout (default)"}
	for _, k := range slices.Sorted(maps.Keys(cfg)) {
		v := cfg[k]
		switch k {
		case "bind":
			binds := stringsOf(v)
			if len(binds) == 0 {
				continue
			}
			addr, ok := listenAddr(binds[0])
			if !ok {
				s.unmapped(k, v, "warmpool listens on TCP (listen); point the proxy in front at it instead of a unix socket")
				continue
			}
			s.Listen = addr
			s.mapped(k, v, "listen")
			if len(binds) > 1 {
				s.unmapped(k+"[1:]", binds[1:], "warmpool listens on one address")
			}
		case "worker_class":
			switch wc := fmt.Sprint(v); {
			case strings.Contains(wc, "uvicorn"):
				s.Interface = "asgi"
				s.mapped(k, v, `[worker.python] interface = "asgi": each worker serves the ASGI app with uvicorn`)
			case wc == "sync" || wc == "gthread":
				s.mapped(k, v, "threads in each forked worker (waitress)")
			default:
				s.unmapped(k, v, "warmpool's Python workers serve with threads (waitress) or uvicorn (ASGI); gevent and eventlet monkey-patching is not run")
			}
		case "preload_app":
			s.Preload = truthy(v)
			s.mapped(k, v, "the warm fork mode ([worker.python])")
		case "accesslog":
			s.AccessLog = logTarget(fmt.Sprint(v))
			s.mapped(k, v, "telemetry.access_log")
		case "loglevel":
			s.mapped(k, v, "log_level")
		case "raw_env":
			s.Env = envOf(stringsOf(v))
			s.mapped(k, v, "worker.env")
		case "wsgi_app":
			if app == "" {
				app = fmt.Sprint(v)
			}
			s.mapped(k, v, "[worker.python] app")
		case "forwarded_allow_ips":
			for _, ip := range strings.Split(strings.Join(stringsOf(v), ","), ",") {
				if ip = strings.TrimSpace(ip); ip != "" && ip != "*" {
					s.TrustedProxies = append(s.TrustedProxies, ip)
				} else if ip == "*" {
					s.unmapped(k, v, "warmpool trusts forwarding headers from listed proxies only (proxy.trusted_proxies); list your load balancer's addresses")
				}
			}
			if len(s.TrustedProxies) > 0 {
				s.mapped(k, v, "proxy.trusted_proxies")
			}
		case "limit_request_line":
			if n := intOf(v, 0); n > 0 {
				s.MaxHeaderBytes = max(n+16<<10, 32<<10)
				s.mapped(k, v, "proxy.max_header_bytes (the whole head, line included)")
			}
		default:
			if c, ok := gunicornCommon[k]; ok {
				s.applyCommon(c, k, v)
				continue
			}
			if gunicornHooks[k] {
				continue // reported with the hooks
			}
			if why, ok := gunicornUnmapped[k]; ok {
				s.unmapped(k, v, why)
			}
			// Any other name is not a gunicorn setting: gunicorn ignores it too.
		}
	}
	for _, h := range hooks {
		if gunicornHooks[h] {
			why := "a server hook in this file; warmpool has none of gunicorn's hooks"
			if h == "post_fork" || h == "post_worker_init" {
				why = "move it to your app as module:callable and name it in [worker.python] post_fork (called in each worker, with no arguments)"
			}
			s.unmapped(h, "function", why)
		}
	}
	s.App = normalizeApp(app)
	s.sortNotes()
	return s
}

// normalizeApp turns gunicorn's and uWSGI's app notations into "module:callable".
func normalizeApp(app string) string {
	app = strings.TrimSpace(app)
	if app == "" {
		return ""
	}
	if !strings.Contains(app, ":") {
		app += ":application"
	}
	return app
}

func stringsOf(v any) []string {
	switch v := v.(type) {
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			out = append(out, fmt.Sprint(e))
		}
		return out
	case string:
		return []string{v}
	case nil:
		return nil
	}
	return []string{fmt.Sprint(v)}
}

func intOf(v any, def int) int {
	switch v := v.(type) {
	case float64:
		return int(v)
	case string:
		var n int
		if _, err := fmt.Sscan(v, &n); err == nil {
			return n
		}
	case bool:
		if v {
			return 1
		}
		return 0
	}
	return def
}

func seconds(v any) time.Duration {
	switch v := v.(type) {
	case float64:
		return time.Duration(math.Round(v * float64(time.Second)))
	case string:
		var f float64
		if _, err := fmt.Sscan(v, &f); err == nil {
			return time.Duration(math.Round(f * float64(time.Second)))
		}
	}
	return 0
}

func truthy(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case float64:
		return v != 0
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "1", "true", "yes", "on", "y", "t":
			return true
		}
	}
	return false
}

func logTarget(v string) string {
	switch v {
	case "-", "/dev/stdout":
		return "stdout"
	case "", "None":
		return ""
	}
	return v
}

func envOf(kvs []string) map[string]string {
	env := map[string]string{}
	for _, kv := range kvs {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return env
}
