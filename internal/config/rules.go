package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/net/http/httpguts"
)

// MaxWorkers bounds worker.count: each worker is a process, sockets and goroutines; more is
// a typo (an extra digit), not a pool.
const MaxWorkers = 4096

// minRestartBackoff is the shortest restart_backoff.
const minRestartBackoff = 10 * time.Millisecond

// Placeholders in worker.command.
const (
	SocketPlaceholder = "{socket}"
	PortPlaceholder   = "{port}"
)

// rule is one check across settings. Every rule warmpool enforces is in rules, below; docs/configuration.md's
// config section lists them by name.
type rule struct {
	name  string
	check func(l *Loaded, r *report)
}

var rules = []rule{
	{"listeners differ", checkListeners},
	{"one placeholder in worker.command", checkCommand},
	{"worker.python well-formed", checkPython},
	{"tls_cert and tls_key together", checkTLS},
	{"counts in range", checkCounts},
	{"jitter below its base", checkJitter},
	{"max_rss and its interval", checkRSS},
	{"surge between 1 and count", checkSurge},
	{"an enabled warm-up has a plan", checkPlanExists},
	{"no warm-up settings while warm-up is disabled", checkDisabledWarmup},
	{"warm-up concurrency within worker concurrency", checkWarmupConcurrency},
	{"warm-up timeout within max_lifetime", checkWarmupTimeout},
	{"warm-up Host allowed by proxy.allowed_hosts", checkWarmupHost},
	{"warm-up requests well-formed", checkRequests},
	{"timeouts positive", checkTimeouts},
	{"harakiri above request_timeout", checkHarakiri},
	{"request size limits in range", checkLimits},
	{"an admin listener off loopback has a token", checkAdmin},
	{"log settings known", checkLog},
	{"socket_dir only with {socket}", checkSocketDir},
	{"telemetry settings in range", checkTelemetry},
	{"forwarding settings well-formed", checkForwarding},
}

// advice are checks of settings that work but are probably not what the operator wants: check
// prints them and run logs them at WARN; they refuse nothing.
var advice = []rule{
	{"admin_listen on loopback", adviseAdminListen},
	{"warm-up requests name their Host", adviseWarmupHost},
	{"warm-up requests expect success", adviseWarmupExpect},
	{"the worker command is found here", adviseCommandFound},
	{"the worker command's threads agree with concurrency", adviseThreads},
}

// adviseThreads: a worker command that sets its server's threads (gunicorn's and uWSGI's
// --threads, waitress's --threads) says how many requests it serves at once, which is what
// worker.concurrency tells warmpool to send it; when they differ, requests queue inside the
// worker or threads sit idle.
func adviseThreads(l *Loaded, r *report) {
	w := &l.Config.Worker
	for i, a := range w.Command {
		var v string
		switch {
		case a == "--threads" && i+1 < len(w.Command):
			v = w.Command[i+1]
		case strings.HasPrefix(a, "--threads="):
			v = strings.TrimPrefix(a, "--threads=")
		default:
			continue
		}
		if n, err := strconv.Atoi(v); err == nil && n != w.Concurrency {
			r.add("%s runs %d threads per worker but %s: warmpool sends each worker that many requests at once; make them agree",
				l.kv("worker.command"), n, l.kv("worker.concurrency"))
		}
	}
}

// adviseCommandFound: a command (or a Python app's interpreter) or worker.dir missing on this
// machine fails every spawn; it is a warning, not an error, since check may run elsewhere than
// the deploy.
func adviseCommandFound(l *Loaded, r *report) {
	w := &l.Config.Worker
	if w.Dir != "" {
		if fi, err := os.Stat(w.Dir); err != nil || !fi.IsDir() {
			r.add("%s is not a directory on this machine: every worker would fail to start", l.kv("worker.dir"))
			return
		}
	}
	key, exe := "worker.command", ""
	switch {
	case w.IsPython():
		key, exe = "worker.python.executable", w.Python.Executable
	case len(w.Command) > 0 && !strings.Contains(w.Command[0], "{"):
		exe = w.Command[0]
	}
	if exe == "" {
		return
	}
	if strings.Contains(exe, "/") {
		path := exe
		if !filepath.IsAbs(path) && w.Dir != "" {
			path = filepath.Join(w.Dir, path)
		}
		if _, err := os.Stat(path); err != nil {
			r.add("%s: %q is not found on this machine: every worker would fail to start", l.kv(key), exe)
		}
		return
	}
	if _, err := exec.LookPath(exe); err != nil {
		r.add("%s: %q is not on this machine's PATH: every worker would fail to start (a virtualenv's bin/ not on PATH?)", l.kv(key), exe)
	}
}

// adviseWarmupHost: a warm-up request without Host goes out as "localhost", which an app's
// host allow-list (Django's ALLOWED_HOSTS) refuses before any of its code runs: the
// post-mortem's silent failure. (With proxy.allowed_hosts set, checkWarmupHost refuses it.)
func adviseWarmupHost(l *Loaded, r *report) {
	c := &l.Config
	if !c.Warmup.Enabled || len(c.Proxy.AllowedHosts) > 0 {
		return
	}
	for i, req := range c.Warmup.Requests {
		if _, ok := headerValue(req.Headers, "Host"); !ok {
			r.add("warm-up request %s %s (%s) sends no Host header, so it goes out as Host: localhost; an app with a host allow-list (Django's ALLOWED_HOSTS) refuses it before reaching any slow code, as in the post-mortem; set headers = { Host = \"your.real.host\" }",
				req.Method, req.Path, l.Source(fmt.Sprintf("warmup.request[%d]", i)))
		}
	}
}

// adviseWarmupExpect: an expect that accepts a 4xx or 5xx admits workers whose warm-up was
// refused or failed, so they meet clients cold.
func adviseWarmupExpect(l *Loaded, r *report) {
	for i, req := range l.Config.Warmup.Requests {
		for _, st := range req.Expect {
			if st >= 400 {
				r.add("warm-up request %s %s accepts status %d (warmup.request[%d].expect, %s): a 4xx or 5xx usually means the request was refused or failed before reaching the slow code, and the worker would be admitted cold; expect only the statuses the route gives when it works",
					req.Method, req.Path, st, i, l.Source(fmt.Sprintf("warmup.request[%d].expect", i)))
				break
			}
		}
	}
}

// headerValue finds a header by name in any case.
func headerValue(headers map[string]string, name string) (string, bool) {
	for k, v := range headers {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// Warnings returns what advice finds, each naming the setting and its source.
func (l *Loaded) Warnings() []string {
	r := &report{l: l}
	for _, rl := range advice {
		rl.check(l, r)
	}
	out := make([]string, len(r.errs))
	for i, err := range r.errs {
		out[i] = err.Error()
	}
	return out
}

func adviseAdminListen(l *Loaded, r *report) {
	if !adminOffLoopback(l.Config.AdminListen) || !l.Config.AdminInsecure {
		return
	}
	if _, err := l.AdminToken(); err == nil && !l.hasAdminToken() {
		r.add("%s is not on loopback and has no token (%s): /status, /metrics and /debug/pprof/ (if on) answer anyone who can reach it",
			l.kv("admin_listen"), l.kv("admin_insecure"))
	}
}

// adminOffLoopback reports an admin address that other machines may reach.
func adminOffLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

func (l *Loaded) hasAdminToken() bool {
	t, err := l.AdminToken()
	return err == nil && t != ""
}

// AdminToken is the admin listener's token: WARMPOOL_ADMIN_TOKEN, else the content of
// admin_token_file; "" for none.
func (l *Loaded) AdminToken() (string, error) {
	if l.envToken != "" {
		return l.envToken, nil
	}
	if l.Config.AdminTokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(l.Config.AdminTokenFile)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func checkAdmin(l *Loaded, r *report) {
	token, err := l.AdminToken()
	switch {
	case err != nil:
		r.add("%s cannot be read: %v", l.kv("admin_token_file"), err)
		return
	case l.Config.AdminTokenFile != "" && token == "" && l.envToken == "":
		r.add("%s is empty: put the token in it", l.kv("admin_token_file"))
		return
	}
	if token == "" && adminOffLoopback(l.Config.AdminListen) && !l.Config.AdminInsecure {
		r.add("%s is not on loopback and has no token: /status and /metrics would answer anyone who can reach it; set admin_token_file (or WARMPOOL_ADMIN_TOKEN), bind it to 127.0.0.1, or set admin_insecure = true to accept it",
			l.kv("admin_listen"))
	}
}

// RuleNames lists the rules in the order they are checked.
func RuleNames() []string {
	names := make([]string, len(rules))
	for i, r := range rules {
		names[i] = r.name
	}
	return names
}

// Validate checks a programmatic config (every value counts as a default).
func (c *Config) Validate() error { return c.Loaded().Validate() }

// Validate applies every rule and returns all problems, each naming the settings involved
// with their values and sources, and what to change.
func (l *Loaded) Validate() error {
	r := &report{l: l}
	for _, rl := range rules {
		rl.check(l, r)
	}
	return errors.Join(r.errs...)
}

type report struct {
	l    *Loaded
	errs []error
}

func (r *report) add(format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf(format, args...))
}

// kv renders "key = value (source)" for a leaf key.
func (l *Loaded) kv(key string) string {
	return fmt.Sprintf("%s = %s (%s)", key, l.value(key), l.Source(key))
}

// value renders the effective value of a leaf key in TOML syntax.
func (l *Loaded) value(key string) string {
	fd, ok := lookup(key)
	if !ok {
		return "?"
	}
	return render(reflect.ValueOf(&l.Config).Elem().FieldByIndex(fd.index), fd.kind)
}

func checkListeners(l *Loaded, r *report) {
	c := &l.Config
	for _, key := range []string{"listen", "admin_listen"} {
		addr := c.Listen
		if key == "admin_listen" {
			addr = c.AdminListen
		}
		if addr == "" {
			r.add("%s: must be set (host:port)", l.kv(key))
			continue
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			r.add("%s: not host:port (%v)", l.kv(key), err)
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			r.add("%s: the port must be a number from 0 to 65535", l.kv(key))
		}
	}
	if c.Listen != "" && c.Listen == c.AdminListen && !strings.HasSuffix(c.Listen, ":0") {
		r.add("%s is the same address as %s: the admin endpoints never share the public listener; give admin_listen another port",
			l.kv("admin_listen"), l.kv("listen"))
	}
}

func checkCommand(l *Loaded, r *report) {
	w := &l.Config.Worker
	if w.IsPython() {
		if len(w.Command) > 0 {
			r.add("%s and %s are both set: a worker is either a command or a Python app forked from a template; remove one",
				l.kv("worker.command"), l.kv("worker.python.app"))
			return
		}
		if w.Listen != "" && w.Listen != ListenSocket && w.Listen != ListenPort {
			r.add("%s: must be %q or %q", l.kv("worker.listen"), ListenSocket, ListenPort)
		}
		return
	}
	if len(w.Command) == 0 {
		r.add("worker.command (%s): must be set: the argv of one worker, with %s or %s where it should listen; or set worker.python.app for a Python app",
			l.Source("worker.command"), SocketPlaceholder, PortPlaceholder)
		return
	}
	socket, port := templateHas(w.Command, SocketPlaceholder), templateHas(w.Command, PortPlaceholder)
	switch {
	case w.Listen != "" && w.Listen != ListenSocket && w.Listen != ListenPort:
		r.add("%s: must be %q or %q", l.kv("worker.listen"), ListenSocket, ListenPort)
	case socket && port:
		r.add("%s uses both %s and %s: use one", l.kv("worker.command"), SocketPlaceholder, PortPlaceholder)
	case w.Listen == ListenPort && socket, w.Listen == ListenSocket && port:
		r.add("%s contradicts %s: remove the placeholder or the setting", l.kv("worker.listen"), l.kv("worker.command"))
	case !socket && !port && w.Listen == "":
		r.add("%s uses neither %s nor %s, so a worker cannot be told where to listen: add one, or set worker.listen = %q for an app that reads $PORT (%q for one that reads $WARMPOOL_SOCKET)",
			l.kv("worker.command"), SocketPlaceholder, PortPlaceholder, ListenPort, ListenSocket)
	}
}

func checkPython(l *Loaded, r *report) {
	p := &l.Config.Worker.Python
	if p.App == "" {
		for _, key := range []string{"worker.python.interface", "worker.python.executable", "worker.python.post_fork", "worker.python.pre_fork",
			"worker.python.lifespan", "worker.python.allow_inherited_sockets", "worker.python.preload"} {
			if l.Explicit(key) {
				r.add("%s is set but worker.python.app is not: it applies only to a Python app", l.kv(key))
			}
		}
		return
	}
	for _, kv := range [][2]string{{"worker.python.app", p.App}, {"worker.python.post_fork", p.PostFork}, {"worker.python.pre_fork", p.PreFork}} {
		key, v := kv[0], kv[1]
		if v == "" {
			continue
		}
		if mod, attr, ok := strings.Cut(v, ":"); !ok || !PythonDotted(mod) || !PythonDotted(attr) {
			r.add("%s: must be module:callable, such as \"mysite.wsgi:application\"", l.kv(key))
		}
	}
	if p.Interface != InterfaceWSGI && p.Interface != InterfaceASGI {
		r.add("%s: must be %q or %q", l.kv("worker.python.interface"), InterfaceWSGI, InterfaceASGI)
	}
	if p.Executable == "" {
		r.add("%s: must name the Python interpreter of the app's environment", l.kv("worker.python.executable"))
	}
	switch {
	case p.Lifespan != LifespanTemplate && p.Lifespan != LifespanWorker:
		r.add("%s: must be %q (once, in the template) or %q (in every worker)", l.kv("worker.python.lifespan"), LifespanTemplate, LifespanWorker)
	case p.Interface == InterfaceWSGI && l.Explicit("worker.python.lifespan"):
		r.add("%s has no effect because %s: a WSGI app has no lifespan; remove it", l.kv("worker.python.lifespan"), l.kv("worker.python.interface"))
	}
	for _, name := range p.AllowInheritedSockets {
		if name == "" || (!strings.HasPrefix(name, "/") && !strings.Contains(name, ":")) {
			r.add("%s: %q names no connection: give its peer as host:port, or a unix socket's path", l.kv("worker.python.allow_inherited_sockets"), name)
		}
	}
	for _, name := range p.Preload {
		if !PythonDotted(name) {
			r.add("%s: %q is not a module name (dotted identifiers, such as \"xml.etree.ElementTree\")", l.kv("worker.python.preload"), name)
		}
	}
	if l.Config.Warmup.Ready == ReadyNotify {
		r.add("%s cannot apply to worker.python: its workers never send READY=1 (warmpool binds their socket, and the warm-up shows when they serve); remove it",
			l.kv("warmup.ready"))
	}
}

// PythonDotted reports whether s is a dotted Python name: identifiers joined by dots.
func PythonDotted(s string) bool {
	for part := range strings.SplitSeq(s, ".") {
		if part == "" {
			return false
		}
		for i, c := range part {
			letter := c == '_' || unicode.IsLetter(c)
			if !letter && (i == 0 || !unicode.IsDigit(c)) {
				return false
			}
		}
	}
	return true
}

func checkTLS(l *Loaded, r *report) {
	c := &l.Config
	if c.TLSCert != "" && c.TLSKey == "" {
		r.add("%s is set but tls_key is not: set both to serve HTTPS, or neither", l.kv("tls_cert"))
	}
	if c.TLSKey != "" && c.TLSCert == "" {
		r.add("%s is set but tls_cert is not: set both to serve HTTPS, or neither", l.kv("tls_key"))
	}
}

func checkCounts(l *Loaded, r *report) {
	c := &l.Config
	if c.Worker.Count < 1 {
		r.add("%s: must be at least 1", l.kv("worker.count"))
	}
	if c.Worker.Count > MaxWorkers {
		r.add("%s: must be at most %d (each worker is a process)", l.kv("worker.count"), MaxWorkers)
	}
	if c.Worker.Concurrency < 1 {
		r.add("%s: must be at least 1", l.kv("worker.concurrency"))
	}
	if c.Worker.Count >= 1 && (c.MinReady < 1 || c.MinReady > c.Worker.Count) {
		r.add("%s: must be between 1 and %s", l.kv("min_ready"), l.kv("worker.count"))
	}
	if c.Worker.MaxRequests < 0 {
		r.add("%s: must be 0 (never) or more", l.kv("worker.max_requests"))
	}
	if c.Proxy.QueueSize < 0 {
		r.add("%s: must be 0 or more", l.kv("proxy.queue_size"))
	}
	if c.Warmup.Nice < 0 || c.Warmup.Nice > 19 {
		r.add("%s: must be between 0 (off) and 19", l.kv("warmup.nice"))
	}
}

func checkJitter(l *Loaded, r *report) {
	w := &l.Config.Worker
	switch {
	case w.MaxRequestsJitter < 0:
		r.add("%s: must be 0 or more", l.kv("worker.max_requests_jitter"))
	case w.MaxRequestsJitter > 0 && w.MaxRequests == 0:
		r.add("%s has no effect because %s never recycles: remove the jitter or set max_requests",
			l.kv("worker.max_requests_jitter"), l.kv("worker.max_requests"))
	case w.MaxRequestsJitter > 0 && w.MaxRequestsJitter >= w.MaxRequests:
		r.add("%s is not below %s: lower the jitter (a tenth of max_requests is typical)",
			l.kv("worker.max_requests_jitter"), l.kv("worker.max_requests"))
	}
	switch c := w.MaxRequestsCeiling; {
	case c != 0 && !(c > 1) || math.IsInf(c, 0): // NaN and infinity too
		r.add("%s: must be 0 (none) or above 1: a worker at its max_requests keeps serving until its replacement is ready, and is drained anyway past this multiple of it",
			l.kv("worker.max_requests_ceiling"))
	case l.Explicit("worker.max_requests_ceiling") && w.MaxRequests == 0:
		r.add("%s has no effect because %s never recycles: remove it or set max_requests",
			l.kv("worker.max_requests_ceiling"), l.kv("worker.max_requests"))
	}
	switch {
	case w.MaxLifetimeJitter.Duration > 0 && w.MaxLifetime.Duration == 0:
		r.add("%s has no effect because %s never recycles: remove the jitter or set max_lifetime",
			l.kv("worker.max_lifetime_jitter"), l.kv("worker.max_lifetime"))
	case w.MaxLifetimeJitter.Duration > 0 && w.MaxLifetimeJitter.Duration >= w.MaxLifetime.Duration:
		r.add("%s is not below %s: lower the jitter", l.kv("worker.max_lifetime_jitter"), l.kv("worker.max_lifetime"))
	}
}

func checkRSS(l *Loaded, r *report) {
	w := &l.Config.Worker
	if w.MaxRSS.Bytes == 0 && l.Explicit("worker.rss_check_interval") {
		r.add("%s has no effect because %s: remove it or set max_rss", l.kv("worker.rss_check_interval"), l.kv("worker.max_rss"))
	}
	if w.MaxRSS.Bytes > 0 && w.RSSCheckInterval.Duration <= 0 {
		r.add("%s: must be above 0 when %s", l.kv("worker.rss_check_interval"), l.kv("worker.max_rss"))
	}
}

func checkSurge(l *Loaded, r *report) {
	w := &l.Config.Worker
	if w.Surge < 1 || (w.Count >= 1 && w.Surge > w.Count) {
		why := "a replacement must be started before a worker is retired"
		if w.Recycling() {
			why = "recycling is on, and each recycle starts its replacement first"
		}
		r.add("%s: must be between 1 and %s: %s", l.kv("worker.surge"), l.kv("worker.count"), why)
	}
}

// recyclingTriggers names the recycle settings that are on, with their sources.
func recyclingTriggers(l *Loaded) []string {
	var on []string
	w := &l.Config.Worker
	if w.MaxRequests > 0 {
		on = append(on, l.kv("worker.max_requests"))
	}
	if w.MaxLifetime.Duration > 0 {
		on = append(on, l.kv("worker.max_lifetime"))
	}
	if w.MaxRSS.Bytes > 0 {
		on = append(on, l.kv("worker.max_rss"))
	}
	return on
}

func checkPlanExists(l *Loaded, r *report) {
	wu := &l.Config.Warmup
	if !wu.Enabled || len(wu.Requests) > 0 || wu.Ready == ReadyNotify {
		return
	}
	why := "every new worker (first start, crash restart, reload) would take traffic cold"
	if on := recyclingTriggers(l); len(on) > 0 {
		why = "recycling is on (" + strings.Join(on, ", ") + "), so every replacement would take traffic cold"
	}
	r.add("%s but the warm-up plan is empty (no [[warmup.request]], warmup.ready = %q): %s; add [[warmup.request]] entries that reach your slow code, use warmup.ready = \"notify\", or set warmup.enabled = false to accept cold workers explicitly",
		l.kv("warmup.enabled"), wu.Ready, why)
}

func checkDisabledWarmup(l *Loaded, r *report) {
	wu := &l.Config.Warmup
	if wu.Enabled {
		return
	}
	if len(wu.Requests) > 0 {
		r.add("%d warm-up requests are declared ([[warmup.request]] at %s) but %s, so none would run: remove them or enable the warm-up",
			len(wu.Requests), l.Source("warmup.request"), l.kv("warmup.enabled"))
	}
	for _, key := range []string{"warmup.timeout", "warmup.concurrency", "warmup.ready", "warmup.nice"} {
		if l.Explicit(key) {
			r.add("%s has no effect because %s: remove it or enable the warm-up", l.kv(key), l.kv("warmup.enabled"))
		}
	}
}

func checkWarmupConcurrency(l *Loaded, r *report) {
	c := &l.Config
	if c.Warmup.Concurrency < 0 || c.Warmup.Concurrency > c.Worker.Concurrency {
		r.add("%s is above %s: a worker cannot take more warm-up requests at once than its threads; lower it (0 means the same as worker.concurrency)",
			l.kv("warmup.concurrency"), l.kv("worker.concurrency"))
	}
}

func checkWarmupTimeout(l *Loaded, r *report) {
	c := &l.Config
	if c.Warmup.Enabled && c.Worker.MaxLifetime.Duration > 0 && c.Warmup.Timeout.Duration > c.Worker.MaxLifetime.Duration {
		r.add("%s is longer than %s: a worker could be due for recycling before its warm-up may end; shorten the warm-up timeout or lengthen max_lifetime",
			l.kv("warmup.timeout"), l.kv("worker.max_lifetime"))
	}
}

func checkWarmupHost(l *Loaded, r *report) {
	c := &l.Config
	if len(c.Proxy.AllowedHosts) == 0 || !c.Warmup.Enabled {
		return
	}
	for i, req := range c.Warmup.Requests {
		host := "localhost"
		for k, v := range req.Headers {
			if strings.EqualFold(k, "Host") {
				host = v
			}
		}
		if !HostAllowed(c.Proxy.AllowedHosts, host) {
			key := fmt.Sprintf("warmup.request[%d].headers", i)
			r.add("warm-up request %s %s sends Host %q (%s), which %s rejects: the warm-up would be refused like the post-mortem's; set its Host header to an allowed host",
				req.Method, req.Path, host, l.Source(key), l.kv("proxy.allowed_hosts"))
		}
	}
}

// HostAllowed reports whether host (with or without port) matches the allow-list: an exact
// name, or ".example.com" for the domain and its subdomains, or "*" for any.
func HostAllowed(allowed []string, host string) bool {
	return CompileHosts(allowed).Allowed([]byte(host))
}

func checkRequests(l *Loaded, r *report) {
	for i, req := range l.Config.Warmup.Requests {
		key := fmt.Sprintf("warmup.request[%d]", i)
		at := func(field string) string { return l.Source(key + "." + field).String() }
		if !strings.HasPrefix(req.Path, "/") {
			r.add("%s.path = %q (%s): must start with /", key, req.Path, at("path"))
		}
		if !validMethod(req.Method) {
			r.add("%s.method = %q (%s): not an HTTP method", key, req.Method, at("method"))
		}
		if req.Repeat < 1 {
			r.add("%s.repeat = %d (%s): must be at least 1", key, req.Repeat, at("repeat"))
		}
		for _, s := range req.Expect {
			if s < 100 || s > 599 {
				r.add("%s.expect (%s) has %d: not an HTTP status", key, at("expect"), s)
			}
		}
		for _, name := range sortedKeys(req.Headers) {
			// A name or value no HTTP parser takes would fail every warm-up, forever.
			if !httpguts.ValidHeaderFieldName(name) {
				r.add("%s.headers (%s) has the header name %q: not a valid HTTP field name (no spaces, colons or control characters)", key, at("headers"), name)
			}
			if !httpguts.ValidHeaderFieldValue(req.Headers[name]) {
				r.add("%s.headers (%s) has %s = %q: a value may not hold CR, LF or other control characters", key, at("headers"), name, req.Headers[name])
			}
		}
	}
	if wu := &l.Config.Warmup; wu.Ready != ReadyRequests && wu.Ready != ReadyNotify {
		r.add("%s: must be %q or %q", l.kv("warmup.ready"), ReadyRequests, ReadyNotify)
	}
}

func checkTimeouts(l *Loaded, r *report) {
	c := &l.Config
	for key, d := range map[string]Duration{
		"worker.graceful_timeout": c.Worker.GracefulTimeout, "warmup.timeout": c.Warmup.Timeout,
		"proxy.request_timeout": c.Proxy.RequestTimeout, "worker.restart_backoff": c.Worker.RestartBackoff,
		"proxy.send_timeout": c.Proxy.SendTimeout, "proxy.client_body_timeout": c.Proxy.ClientBodyTimeout,
	} {
		if d.Duration <= 0 {
			r.add("%s: must be above 0", l.kv(key))
		}
	}
	if d := c.Worker.RestartBackoff.Duration; d > 0 && d < minRestartBackoff {
		r.add("%s: must be at least %s, or a worker that fails at start is restarted in a tight loop", l.kv("worker.restart_backoff"), minRestartBackoff)
	}
	if c.Worker.RestartBackoffMax.Duration < c.Worker.RestartBackoff.Duration {
		r.add("%s is below %s: raise it", l.kv("worker.restart_backoff_max"), l.kv("worker.restart_backoff"))
	}
}

func checkLimits(l *Loaded, r *report) {
	p := &l.Config.Proxy
	if p.MaxBodySize.Bytes <= 0 {
		r.add("%s: must be above 0", l.kv("proxy.max_body_size"))
	}
	// The lean path takes heads up to 8 KiB whole; past 1 MiB, memory per slow client grows
	// beyond what a front facing the internet should give.
	if p.MaxHeaderBytes.Bytes < 8<<10 || p.MaxHeaderBytes.Bytes > 1<<20 {
		r.add("%s: must be from 8KiB to 1MiB", l.kv("proxy.max_header_bytes"))
	}
}

func checkLog(l *Loaded, r *report) {
	c := &l.Config
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		r.add("%s: must be \"debug\", \"info\", \"warn\" or \"error\"", l.kv("log_level"))
	}
	if c.LogFormat != LogText && c.LogFormat != LogJSON {
		r.add("%s: must be %q or %q", l.kv("log_format"), LogText, LogJSON)
	}
	if f := c.Telemetry.AccessLogFormat; f != "json" && f != "combined" {
		r.add("%s: must be \"json\" or \"combined\"", l.kv("telemetry.access_log_format"))
	}
	if o := c.Worker.LogOutput; o != "info" && o != "debug" && o != "off" {
		r.add("%s: must be \"info\", \"debug\" or \"off\"", l.kv("worker.log_output"))
	}
}

// durationsAsText writes durations as the text format does ("1.5s"), one way in both formats:
// slog's JSON handler writes them as integer nanoseconds.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// NewLogger is warmpool's logger as the configuration says: level and format.
func (c *Config) NewLogger(w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.LogLevel)) // validated
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == LogJSON {
		opts.ReplaceAttr = durationsAsText
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func checkHarakiri(l *Loaded, r *report) {
	p := &l.Config.Proxy
	if p.Harakiri.Duration > 0 && p.Harakiri.Duration <= p.RequestTimeout.Duration {
		r.add("%s is not above %s: the hard limit must come after the 504; raise harakiri or lower request_timeout",
			l.kv("proxy.harakiri"), l.kv("proxy.request_timeout"))
	}
}

func checkSocketDir(l *Loaded, r *report) {
	w := &l.Config.Worker
	if w.SocketDir != "" && w.UsesPort() && !w.UsesSocket() {
		r.add("%s has no effect because %s listens on {port}: remove it", l.kv("worker.socket_dir"), l.kv("worker.command"))
	}
}

// UsesSocket reports whether the command template asks for a unix socket (a Python app's
// workers listen on one unless worker.listen = "port").
func (w *Worker) UsesSocket() bool {
	if w.IsPython() {
		return w.Listen != ListenPort
	}
	return w.Listen == ListenSocket || w.Listen == "" && templateHas(w.Command, SocketPlaceholder)
}

// UsesPort reports whether the command template asks for a TCP port.
func (w *Worker) UsesPort() bool {
	return w.Listen == ListenPort || w.Listen == "" && !w.IsPython() && templateHas(w.Command, PortPlaceholder)
}

func templateHas(argv []string, placeholder string) bool {
	for _, a := range argv {
		if strings.Contains(a, placeholder) {
			return true
		}
	}
	return false
}

func validMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}

func checkTelemetry(l *Loaded, r *report) {
	t := &l.Config.Telemetry
	if t.ColdWindow < 1 {
		r.add("%s: must be at least 1", l.kv("telemetry.cold_window"))
	}
	if t.OTLPEndpoint != "" {
		if u, err := url.Parse(t.OTLPEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			r.add("%s: want an http:// or https:// URL such as \"http://127.0.0.1:4318\"", l.kv("telemetry.otlp_endpoint"))
		}
	} else {
		for _, key := range []string{"telemetry.service_name", "telemetry.trace_sample_ratio"} {
			if l.Explicit(key) {
				r.add("%s has no effect because tracing is off (telemetry.otlp_endpoint is not set): remove it or set the endpoint", l.kv(key))
			}
		}
	}
	if t.TraceSampleRatio < 0 || t.TraceSampleRatio > 1 {
		r.add("%s: must be between 0 and 1", l.kv("telemetry.trace_sample_ratio"))
	}
	if t.WarmupCheckFactor <= 1 {
		r.add("%s: must be above 1 (how many times slower than steady a first request may be)", l.kv("telemetry.warmup_check_factor"))
	}
}

func checkForwarding(l *Loaded, r *report) {
	p := &l.Config.Proxy
	for _, s := range p.TrustedProxies {
		if _, err := parsePrefix(s); err != nil {
			r.add("%s: %v; write an address (\"10.0.0.7\") or a prefix (\"10.0.0.0/8\")", l.kv("proxy.trusted_proxies"), err)
		}
	}
	if p.UnderscoreHeaders != UnderscoreDrop && p.UnderscoreHeaders != UnderscorePass {
		r.add("%s: must be %q or %q", l.kv("proxy.underscore_headers"), UnderscoreDrop, UnderscorePass)
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
