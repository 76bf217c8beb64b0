package config

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// load runs the whole pipeline on a document written to w.toml, with env and --set layers.
func load(t *testing.T, doc string, env, sets []string) (*Loaded, []string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "w.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Load(Layers{Files: []string{path}, Env: env, Sets: sets})
	if err == nil {
		err = l.Validate()
	}
	var msgs []string
	for _, e := range unjoin(err) {
		msgs = append(msgs, strings.ReplaceAll(e.Error(), path, "w.toml"))
	}
	return l, msgs
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

const minimal = `[worker]
command = ["app", "{socket}"]
[[warmup.request]]
path = "/"
`

func TestParseFullExample(t *testing.T) {
	l, errs := load(t, `
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9090"

[worker]
command = ["gunicorn", "--bind", "unix:{socket}", "--threads", "4", "app.wsgi"]
count = 4
concurrency = 4
max_requests = 1000
max_requests_jitter = 100
max_lifetime = "1h"
max_lifetime_jitter = "5m"
max_rss = "512MiB"
surge = 1
graceful_timeout = "30s"

[warmup]
timeout = "60s"
concurrency = 4
ready = "notify"
[[warmup.request]]
path = "/healthz"
method = "get"
headers = { Host = "app.example.com" }
expect = [200]
repeat = 4
[[warmup.request]]
path = "/api/orders"
`, nil, nil)
	if errs != nil {
		t.Fatalf("valid example rejected: %v", errs)
	}
	cfg := &l.Config
	if cfg.Worker.MaxRSS.Bytes != 512<<20 || cfg.Worker.MaxLifetime.Duration != time.Hour || cfg.Warmup.Ready != ReadyNotify {
		t.Fatalf("decoded wrong: %+v", cfg.Worker)
	}
	r := cfg.Warmup.Requests
	if r[0].Method != "GET" || r[1].Method != "GET" || r[1].Repeat != 1 || r[0].Headers["Host"] != "app.example.com" {
		t.Fatalf("request defaults: %+v", r)
	}
	if got := l.Source("worker.max_rss").String(); !strings.HasSuffix(got, "w.toml:13") {
		t.Fatalf("source of worker.max_rss: %s", got)
	}
	if got := l.Source("warmup.request[1].path").String(); !strings.HasSuffix(got, "w.toml:28") {
		t.Fatalf("source of warmup.request[1].path: %s", got)
	}
	if l.Source("worker.dir").Kind != FromDefault {
		t.Fatal("an absent key must come from the default")
	}
}

// Every decoding problem is reported at once, with file:line and the expected form.
func TestDecodeErrorsNameFileLineAndForm(t *testing.T) {
	_, errs := load(t, `listen = 8080
[worker]
command = ["app", "{socket}"]
max_request = 5
graceful_timeout = "30 seconds"
max_rss = "lots"
count = "two"
env = { A = 1 }
[warmup]
enabld = true
[[warmup.request]]
path = "/"
repeats = 2
[prxy]
`, nil, nil)
	want := []string{
		`w.toml:1: listen: want a string, got the integer 8080`,
		`w.toml:7: worker.count: want an integer, got the string "two"`,
		`w.toml:8: worker.env: want a table of strings such as { NAME = "value" }, but A is the integer 1`,
		`w.toml:5: worker.graceful_timeout: invalid duration "30 seconds": want a number with a unit such as "500ms", "30s" or "5m"`,
		`w.toml:4: unknown key "worker.max_request" (did you mean "worker.max_requests"?)`,
		`w.toml:6: worker.max_rss: invalid size "lots": want a whole number with an optional unit such as "512MiB" or "2GiB"`,
		`w.toml:10: unknown key "warmup.enabld" (did you mean "warmup.enabled"?)`,
		`w.toml:13: unknown key "warmup.request[0].repeats" (did you mean "warmup.request[0].repeat"?)`,
		`w.toml:14: unknown key "prxy" (did you mean "proxy"?)`,
	}
	slices.Sort(want)
	slices.Sort(errs)
	if !slices.Equal(errs, want) {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(errs, "\n"), strings.Join(want, "\n"))
	}
}

func TestKeyInTheWrongSectionIsPointedOut(t *testing.T) {
	_, errs := load(t, "max_requests = 5\n"+minimal, nil, nil)
	want := `w.toml:1: unknown key "max_requests" (did you mean "worker.max_requests"? it belongs in a different section)`
	if len(errs) != 1 || errs[0] != want {
		t.Fatalf("got %q", errs)
	}
}

func TestSyntaxErrorHasPosition(t *testing.T) {
	_, errs := load(t, "listen = \n", nil, nil)
	if len(errs) != 1 || !strings.HasPrefix(errs[0], "w.toml:1:") {
		t.Fatalf("got %q", errs)
	}
}

// Layers: defaults < file < environment < flags, each value with its source.
func TestLayersAndSources(t *testing.T) {
	doc := minimal + "[proxy]\nqueue_size = 10\nqueue_timeout = \"5s\"\n"
	l, errs := load(t, doc, []string{
		"WARMPOOL_PROXY_QUEUE_SIZE=20", "WARMPOOL_WORKER_COUNT=3", "WARMPOOL_WORKER_ENV={ A = \"b\" }",
		"WARMPOOL_WORKER_ID=7", "HOME=/root", // a worker's own variable and an unrelated one are not settings
	}, []string{"worker.count=5", "warmup.nice=0"})
	if errs != nil {
		t.Fatal(errs)
	}
	c := &l.Config
	checks := []struct {
		key, source string
		ok          bool
	}{
		{"proxy.queue_timeout", "w.toml:7", c.Proxy.QueueTimeout.Duration == 5*time.Second},
		{"proxy.queue_size", "env WARMPOOL_PROXY_QUEUE_SIZE", c.Proxy.QueueSize == 20},
		{"worker.count", "flag --set worker.count", c.Worker.Count == 5},
		{"worker.env", "env WARMPOOL_WORKER_ENV", c.Worker.Env["A"] == "b"},
		{"warmup.nice", "flag --set warmup.nice", c.Warmup.Nice == 0},
		{"worker.concurrency", "default", c.Worker.Concurrency == 1},
		{"worker.command", "w.toml:2", c.Worker.Command[1] == "{socket}"},
	}
	for _, ch := range checks {
		if got := strings.ReplaceAll(l.Source(ch.key).String(), filepath.Dir(l.Source("worker.command").Where)+"/", ""); got != ch.source || !ch.ok {
			t.Errorf("%s: source %q value ok %v; want source %q", ch.key, got, ch.ok, ch.source)
		}
	}
}

func TestLayerErrors(t *testing.T) {
	_, errs := load(t, minimal, []string{
		"WARMPOOL_WORKER_COUNT=four", "WARMPOOL_WORKER_MAX_REQUEST=5", "WARMPOOL_WORKER_COMMAND=app {socket}",
	}, []string{"worker.cuont=2", "warmup.request.path=/x", "proxy.harakiri=soon", "listen"})
	want := []string{
		`env WARMPOOL_WORKER_COUNT: worker.count: want an integer, got "four"`,
		`env WARMPOOL_WORKER_MAX_REQUEST: not a warmpool setting (did you mean WARMPOOL_WORKER_MAX_REQUESTS?)`,
		`env WARMPOOL_WORKER_COMMAND: worker.command: want an array of strings such as ["app", "{socket}"], got "app {socket}"`,
		`flag --set worker.cuont: unknown key (did you mean worker.count?)`,
		`flag --set warmup.request.path: warm-up requests can only be declared in the config file ([[warmup.request]])`,
		`flag --set proxy.harakiri: proxy.harakiri: invalid duration "soon": want a number with a unit such as "500ms", "30s" or "5m"`,
		`flag --set listen: want key=value`,
	}
	slices.Sort(want)
	slices.Sort(errs)
	if !slices.Equal(errs, want) {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(errs, "\n"), strings.Join(want, "\n"))
	}
}

// One case per rule (and per branch of a rule), with the exact message.
func TestRules(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		env  []string
		want string
	}{
		{"listeners differ", `listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:8080"
` + minimal, nil,
			`admin_listen = "127.0.0.1:8080" (w.toml:2) is the same address as listen = "127.0.0.1:8080" (w.toml:1): the admin endpoints never share the public listener; give admin_listen another port`},
		{"no command", "[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.command (default): must be set: the argv of one worker, with {socket} or {port} where it should listen; or set worker.python.app for a Python app`},
		{"command and python", "[worker]\ncommand = [\"app\", \"{socket}\"]\n[worker.python]\napp = \"site.wsgi:application\"\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.command = ["app", "{socket}"] (w.toml:2) and worker.python.app = "site.wsgi:application" (w.toml:4) are both set: a worker is either a command or a Python app forked from a template; remove one`},
		{"python app not module:callable", "[worker.python]\napp = \"site/wsgi.py\"\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.python.app = "site/wsgi.py" (w.toml:2): must be module:callable, such as "mysite.wsgi:application"`},
		{"python hook not module:callable", "[worker.python]\napp = \"site.wsgi:application\"\npost_fork = \"hooks:\"\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.python.post_fork = "hooks:" (w.toml:3): must be module:callable, such as "mysite.wsgi:application"`},
		{"python interface unknown", "[worker.python]\napp = \"site.wsgi:application\"\ninterface = \"rsgi\"\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.python.interface = "rsgi" (w.toml:3): must be "wsgi" or "asgi"`},
		{"python lifespan unknown", "[worker.python]\napp = \"site.asgi:application\"\ninterface = \"asgi\"\nlifespan = \"both\"\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.python.lifespan = "both" (w.toml:4): must be "template" (once, in the template) or "worker" (in every worker)`},
		{"python lifespan for wsgi", "[worker.python]\napp = \"site.wsgi:application\"\nlifespan = \"worker\"\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.python.lifespan = "worker" (w.toml:3) has no effect because worker.python.interface = "wsgi" (default): a WSGI app has no lifespan; remove it`},
		{"python inherited socket unnamed", "[worker.python]\napp = \"site.wsgi:application\"\nallow_inherited_sockets = [\"redis\"]\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.python.allow_inherited_sockets = ["redis"] (w.toml:3): "redis" names no connection: give its peer as host:port, or a unix socket's path`},
		{"python with ready notify", "[worker.python]\napp = \"site.wsgi:application\"\n[warmup]\nready = \"notify\"\n[[warmup.request]]\npath = \"/\"\n", nil,
			`warmup.ready = "notify" (w.toml:4) cannot apply to worker.python: its workers never send READY=1 (warmpool binds their socket, and the warm-up shows when they serve); remove it`},
		{"python settings without app", "[worker]\ncommand = [\"app\", \"{socket}\"]\n[worker.python]\npost_fork = \"hooks:post_fork\"\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.python.post_fork = "hooks:post_fork" (w.toml:4) is set but worker.python.app is not: it applies only to a Python app`},
		{"both placeholders", "[worker]\ncommand = [\"app\", \"{socket}\", \"{port}\"]\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.command = ["app", "{socket}", "{port}"] (w.toml:2) uses both {socket} and {port}: use one`},
		{"no placeholder", "[worker]\ncommand = [\"app\"]\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.command = ["app"] (w.toml:2) uses neither {socket} nor {port}, so a worker cannot be told where to listen: add one, or set worker.listen = "port" for an app that reads $PORT ("socket" for one that reads $WARMPOOL_SOCKET)`},
		{"tls half", "tls_cert = \"c.pem\"\n" + minimal, nil,
			`tls_cert = "c.pem" (w.toml:1) is set but tls_key is not: set both to serve HTTPS, or neither`},
		{"count", minimal, []string{"WARMPOOL_WORKER_COUNT=0"},
			`worker.count = 0 (env WARMPOOL_WORKER_COUNT): must be at least 1`},
		{"min_ready", "min_ready = 3\n" + minimal, nil,
			`min_ready = 3 (w.toml:1): must be between 1 and worker.count = 2 (default)`},
		{"nice range", minimal + "[warmup]\nnice = 25\n", nil,
			`warmup.nice = 25 (w.toml:6): must be between 0 (off) and 19`},
		{"jitter without base", minimal, []string{"WARMPOOL_WORKER_MAX_REQUESTS_JITTER=10"},
			`worker.max_requests_jitter = 10 (env WARMPOOL_WORKER_MAX_REQUESTS_JITTER) has no effect because worker.max_requests = 0 (default) never recycles: remove the jitter or set max_requests`},
		{"jitter at base", "[worker]\ncommand = [\"app\", \"{socket}\"]\nmax_requests = 100\nmax_requests_jitter = 100\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.max_requests_jitter = 100 (w.toml:4) is not below worker.max_requests = 100 (w.toml:3): lower the jitter (a tenth of max_requests is typical)`},
		{"lifetime jitter", "[worker]\ncommand = [\"app\", \"{socket}\"]\nmax_lifetime = \"1m\"\nmax_lifetime_jitter = \"1h\"\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.max_lifetime_jitter = "1h0m0s" (w.toml:4) is not below worker.max_lifetime = "1m0s" (w.toml:3): lower the jitter`},
		{"rss interval without rss", "[worker]\ncommand = [\"app\", \"{socket}\"]\nrss_check_interval = \"1s\"\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.rss_check_interval = "1s" (w.toml:3) has no effect because worker.max_rss = "0" (default): remove it or set max_rss`},
		{"surge above count", "[worker]\ncommand = [\"app\", \"{socket}\"]\nsurge = 3\nmax_requests = 10\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.surge = 3 (w.toml:3): must be between 1 and worker.count = 2 (default): recycling is on, and each recycle starts its replacement first`},
		{"surge zero", "[worker]\ncommand = [\"app\", \"{socket}\"]\nsurge = 0\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.surge = 0 (w.toml:3): must be between 1 and worker.count = 2 (default): a replacement must be started before a worker is retired`},
		{"empty plan with recycling", "[worker]\ncommand = [\"app\", \"{socket}\"]\nmax_requests = 1000\n", nil,
			`warmup.enabled = true (default) but the warm-up plan is empty (no [[warmup.request]], warmup.ready = "requests"): recycling is on (worker.max_requests = 1000 (w.toml:3)), so every replacement would take traffic cold; add [[warmup.request]] entries that reach your slow code, use warmup.ready = "notify", or set warmup.enabled = false to accept cold workers explicitly`},
		{"empty plan", "[worker]\ncommand = [\"app\", \"{socket}\"]\n", nil,
			`warmup.enabled = true (default) but the warm-up plan is empty (no [[warmup.request]], warmup.ready = "requests"): every new worker (first start, crash restart, reload) would take traffic cold; add [[warmup.request]] entries that reach your slow code, use warmup.ready = "notify", or set warmup.enabled = false to accept cold workers explicitly`},
		{"requests while disabled", minimal + "[warmup]\nenabled = false\n", nil,
			`1 warm-up requests are declared ([[warmup.request]] at w.toml:3) but warmup.enabled = false (w.toml:6), so none would run: remove them or enable the warm-up`},
		{"warm-up setting while disabled", "[worker]\ncommand = [\"app\", \"{socket}\"]\n[warmup]\nenabled = false\ntimeout = \"5s\"\n", nil,
			`warmup.timeout = "5s" (w.toml:5) has no effect because warmup.enabled = false (w.toml:4): remove it or enable the warm-up`},
		{"warm-up concurrency", minimal + "[warmup]\nconcurrency = 8\n", nil,
			`warmup.concurrency = 8 (w.toml:6) is above worker.concurrency = 1 (default): a worker cannot take more warm-up requests at once than its threads; lower it (0 means the same as worker.concurrency)`},
		{"warm-up timeout vs lifetime", "[worker]\ncommand = [\"app\", \"{socket}\"]\nmax_lifetime = \"30s\"\n[warmup]\ntimeout = \"60s\"\n[[warmup.request]]\npath = \"/\"\n", nil,
			`warmup.timeout = "1m0s" (w.toml:5) is longer than worker.max_lifetime = "30s" (w.toml:3): a worker could be due for recycling before its warm-up may end; shorten the warm-up timeout or lengthen max_lifetime`},
		{"warm-up host rejected", "[worker]\ncommand = [\"app\", \"{socket}\"]\n[proxy]\nallowed_hosts = [\"app.example.com\"]\n[[warmup.request]]\npath = \"/healthz\"\nheaders = { Host = \"localhost\" }\n", nil,
			`warm-up request GET /healthz sends Host "localhost" (w.toml:7), which proxy.allowed_hosts = ["app.example.com"] (w.toml:4) rejects: the warm-up would be refused like the post-mortem's; set its Host header to an allowed host`},
		{"trusted proxy not an address", minimal + "[proxy]\ntrusted_proxies = [\"10.0.0.0/8\", \"lb.internal\"]\n", nil,
			`proxy.trusted_proxies = ["10.0.0.0/8", "lb.internal"] (w.toml:6): "lb.internal" is no IP address or CIDR prefix such as "10.0.0.0/8"; write an address ("10.0.0.7") or a prefix ("10.0.0.0/8")`},
		{"underscore headers", minimal + "[proxy]\nunderscore_headers = \"keep\"\n", nil,
			`proxy.underscore_headers = "keep" (w.toml:6): must be "drop" or "pass"`},
		{"trusted proxy bad prefix", minimal, []string{`WARMPOOL_PROXY_TRUSTED_PROXIES=["10.0.0.0/33"]`},
			`proxy.trusted_proxies = ["10.0.0.0/33"] (env WARMPOOL_PROXY_TRUSTED_PROXIES): "10.0.0.0/33" is no CIDR prefix such as "10.0.0.0/8"; write an address ("10.0.0.7") or a prefix ("10.0.0.0/8")`},
		{"bad path", "[worker]\ncommand = [\"app\", \"{socket}\"]\n[[warmup.request]]\npath = \"healthz\"\n", nil,
			`warmup.request[0].path = "healthz" (w.toml:4): must start with /`},
		{"bad method", "[worker]\ncommand = [\"app\", \"{socket}\"]\n[[warmup.request]]\npath = \"/\"\nmethod = \"FETCH\"\n", nil,
			`warmup.request[0].method = "FETCH" (w.toml:5): not an HTTP method`},
		{"bad repeat", "[worker]\ncommand = [\"app\", \"{socket}\"]\n[[warmup.request]]\npath = \"/\"\nrepeat = 0\n", nil,
			`warmup.request[0].repeat = 0 (w.toml:5): must be at least 1`},
		{"bad expect", "[worker]\ncommand = [\"app\", \"{socket}\"]\n[[warmup.request]]\npath = \"/\"\nexpect = [42]\n", nil,
			`warmup.request[0].expect (w.toml:5) has 42: not an HTTP status`},
		{"bad ready", minimal + "[warmup]\nready = \"socket\"\n", nil,
			`warmup.ready = "socket" (w.toml:6): must be "requests" or "notify"`},
		{"zero timeout", minimal + "[proxy]\nrequest_timeout = \"0s\"\n", nil,
			`proxy.request_timeout = "0s" (w.toml:6): must be above 0`},
		{"harakiri", minimal + "[proxy]\nharakiri = \"1s\"\n", nil,
			`proxy.harakiri = "1s" (w.toml:6) is not above proxy.request_timeout = "1m0s" (default): the hard limit must come after the 504; raise harakiri or lower request_timeout`},
		{"port out of range", "listen = \"127.0.0.1:80800\"\n" + minimal, nil,
			`listen = "127.0.0.1:80800" (w.toml:1): the port must be a number from 0 to 65535`},
		{"count too large", minimal, []string{"WARMPOOL_WORKER_COUNT=40000"},
			`worker.count = 40000 (env WARMPOOL_WORKER_COUNT): must be at most 4096 (each worker is a process)`},
		{"restart backoff too short", minimal, []string{"WARMPOOL_WORKER_RESTART_BACKOFF=1ms"},
			`worker.restart_backoff = "1ms" (env WARMPOOL_WORKER_RESTART_BACKOFF): must be at least 10ms, or a worker that fails at start is restarted in a tight loop`},
		{"header value with a newline", "[worker]\ncommand = [\"app\", \"{socket}\"]\n[[warmup.request]]\npath = \"/\"\nheaders = { Host = \"a.example\\r\\nX: y\" }\n", nil,
			`warmup.request[0].headers (w.toml:5) has Host = "a.example\r\nX: y": a value may not hold CR, LF or other control characters`},
		{"header name with a space", "[worker]\ncommand = [\"app\", \"{socket}\"]\n[[warmup.request]]\npath = \"/\"\nheaders = { \"X Thing\" = \"1\" }\n", nil,
			`warmup.request[0].headers (w.toml:5) has the header name "X Thing": not a valid HTTP field name (no spaces, colons or control characters)`},
		{"body size zero", minimal + "[proxy]\nmax_body_size = \"0\"\n", nil,
			`proxy.max_body_size = "0" (w.toml:6): must be above 0`},
		{"listen port with a socket placeholder", "[worker]\ncommand = [\"app\", \"{socket}\"]\nlisten = \"port\"\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.listen = "port" (w.toml:3) contradicts worker.command = ["app", "{socket}"] (w.toml:2): remove the placeholder or the setting`},
		{"listen unknown", "[worker]\ncommand = [\"app\"]\nlisten = \"tcp\"\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.listen = "tcp" (w.toml:3): must be "socket" or "port"`},
		{"socket_dir with port", "[worker]\ncommand = [\"app\", \"{port}\"]\nsocket_dir = \"/run/wp\"\n[[warmup.request]]\npath = \"/\"\n", nil,
			`worker.socket_dir = "/run/wp" (w.toml:3) has no effect because worker.command = ["app", "{port}"] (w.toml:2) listens on {port}: remove it`},
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := load(t, tc.doc, tc.env, nil)
			if len(errs) != 1 || errs[0] != tc.want {
				t.Fatalf("got %d errors:\n%s\nwant exactly:\n%s", len(errs), strings.Join(errs, "\n"), tc.want)
			}
		})
		covered[tc.name] = true
	}
	if _, errs := load(t, minimal, nil, nil); errs != nil {
		t.Fatalf("minimal config rejected: %v", errs)
	}
}

// An admin listener off loopback needs a token, or admin_insecure said explicitly (then it is
// warned about); on loopback it needs neither.
func TestAdminListenOffLoopbackNeedsAToken(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600)
	for _, tc := range []struct {
		doc   string
		env   []string
		error string // "" for none
		warn  bool
	}{
		{doc: `admin_listen = "127.0.0.1:9090"`},
		{doc: `admin_listen = "localhost:9090"`},
		{doc: `admin_listen = "[::1]:9090"`},
		{doc: `admin_listen = "0.0.0.0:9090"`, error: "is not on loopback and has no token"},
		{doc: `admin_listen = ":9090"`, error: "is not on loopback and has no token"},
		{doc: `admin_listen = "0.0.0.0:9090"`, env: []string{"WARMPOOL_ADMIN_TOKEN=t"}},
		{doc: "admin_listen = \"0.0.0.0:9090\"\nadmin_token_file = \"" + tokenFile + "\""},
		{doc: "admin_listen = \"0.0.0.0:9090\"\nadmin_insecure = true", warn: true},
		{doc: "admin_token_file = \"/no/such/token\"", error: "cannot be read"},
	} {
		l, errs := load(t, tc.doc+"\n"+minimal, tc.env, nil)
		if got := strings.Join(errs, "\n"); tc.error == "" && got != "" || tc.error != "" && !strings.Contains(got, tc.error) {
			t.Errorf("%s %v: errors %q, want %q", tc.doc, tc.env, got, tc.error)
			continue
		}
		if l == nil || tc.error != "" {
			continue
		}
		warned := false
		for _, w := range l.Warnings() {
			warned = warned || strings.HasPrefix(w, "admin_listen")
		}
		if warned != tc.warn {
			t.Errorf("%s: warned %v, want %v: %q", tc.doc, warned, tc.warn, l.Warnings())
		}
	}
	l, _ := load(t, "admin_token_file = \""+tokenFile+"\"\n"+minimal, nil, nil)
	if token, err := l.AdminToken(); token != "s3cret" || err != nil {
		t.Errorf("token %q %v", token, err)
	}
}

// A config with several problems lists all of them, not only the first.
func TestAllProblemsListed(t *testing.T) {
	_, errs := load(t, "[worker]\ncommand = [\"app\"]\ncount = 0\nconcurrency = 0\n", nil, nil)
	if len(errs) < 4 {
		t.Fatalf("want at least 4 problems, got %d: %q", len(errs), errs)
	}
}

// The configuration reference (docs/configuration.md) lists every rule and every key.
func TestEveryRuleIsInTheReference(t *testing.T) {
	readme, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range RuleNames() {
		if !strings.Contains(string(readme), name) {
			t.Errorf("docs/configuration.md does not list the rule %q", name)
		}
	}
	for _, key := range leafKeys {
		if !strings.Contains(string(readme), "`"+key+"`") {
			t.Errorf("docs/configuration.md lacks `%s`", key)
		}
	}
}

func TestHostAllowed(t *testing.T) {
	list := []string{"app.example.com", ".internal.example"}
	for host, want := range map[string]bool{
		"app.example.com": true, "APP.example.com:8080": true, "evil.com": false,
		"internal.example": true, "a.internal.example": true, "xinternal.example": false,
		"app.example.com.": true, "[::1]:80": false, "": false,
	} {
		if got := HostAllowed(list, host); got != want {
			t.Errorf("HostAllowed(%q) = %v", host, got)
		}
	}
	if !HostAllowed([]string{"::1"}, "[::1]:8080") || !HostAllowed([]string{"*"}, "anything") || !CompileHosts(nil).Allowed([]byte("x")) {
		t.Error("an IPv6 literal with a port, \"*\", or an empty list")
	}
	h := CompileHosts(list)
	if n := testing.AllocsPerRun(100, func() { h.Allowed([]byte("a.internal.example:80")) }); n != 0 {
		t.Errorf("Allowed allocates %.0f times", n)
	}
}

func TestSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512MiB": 512 << 20, "1GiB": 1 << 30, "200MB": 200e6, "4096": 4096, "10 KiB": 10 << 10} {
		s, err := ParseSize(in)
		if err != nil || s.Bytes != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, s.Bytes, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "1.5GiB", "12 parsecs"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	if s := (Size{512 << 20}).String(); s != "512MiB" {
		t.Errorf("String = %s", s)
	}
}

// A programmatic config keeps its values; only zero values get defaults.
func TestProgrammaticConfigKeepsValues(t *testing.T) {
	c := Default()
	c.Worker.Command = []string{"app", "{socket}"}
	c.Warmup.Requests = []WarmupRequest{{Path: "/", Repeat: 4}, {Path: "/b", Method: "post"}}
	l := c.Loaded()
	r := l.Config.Warmup.Requests
	if r[0].Repeat != 4 || r[0].Method != "GET" || r[1].Repeat != 1 || r[1].Method != "POST" {
		t.Fatalf("requests: %+v", r)
	}
	if got := l.WarmupSummary(); !strings.HasPrefix(got, "warm-up: ENABLED, 5 requests to 2 paths, concurrency 1") {
		t.Fatalf("summary: %s", got)
	}
}

// Both stages' problems are listed; a rule about a setting that failed to decode is left out.
func TestLoadAndValidateListsBothStages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.toml")
	os.WriteFile(path, []byte("[worker]\ncommand = [\"app\"]\ncount = \"x\"\nsurge = 0\n[[warmup.request]]\npath = \"/\"\n"), 0o600)
	_, err := LoadAndValidate(Layers{Files: []string{path}})
	var msgs []string
	for _, e := range unjoin(err) {
		msgs = append(msgs, strings.ReplaceAll(e.Error(), path, "w.toml"))
	}
	want := []string{
		`w.toml:3: worker.count: want an integer, got the string "x"`,
		`worker.command = ["app"] (w.toml:2) uses neither {socket} nor {port}, so a worker cannot be told where to listen: add one, or set worker.listen = "port" for an app that reads $PORT ("socket" for one that reads $WARMPOOL_SOCKET)`,
	}
	if !slices.Equal(msgs, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}
}

func TestTrustedPrefixes(t *testing.T) {
	p := Proxy{TrustedProxies: []string{"10.1.2.3", "::1", "::ffff:192.0.2.1", "10.1.2.3/8", "2001:db8::/32"}}
	got, err := p.TrustedPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.1.2.3/32", "::1/128", "192.0.2.1/32", "10.0.0.0/8", "2001:db8::/32"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("%q: got %s, want %s", p.TrustedProxies[i], got[i], want[i])
		}
	}
}

// BenchmarkParseManyRequests loads a plan of 10000 warm-up requests; the time per request
// stays flat as the plan grows (line numbers were once found by rescanning the document per
// key: 100k requests took over a minute).
func BenchmarkParseManyRequests(b *testing.B) {
	var doc strings.Builder
	doc.WriteString("[worker]\ncommand = [\"app\", \"{socket}\"]\n")
	for i := range 10000 {
		fmt.Fprintf(&doc, "[[warmup.request]]\npath = \"/p%d\"\n", i)
	}
	data := []byte(doc.String())
	for b.Loop() {
		if _, err := Parse("w.toml", data); err != nil {
			b.Fatal(err)
		}
	}
}

// A reload that changes a setting bound at start is refused naming each one; the rest reload.
func TestRestartNeededNamesSettingsBoundAtStart(t *testing.T) {
	running, errs := load(t, "listen = \"127.0.0.1:8080\"\n"+minimal, nil, nil)
	if errs != nil {
		t.Fatal(errs)
	}
	same, _ := load(t, "listen = \"127.0.0.1:8080\"\n"+minimal, []string{"WARMPOOL_WORKER_COUNT=5"}, nil)
	if got := same.RestartNeeded(&running.Config); len(got) != 0 {
		t.Fatalf("worker.count is not bound at start: %v", got)
	}
	next, _ := load(t, "listen = \"127.0.0.1:8081\"\n"+minimal, []string{"WARMPOOL_PROXY_MAX_HEADER_BYTES=64KiB"}, nil)
	var got []string
	for _, err := range next.RestartNeeded(&running.Config) {
		got = append(got, err.Error())
	}
	want := []string{
		`listen changed from "127.0.0.1:8080" to "127.0.0.1:8081" (`,
		`proxy.max_header_bytes changed from "32KiB" to "64KiB" (env WARMPOOL_PROXY_MAX_HEADER_BYTES), but it is bound at start: restart warmpool to change it`,
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], want[0]) || got[1] != want[1] {
		t.Fatalf("got %q", got)
	}
	for _, key := range []string{"listen", "admin_listen", "tls_cert", "worker.socket_dir", "telemetry.access_log", "proxy.max_header_bytes"} {
		if !BoundAtStart(key) {
			t.Errorf("%s is not bound at start", key)
		}
	}
}

// The post-mortem's mistakes are warned about: a warm-up without Host, an expect that accepts
// a 4xx or 5xx; a request that names its Host and expects success is not.
func TestWarmupAdvice(t *testing.T) {
	l, errs := load(t, "[worker]\ncommand = [\"app\", \"{socket}\"]\n[[warmup.request]]\npath = \"/report\"\nexpect = [200, 400]\n"+
		"[[warmup.request]]\npath = \"/ok\"\nheaders = { host = \"app.example.com\" }\n", nil, nil)
	if errs != nil {
		t.Fatal(errs)
	}
	w := strings.Join(l.Warnings(), "\n")
	for _, want := range []string{
		"warm-up request GET /report (", "sends no Host header, so it goes out as Host: localhost",
		"warm-up request GET /report accepts status 400 (warmup.request[0].expect,",
	} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	if strings.Contains(w, "/ok") {
		t.Errorf("a request with a Host and a 2xx expect is warned about:\n%s", w)
	}
}

// A command or worker.dir missing on this machine is warned about at check time.
func TestMissingCommandIsWarned(t *testing.T) {
	for doc, want := range map[string]string{
		"[worker]\ncommand = [\"no-such-app-xyz\", \"{socket}\"]\n":                                `"no-such-app-xyz" is not on this machine's PATH`,
		"[worker]\ncommand = [\"./missing.sh\", \"{socket}\"]\n":                                   `"./missing.sh" is not found on this machine`,
		"[worker]\ncommand = [\"sh\", \"{socket}\"]\ndir = \"/no/such/dir\"\n":                     `worker.dir = "/no/such/dir" (`,
		"[worker.python]\napp = \"site.wsgi:application\"\nexecutable = \"/no/venv/bin/python\"\n": `"/no/venv/bin/python" is not found on this machine`,
	} {
		l, errs := load(t, doc+"[[warmup.request]]\npath = \"/\"\nheaders = { Host = \"a.example\" }\n", nil, nil)
		if errs != nil {
			t.Fatal(errs)
		}
		if w := strings.Join(l.Warnings(), "\n"); !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	l, _ := load(t, "[worker]\ncommand = [\"sh\", \"{socket}\"]\n[[warmup.request]]\npath = \"/\"\nheaders = { Host = \"a.example\" }\n", nil, nil)
	if w := l.Warnings(); len(w) != 0 {
		t.Errorf("sh is found: %q", w)
	}
}

// Durations in JSON logs read as in text logs ("1.5s"), not as nanoseconds.
func TestJSONLogsWriteDurationsAsText(t *testing.T) {
	for _, format := range []string{LogJSON, LogText} {
		c := Default()
		c.LogFormat = format
		var b strings.Builder
		c.NewLogger(&b).Info("x", "took", 1500*time.Millisecond, "group", slog.GroupValue(slog.Duration("inner", time.Minute)))
		if !strings.Contains(b.String(), "1.5s") || !strings.Contains(b.String(), "1m0s") || strings.Contains(b.String(), "1500000000") {
			t.Errorf("%s: %s", format, b.String())
		}
	}
}

// A worker command's --threads and worker.concurrency are one number written twice: check
// warns when they differ.
func TestCheckWarnsWhenThreadsAndConcurrencyDiffer(t *testing.T) {
	for _, tc := range []struct {
		command     []string
		concurrency int
		warn        bool
	}{
		{[]string{"gunicorn", "--bind", "unix:{socket}", "--threads", "4", "app.wsgi"}, 4, false},
		{[]string{"gunicorn", "--bind", "unix:{socket}", "--threads", "8", "app.wsgi"}, 4, true},
		{[]string{"waitress-serve", "--unix-socket={socket}", "--threads=2", "app:app"}, 4, true},
		{[]string{"uvicorn", "--uds", "{socket}", "app:app"}, 4, false},
	} {
		cfg := Default()
		cfg.Worker.Command, cfg.Worker.Concurrency = tc.command, tc.concurrency
		warned := false
		for _, w := range cfg.Loaded().Warnings() {
			warned = warned || strings.Contains(w, "threads per worker")
		}
		if warned != tc.warn {
			t.Errorf("%v with concurrency %d: warned %v", tc.command, tc.concurrency, warned)
		}
	}
}
