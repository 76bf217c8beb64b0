package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseFullExample(t *testing.T) {
	cfg, err := Parse("warmpool.toml", []byte(`
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
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid example rejected: %v", err)
	}
	if cfg.Worker.MaxRSS.Bytes != 512<<20 || cfg.Worker.MaxLifetime.Duration != time.Hour || cfg.Warmup.Ready != ReadyNotify {
		t.Fatalf("decoded wrong: %+v", cfg.Worker)
	}
	r := cfg.Warmup.Requests
	if r[0].Method != "GET" || r[1].Method != "GET" || r[1].Repeat != 1 || r[0].Headers["Host"] != "app.example.com" {
		t.Fatalf("request defaults: %+v", r)
	}
	if !cfg.Worker.UsesSocket() || cfg.Worker.UsesPort() {
		t.Fatal("placeholder detection")
	}
}

func TestParseErrorsNameFileLineAndKey(t *testing.T) {
	cases := []struct{ doc, want string }{
		{"[worker]\ncount = 2\nmax_request = 5\n", `w.toml:3: unknown key "worker.max_request"`},
		{"[worker]\ngraceful_timeout = \"30 seconds\"\n", `w.toml:2`},
		{"[worker]\ngraceful_timeout = \"30 seconds\"\n", `want a number with a unit`},
		{"[worker]\nmax_rss = \"lots\"\n", `invalid size "lots"`},
		{"[worker]\ncount = \"two\"\n", `w.toml:2`},
		{"listen = \n", `w.toml:1`},
	}
	for _, c := range cases {
		_, err := Parse("w.toml", []byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to contain %q", c.doc, err, c.want)
		}
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

func valid() Config {
	c := Default()
	c.Worker.Command = []string{"app", "{socket}"}
	return c
}

func TestValidateRules(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no command", func(c *Config) { c.Worker.Command = nil }, "worker.command: must be set"},
		{"both placeholders", func(c *Config) { c.Worker.Command = []string{"x", "{socket}", "{port}"} }, "uses both {socket} and {port}"},
		{"no placeholder", func(c *Config) { c.Worker.Command = []string{"x"} }, "uses neither {socket} nor {port}"},
		{"same listeners", func(c *Config) { c.AdminListen = c.Listen }, "admin_listen: is the same address as listen"},
		{"jitter at base", func(c *Config) { c.Worker.MaxRequests, c.Worker.MaxRequestsJitter = 100, 100 }, "worker.max_requests_jitter: is 100; must be below worker.max_requests (100)"},
		{"lifetime jitter", func(c *Config) {
			c.Worker.MaxLifetime, c.Worker.MaxLifetimeJitter = Duration{time.Minute}, Duration{time.Hour}
		}, "worker.max_lifetime_jitter"},
		{"surge above count", func(c *Config) { c.Worker.Surge = 3 }, "worker.surge: is 3; must be between 1 and worker.count (2)"},
		{"surge zero", func(c *Config) { c.Worker.Surge = 0 }, "worker.surge: is 0"},
		{"warmup concurrency", func(c *Config) { c.Warmup.Concurrency = 8 }, "warmup.concurrency: is 8; must be between 0 (same as worker.concurrency) and worker.concurrency (1)"},
		{"requests while disabled", func(c *Config) {
			c.Warmup.Enabled = false
			c.Warmup.Requests = []WarmupRequest{{Method: "GET", Path: "/", Repeat: 1}}
		}, "warmup.request: 1 warm-up requests are given but warmup.enabled = false"},
		{"bad ready", func(c *Config) { c.Warmup.Ready = "socket" }, `warmup.ready: is "socket"`},
		{"bad path", func(c *Config) { c.Warmup.Requests = []WarmupRequest{{Method: "GET", Path: "healthz", Repeat: 1}} }, `warmup.request[0].path: is "healthz"; must start with /`},
		{"bad method", func(c *Config) { c.Warmup.Requests = []WarmupRequest{{Method: "FETCH", Path: "/", Repeat: 1}} }, `warmup.request[0].method`},
		{"bad expect", func(c *Config) {
			c.Warmup.Requests = []WarmupRequest{{Method: "GET", Path: "/", Repeat: 1, Expect: []int{42}}}
		}, "warmup.request[0].expect: has 42"},
		{"harakiri below timeout", func(c *Config) { c.Proxy.Harakiri = Duration{time.Second} }, "proxy.harakiri: is 1s; must be above proxy.request_timeout (1m0s)"},
		{"tls half", func(c *Config) { c.TLSCert = "cert.pem" }, "tls_cert and tls_key must be set together"},
		{"min_ready", func(c *Config) { c.MinReady = 3 }, "min_ready: is 3; must be between 1 and worker.count (2)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	c := valid()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults with a command must be valid: %v", err)
	}
	// Every problem is reported, not only the first.
	c.Worker.Count, c.Worker.Concurrency = 0, 0
	if err := c.Validate(); strings.Count(err.Error(), "\n") < 2 {
		t.Fatalf("want several errors, got %v", err)
	}
}
