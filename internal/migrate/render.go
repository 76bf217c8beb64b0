package migrate

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Options are what the operator adds to the other server's settings.
type Options struct {
	// Python is the app's interpreter, for [worker.python] executable when the config names
	// none (a virtualenv's bin/python).
	Python string
}

// WriteConfig writes s as a commented warmpool config: each value with the setting it came
// from, the fork mode for the Python app and why, the request timeout and what it means, a
// first warm-up plan with what to do to it, and every setting left out with the reason. The
// app must be known (s.App).
func WriteConfig(w io.Writer, s *Settings, o Options) error {
	if s.App == "" {
		return fmt.Errorf("import: %s names no app: give it with --app module:callable (as on the %s command line)", s.Source, s.Server)
	}
	p := &printer{w: w}
	if s.Server == "" {
		p.line("# A starter warmpool config written by `warmpool init` for %s.", s.Source)
		p.line("# Check it with `warmpool check`, then run it with `warmpool run`.")
	} else {
		p.line("# warmpool config imported from %s's %s by `warmpool import`.", s.Server, s.Source)
		p.line("# Check it with `warmpool check --config FILE`; the comments say where each value came from.")
	}
	p.line("")
	switch {
	case s.Server == "":
		p.kv("listen", quote(s.Listen), "the public address (put your proxy or load balancer in front)")
	case s.Listen != "":
		p.kv("listen", quote(s.Listen), "from "+noteFor(s, "bind", "http-socket", "http", "socket", "uwsgi-socket"))
	default:
		p.kv("listen", quote("127.0.0.1:8000"), "gunicorn's default address")
	}
	p.line("")
	p.line("[worker]")
	switch {
	case s.Dir != "" && s.Server == "":
		p.kv("dir", quote(s.Dir), "the app's directory (relative to where warmpool runs)")
	case s.Dir != "":
		p.kv("dir", quote(s.Dir), "chdir")
	}
	p.kv("count", strconv.Itoa(s.Workers), workersNote(s))
	p.kv("concurrency", strconv.Itoa(s.Threads), "threads: each forked worker serves this many requests at once (written once: the worker's server reads it from here)")
	if s.MaxRequests > 0 {
		p.kv("max_requests", strconv.Itoa(s.MaxRequests), "recycled after this many requests; its replacement is warm before it leaves")
	}
	if s.Jitter > 0 {
		p.kv("max_requests_jitter", strconv.Itoa(s.Jitter), "")
	}
	if s.MaxLifetime > 0 {
		p.kv("max_lifetime", quote(s.MaxLifetime.String()), "max-worker-lifetime")
	}
	if s.MaxRSSMiB > 0 {
		p.kv("max_rss", quote(fmt.Sprintf("%dMiB", s.MaxRSSMiB)), "reload-on-rss")
	}
	p.kv("graceful_timeout", quote(s.GracefulTimeout.String()), "a recycled or stopped worker's in-flight requests finish within it")
	if len(s.Env) > 0 {
		p.line("env = %s", inlineTable(s.Env))
	}
	p.line("")
	p.line("# The warm fork mode: warmpool imports the app once in a template process, runs the warm-up")
	p.line("# plan through it, and forks every worker from it, so no worker (first start, recycle,")
	p.line("# crash restart, reload) serves cold, and a recycle costs milliseconds, not an import.")
	switch {
	case s.Server == "":
	case s.Preload:
		p.line("# preload_app = True forked %s's workers from an arbiter that had imported the app but", s.Server)
		p.line("# never served a request: every fork was still cold on the request path. This forks warm.")
	case s.LazyApps:
		p.line("# lazy-apps = true loaded the app in each worker, usually because something opened at import")
		p.line("# (a database connection, a client with threads) did not survive a fork. warmpool closes")
		p.line("# Django's connections before each fork, refuses to fork a template that runs threads it")
		p.line("# did not start, and falls back to fresh processes, loudly; close anything else in a")
		p.line("# pre_fork hook. To keep a fresh process per worker instead, replace [worker.python] with")
		p.line("# command = [%s]", commandFor(s, o))
	default:
		p.line("# Each %s worker imported the app itself, cold; each warmpool worker is forked warm.", s.Server)
	}
	if s.Executable == "" && s.Server == "" {
		p.line("# No virtualenv found here (.venv, venv): executable is the python3 on PATH; point it at")
		p.line("# the app's environment if it has one.")
	}
	p.line("[worker.python]")
	p.kv("app", quote(s.App), noteFor(s, "wsgi_app", "module", "wsgi", "wsgi-file", "file"))
	p.kv("interface", quote(s.Interface), map[string]string{"wsgi": "served by waitress in each worker", "asgi": "served by uvicorn in each worker"}[s.Interface])
	exe, why := s.Executable, "the app's environment"
	switch {
	case exe == "" && s.Server == "":
		exe, why = "python3", "TODO: the app's interpreter, if it has a virtualenv"
	case exe == "" && s.Server == "gunicorn":
		exe, why = o.Python, "the interpreter `warmpool import` read the config with"
	case exe == "":
		exe, why = o.Python, "TODO: the app's interpreter (a virtualenv's bin/python)"
	}
	if exe != "" {
		p.kv("executable", quote(exe), why)
	}
	p.line("")
	p.line("[proxy]")
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	if s.Server != "" {
		p.line("# %s: %s killed a worker silent that long, and the client got a 502 from the proxy in", timeoutNote(s, timeout), s.Server)
		p.line("# front.")
	}
	p.line("# warmpool answers 504 at request_timeout, takes the worker out of rotation at once, starts")
	p.line("# a warm replacement, and stops the stuck one after graceful_timeout.")
	p.kv("request_timeout", quote(timeout.String()), "")
	if len(s.TrustedProxies) > 0 {
		p.kv("trusted_proxies", stringArray(s.TrustedProxies), "forwarded_allow_ips: their X-Forwarded-* reach the app")
	}
	if s.MaxHeaderBytes > 0 {
		p.kv("max_header_bytes", quote(fmt.Sprintf("%dKiB", (s.MaxHeaderBytes+1023)/1024)), "")
	}
	if s.AccessLog != "" {
		p.line("")
		p.line("[telemetry]")
		p.kv("access_log", quote(s.AccessLog), "accesslog")
		p.kv("access_log_format", quote("combined"), "a text line as gunicorn and nginx write it; \"json\" for a log pipeline")
	}
	p.line("")
	p.line("# TODO: a first warm-up plan. Point it at a real route that runs your slow code (views,")
	p.line("# templates, the database), with the Host your production clients send (one in Django's")
	p.line("# ALLOWED_HOSTS): headers = { Host = \"www.example.com\" }. Until it has a Host, warmpool check")
	p.line("# warns, and a warm-up the app rejects (400 DisallowedHost) stops every worker's admission.")
	p.line("[[warmup.request]]")
	p.line(`path = "/"`)
	p.line("expect = [200]")
	p.line("repeat = %d", max(2, s.Threads))
	if len(s.Unmapped) > 0 {
		p.line("")
		p.line("# Not imported, and why:")
		for _, n := range s.Unmapped {
			p.line("#   %s = %s: %s", n.Key, n.Value, n.Why)
		}
	}
	return p.err
}

// timeoutNote is the setting the request timeout came from, as the file wrote it.
func timeoutNote(s *Settings, d time.Duration) string {
	key := strings.Fields(s.TimeoutKey + " timeout")[0]
	for _, n := range s.Mapped {
		if n.Key == key {
			return n.Key + " = " + n.Value
		}
	}
	return fmt.Sprintf("%s's default timeout of %s", s.Server, d)
}

// commandFor is the fresh-process command for the same app and threads.
func commandFor(s *Settings, o Options) string {
	py := s.Executable
	if py == "" {
		py = o.Python
	}
	if py == "" {
		py = "python3"
	}
	args := []string{py, "-m", "waitress", "--unix-socket={socket}", "--threads=" + strconv.Itoa(s.Threads), s.App}
	if s.Interface == "asgi" {
		args = []string{py, "-m", "uvicorn", "--uds", "{socket}", s.App}
	}
	return strings.Join(quoteAll(args), ", ")
}

// noteFor names the first of keys that the settings mapped, as "key = value".
func noteFor(s *Settings, keys ...string) string {
	for _, k := range keys {
		for _, n := range s.Mapped {
			if n.Key == k {
				return n.Key + " = " + n.Value
			}
		}
	}
	return "the command line"
}

type printer struct {
	w   io.Writer
	err error
}

func (p *printer) line(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format+"\n", args...)
	}
}

// kv writes key = value, with comment after it when there is one.
func (p *printer) kv(key, value, comment string) {
	if comment == "" {
		p.line("%s = %s", key, value)
		return
	}
	p.line("%-24s # %s", key+" = "+value, comment)
}

func quote(s string) string { return strconv.Quote(s) }

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = quote(s)
	}
	return out
}

func stringArray(ss []string) string { return "[" + strings.Join(quoteAll(ss), ", ") + "]" }

func inlineTable(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = quote(k) + " = " + quote(m[k])
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

func workersNote(s *Settings) string {
	if s.Server == "" {
		return "the worker processes"
	}
	return s.Server + "'s worker processes"
}

// Summary is the short account of an import for stderr.
func Summary(s *Settings) string {
	return fmt.Sprintf("warmpool import: %s %s: %d settings imported, %d not (listed at the end, with the reason); app %s in the warm fork mode; next: set the warm-up's Host, then warmpool check",
		s.Server, s.Source, len(s.Mapped), len(s.Unmapped), s.App)
}
