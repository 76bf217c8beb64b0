package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Config is the whole warmpool configuration. The zero value is not useful; start from Default.
type Config struct {
	// Listen is the public HTTP front, "host:port".
	Listen string `toml:"listen" reload:"restart"`
	// AdminListen serves /readyz, /livez and /status; never the public listener.
	AdminListen string `toml:"admin_listen" reload:"restart"`
	// TLSCert and TLSKey, when both set, make the front serve HTTPS (and HTTP/2).
	TLSCert string `toml:"tls_cert" reload:"restart"`
	TLSKey  string `toml:"tls_key" reload:"restart"`
	// AdminTokenFile names a file holding the admin token (never the token itself: a config
	// file is no place for a secret; WARMPOOL_ADMIN_TOKEN in the environment works too). With
	// a token, everything on the admin listener but /livez, /readyz and the status page's HTML
	// needs Authorization: Bearer <token>.
	AdminTokenFile string `toml:"admin_token_file" reload:"restart"`
	// AdminMetricsOpen serves /metrics without the token, for a Prometheus that cannot send it.
	AdminMetricsOpen bool `toml:"admin_metrics_open" reload:"restart"`
	// AdminPprof serves Go's profiles on /debug/pprof/; off by default.
	AdminPprof bool `toml:"admin_pprof" reload:"restart"`
	// AdminInsecure allows an admin_listen off loopback without a token, said explicitly.
	AdminInsecure bool `toml:"admin_insecure" reload:"restart"`
	// MinReady is how many ready workers /readyz needs once the pool was first fully ready.
	MinReady int `toml:"min_ready"`
	// ShutdownDelay is how long warmpool keeps serving after SIGTERM, with /readyz already
	// answering 503, before it stops accepting: load balancers and Kubernetes endpoints need a
	// few seconds to stop sending. 0: stop accepting at once.
	ShutdownDelay Duration `toml:"shutdown_delay"`
	// LogLevel is the least severe level warmpool logs: "debug", "info", "warn" or "error".
	LogLevel string `toml:"log_level" reload:"restart"`
	// LogFormat is "text" (logfmt-like lines) or "json" (one object per line).
	LogFormat string `toml:"log_format" reload:"restart"`

	Worker    Worker    `toml:"worker"`
	Warmup    Warmup    `toml:"warmup"`
	Proxy     Proxy     `toml:"proxy"`
	Telemetry Telemetry `toml:"telemetry"`
}

// Telemetry makes cold starts visible.
type Telemetry struct {
	// ColdWindow is how many first client requests of each worker are labelled first_requests.
	ColdWindow int `toml:"cold_window"`
	// WarmupCheckFactor and WarmupCheckFloor: a new worker's first request to a path slower
	// than the pool's steady median for it by both this factor and this margin is reported as
	// a path the warm-up plan did not cover.
	WarmupCheckFactor float64  `toml:"warmup_check_factor"`
	WarmupCheckFloor  Duration `toml:"warmup_check_floor"`
	// AccessLog is "off", "stdout" or a file path.
	AccessLog string `toml:"access_log" reload:"restart"`
	// AccessLogFormat is "json" (one object per line) or "combined" (nginx's and gunicorn's
	// text line, with warmpool's fields after it).
	AccessLogFormat string `toml:"access_log_format" reload:"restart"`
	// OTLPEndpoint turns tracing on: spans go over OTLP/HTTP to this URL
	// ("http://127.0.0.1:4318"; the path defaults to /v1/traces). Empty: no tracing.
	OTLPEndpoint string `toml:"otlp_endpoint" reload:"restart"`
	// ServiceName is the service.name of warmpool's spans.
	ServiceName string `toml:"service_name" reload:"restart"`
	// TraceSampleRatio is the share of new traces recorded; a client's sampled flag is followed.
	TraceSampleRatio float64 `toml:"trace_sample_ratio" reload:"restart"`
}

// Worker describes the worker processes and when they are recycled.
type Worker struct {
	// Command is the argv template; "{socket}" or "{port}" is replaced per worker.
	Command []string `toml:"command"`
	// Python runs a WSGI or ASGI app in workers forked from a warm template, instead of Command.
	Python Python `toml:"python"`
	// Dir is the working directory of the workers; empty means warmpool's own.
	Dir string `toml:"dir"`
	// Env adds or overrides environment variables of the workers.
	Env map[string]string `toml:"env"`
	// SocketDir holds the per-worker sockets; empty means a private temporary directory.
	SocketDir string `toml:"socket_dir" reload:"restart"`
	// Listen says where a worker listens when its command has no placeholder: "port" (it
	// reads $PORT, as Node, Rails and Heroku-style apps do) or "socket" (it reads
	// $WARMPOOL_SOCKET). Empty: the command's {socket} or {port} says.
	Listen string `toml:"listen"`
	// LogOutput is how the workers' stdout and stderr lines reach warmpool's log: "info",
	// "debug" (hidden unless log_level = "debug") or "off". A Python traceback is one record.
	LogOutput string `toml:"log_output"`

	Count       int `toml:"count"`
	Concurrency int `toml:"concurrency"`

	MaxRequests       int `toml:"max_requests"`
	MaxRequestsJitter int `toml:"max_requests_jitter"`
	// MaxRequestsCeiling is the multiple of a worker's max_requests past which it is drained
	// even though its replacement is not ready (the pool serves with one worker less meanwhile);
	// 0: it serves until its replacement is admitted, however long that takes.
	MaxRequestsCeiling float64  `toml:"max_requests_ceiling"`
	MaxLifetime        Duration `toml:"max_lifetime"`
	MaxLifetimeJitter  Duration `toml:"max_lifetime_jitter"`
	MaxRSS             Size     `toml:"max_rss"`
	RSSCheckInterval   Duration `toml:"rss_check_interval"`

	Surge           int      `toml:"surge"`
	GracefulTimeout Duration `toml:"graceful_timeout"`

	// RestartBackoff is the first delay after a failed start or warm-up; it doubles per
	// consecutive failure up to RestartBackoffMax.
	RestartBackoff    Duration `toml:"restart_backoff"`
	RestartBackoffMax Duration `toml:"restart_backoff_max"`
}

// Python is the [worker.python] table: a Python app whose workers are forked from a warm
// template process (internal/pyfork).
type Python struct {
	// App is the app's "module:callable", imported from worker.dir.
	App string `toml:"app"`
	// Interface is "wsgi" (served by waitress) or "asgi" (served by uvicorn).
	Interface string `toml:"interface"`
	// Executable is the interpreter of the app's environment (a virtualenv's bin/python).
	Executable string `toml:"executable"`
	// PostFork is a "module:callable" called in each worker process before it serves.
	PostFork string `toml:"post_fork"`
	// PreFork is a "module:callable" called once in the template, after its warm-up and before
	// its first fork: the place to close what must not be shared.
	PreFork string `toml:"pre_fork"`
	// Lifespan is where an ASGI app's lifespan runs: "template" (once per template generation;
	// forked workers inherit what its startup made, and run neither startup nor shutdown) or
	// "worker" (in every worker process, for an app whose lifespan opens per-process resources).
	Lifespan string `toml:"lifespan"`
	// AllowInheritedSockets names connections the template may hold when it forks (their peer:
	// "host:port", or a unix socket's path): every worker then shares them. Any other
	// connected socket keeps the template from forking.
	AllowInheritedSockets []string `toml:"allow_inherited_sockets"`
	// Preload lists modules the template imports after the app, before its warm-up: the
	// modules its workers would otherwise import on their first requests (what `warmpool
	// learned` prints). One that fails to import fails the template, as the app would.
	Preload []string `toml:"preload"`
}

// Where an ASGI app's lifespan runs.
const (
	LifespanTemplate = "template"
	LifespanWorker   = "worker"
)

// Python interfaces.
const (
	InterfaceWSGI = "wsgi"
	InterfaceASGI = "asgi"
)

// IsPython reports whether the workers are a Python app forked from a template.
func (w *Worker) IsPython() bool { return w.Python.App != "" }

// Warmup is the plan each new worker runs privately before it is admitted into rotation.
type Warmup struct {
	// Enabled false admits a worker as soon as it accepts connections (what other servers do).
	Enabled bool `toml:"enabled"`
	// Timeout bounds the whole boot of a worker: spawn, ready signal and every warm-up request.
	Timeout Duration `toml:"timeout"`
	// Concurrency is how many warm-up requests are in flight at once; 0 means worker.concurrency.
	Concurrency int `toml:"concurrency"`
	// Ready is "requests" (wait for the socket to accept) or "notify" (wait for READY=1 first).
	Ready string `toml:"ready"`
	// Nice lowers a new worker's CPU priority (nice value, 0-19) until its warm-up passed, so
	// warming it takes little CPU from the workers serving traffic; a replacement that is not
	// needed yet boots in the idle class instead (pool.bootPriority). 0 turns both off.
	Nice int `toml:"nice"`
	// Learn lets traffic extend the warm-up: paths new workers met cold become learned warm-up
	// requests (run after Requests), and, for a Python app, the modules forked workers import
	// after their fork are imported by the next template (internal/learn).
	Learn bool `toml:"learn"`
	// LearnState is the file that keeps what was learned across restarts: "" means the default
	// place (learn.DefaultStatePath), "off" keeps it in memory only.
	LearnState string          `toml:"learn_state" reload:"restart"`
	Requests   []WarmupRequest `toml:"request"`
}

// WarmupRequest is one request of the warm-up plan.
type WarmupRequest struct {
	Method  string            `toml:"method"`
	Path    string            `toml:"path"`
	Headers map[string]string `toml:"headers"`
	Body    string            `toml:"body"`
	// Expect lists the accepted statuses; empty accepts any 2xx.
	Expect []int `toml:"expect"`
	// Repeat sends the request this many times, to reach every thread of the worker.
	Repeat int `toml:"repeat"`
}

// Proxy tunes the HTTP front.
type Proxy struct {
	// QueueSize is how many requests may wait for a free worker; past it, 503.
	QueueSize int `toml:"queue_size"`
	// QueueTimeout is how long a request may wait for a free worker; past it, 503.
	QueueTimeout Duration `toml:"queue_timeout"`
	// RequestTimeout is how long a worker may take to send response headers; past it, 504.
	RequestTimeout Duration `toml:"request_timeout"`
	// SendTimeout is how long a write of a response may wait for the client to read; past it,
	// the client's connection is closed, so that a client that stops reading cannot hold a
	// worker (nginx's send_timeout).
	SendTimeout Duration `toml:"send_timeout"`
	// ClientBodyTimeout is how long a client may go without sending any of its request body
	// (nginx's client_body_timeout); past it, 408. The body is read whole before a worker is
	// leased, so a slow upload holds no worker.
	ClientBodyTimeout Duration `toml:"client_body_timeout"`
	// MaxBodySize is the largest request body accepted; past it, 413 (nginx's
	// client_max_body_size). Bodies over 64 KiB wait in a temporary file, not in memory.
	MaxBodySize Size `toml:"max_body_size"`
	// MaxBufferedResponse bounds how much of one response waits for a slow client (memory up
	// to 64 KiB, then an unlinked temporary file), so that the worker is released when it has
	// sent its response; past it, the worker waits for the client. 0 turns buffering off.
	MaxBufferedResponse Size `toml:"max_buffered_response"`
	// MaxHeaderBytes bounds a request's head (request line and fields); past it, 431.
	MaxHeaderBytes Size `toml:"max_header_bytes" reload:"restart"`
	// AllowedHosts, when set, is the front's host allow-list: requests with another Host get
	// 400. Entries are exact names, ".example.com" for a domain and its subdomains, or "*".
	AllowedHosts []string `toml:"allowed_hosts"`
	// TrustedProxies are the peers (addresses or CIDR prefixes) whose forwarding headers
	// (X-Forwarded-Proto, -Host, Forwarded, ...) reach the worker as sent. From any other peer
	// those headers are removed, so no client can claim https or another host.
	TrustedProxies []string `toml:"trusted_proxies"`
	// UnderscoreHeaders is "drop" (request fields with '_' in the name are removed, as nginx
	// does by default: CGI and WSGI would read X_Forwarded_Proto as X-Forwarded-Proto) or
	// "pass".
	UnderscoreHeaders string `toml:"underscore_headers"`
	// Harakiri, when set, is the hard limit: a worker still not answering a request this long
	// after it was sent is killed and replaced warm. It must exceed RequestTimeout.
	Harakiri Duration `toml:"harakiri"`
}

// TrustedPrefixes parses TrustedProxies: an address stands for itself alone.
func (p *Proxy) TrustedPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range p.TrustedProxies {
		pfx, err := parsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, pfx)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is no CIDR prefix such as \"10.0.0.0/8\"", s)
		}
		return pfx.Masked(), nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is no IP address or CIDR prefix such as \"10.0.0.0/8\"", s)
	}
	addr = addr.Unmap()
	return netip.PrefixFrom(addr, addr.BitLen()), nil
}

// Worker.Listen values.
const (
	ListenSocket = "socket"
	ListenPort   = "port"
)

// LogFormat values.
const (
	LogText = "text"
	LogJSON = "json"
)

// Proxy.UnderscoreHeaders values.
const (
	UnderscoreDrop = "drop"
	UnderscorePass = "pass"
)

// Ready modes.
const (
	ReadyRequests = "requests"
	ReadyNotify   = "notify"
)

// Default returns the configuration used for every key the operator leaves out.
func Default() Config {
	return Config{
		Listen:      "127.0.0.1:8080",
		AdminListen: "127.0.0.1:9090",
		MinReady:    1,
		LogLevel:    "info",
		LogFormat:   LogText,
		Worker: Worker{
			Count:              2,
			Concurrency:        1,
			Surge:              1,
			RSSCheckInterval:   Duration{5 * time.Second},
			GracefulTimeout:    Duration{30 * time.Second},
			MaxRequestsCeiling: 2,
			RestartBackoff:     Duration{500 * time.Millisecond},
			RestartBackoffMax:  Duration{30 * time.Second},
			LogOutput:          "info",
			Python:             Python{Interface: InterfaceWSGI, Executable: "python3", Lifespan: LifespanTemplate},
		},
		Warmup: Warmup{
			Enabled: true,
			Timeout: Duration{60 * time.Second},
			Ready:   ReadyRequests,
			Nice:    10,
			Learn:   true,
		},
		Proxy: Proxy{
			QueueSize:           1024,
			QueueTimeout:        Duration{10 * time.Second},
			RequestTimeout:      Duration{60 * time.Second},
			SendTimeout:         Duration{60 * time.Second},
			ClientBodyTimeout:   Duration{60 * time.Second},
			MaxBodySize:         Size{100 << 20},
			MaxHeaderBytes:      Size{32 << 10},
			MaxBufferedResponse: Size{1 << 30},
			UnderscoreHeaders:   UnderscoreDrop,
		},
		Telemetry: Telemetry{
			ColdWindow:        3,
			WarmupCheckFactor: 5,
			WarmupCheckFloor:  Duration{50 * time.Millisecond},
			AccessLog:         "off",
			AccessLogFormat:   "json",
			ServiceName:       "warmpool",
			TraceSampleRatio:  1,
		},
	}
}

// WarmupConcurrency is the effective number of warm-up requests in flight at once.
func (c *Config) WarmupConcurrency() int {
	if c.Warmup.Concurrency > 0 {
		return c.Warmup.Concurrency
	}
	return c.Worker.Concurrency
}

// Recycling reports whether any recycle trigger is configured.
func (w *Worker) Recycling() bool {
	return w.MaxRequests > 0 || w.MaxLifetime.Duration > 0 || w.MaxRSS.Bytes > 0
}
