package config

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Placeholders in worker.command.
const (
	SocketPlaceholder = "{socket}"
	PortPlaceholder   = "{port}"
)

// Validate returns every problem found, joined; nil when the config can run.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Listen == "" {
		bad("listen", "must be set (host:port)")
	}
	if c.AdminListen == "" {
		bad("admin_listen", "must be set (host:port)")
	}
	if c.Listen != "" && c.Listen == c.AdminListen && !strings.HasSuffix(c.Listen, ":0") {
		bad("admin_listen", "is the same address as listen (%s); the admin endpoints never share the public listener", c.Listen)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls_cert", "tls_cert and tls_key must be set together")
	}
	if c.MinReady < 1 || c.MinReady > c.Worker.Count {
		bad("min_ready", "is %d; must be between 1 and worker.count (%d)", c.MinReady, c.Worker.Count)
	}

	w := &c.Worker
	if len(w.Command) == 0 {
		bad("worker.command", "must be set: the argv of a worker, with %s or %s", SocketPlaceholder, PortPlaceholder)
	} else {
		socket, port := w.UsesSocket(), w.UsesPort()
		switch {
		case socket && port:
			bad("worker.command", "uses both %s and %s; use one", SocketPlaceholder, PortPlaceholder)
		case !socket && !port:
			bad("worker.command", "uses neither %s nor %s, so a worker cannot be told where to listen", SocketPlaceholder, PortPlaceholder)
		}
	}
	if w.Count < 1 {
		bad("worker.count", "is %d; must be at least 1", w.Count)
	}
	if w.Concurrency < 1 {
		bad("worker.concurrency", "is %d; must be at least 1", w.Concurrency)
	}
	if w.MaxRequests < 0 {
		bad("worker.max_requests", "is %d; must be 0 (never) or more", w.MaxRequests)
	}
	if w.MaxRequestsJitter < 0 || (w.MaxRequestsJitter > 0 && w.MaxRequestsJitter >= w.MaxRequests) {
		bad("worker.max_requests_jitter", "is %d; must be below worker.max_requests (%d)", w.MaxRequestsJitter, w.MaxRequests)
	}
	if w.MaxLifetimeJitter.Duration > 0 && w.MaxLifetimeJitter.Duration >= w.MaxLifetime.Duration {
		bad("worker.max_lifetime_jitter", "is %s; must be below worker.max_lifetime (%s)", w.MaxLifetimeJitter, w.MaxLifetime)
	}
	if w.MaxRSS.Bytes > 0 && w.RSSCheckInterval.Duration <= 0 {
		bad("worker.rss_check_interval", "must be above 0 when worker.max_rss is set")
	}
	if w.Surge < 1 || w.Surge > w.Count {
		bad("worker.surge", "is %d; must be between 1 and worker.count (%d)", w.Surge, w.Count)
	}
	if w.GracefulTimeout.Duration <= 0 {
		bad("worker.graceful_timeout", "must be above 0")
	}
	if w.RestartBackoff.Duration <= 0 || w.RestartBackoffMax.Duration < w.RestartBackoff.Duration {
		bad("worker.restart_backoff", "must be above 0 and at most worker.restart_backoff_max")
	}

	wu := &c.Warmup
	if wu.Timeout.Duration <= 0 {
		bad("warmup.timeout", "must be above 0")
	}
	if wu.Concurrency < 0 || wu.Concurrency > w.Concurrency {
		bad("warmup.concurrency", "is %d; must be between 0 (same as worker.concurrency) and worker.concurrency (%d)", wu.Concurrency, w.Concurrency)
	}
	if wu.Ready != ReadyRequests && wu.Ready != ReadyNotify {
		bad("warmup.ready", "is %q; must be %q or %q", wu.Ready, ReadyRequests, ReadyNotify)
	}
	if wu.Nice < 0 || wu.Nice > 19 {
		bad("warmup.nice", "is %d; must be between 0 (off) and 19", wu.Nice)
	}
	if !wu.Enabled && len(wu.Requests) > 0 {
		bad("warmup.request", "%d warm-up requests are given but warmup.enabled = false, so none would run", len(wu.Requests))
	}
	for i, r := range wu.Requests {
		key := fmt.Sprintf("warmup.request[%d]", i)
		if !strings.HasPrefix(r.Path, "/") {
			bad(key+".path", "is %q; must start with /", r.Path)
		}
		if !validMethod(r.Method) {
			bad(key+".method", "is %q; not an HTTP method", r.Method)
		}
		if r.Repeat < 1 {
			bad(key+".repeat", "is %d; must be at least 1", r.Repeat)
		}
		for _, s := range r.Expect {
			if s < 100 || s > 599 {
				bad(key+".expect", "has %d; not an HTTP status", s)
			}
		}
	}

	p := &c.Proxy
	if p.QueueSize < 0 {
		bad("proxy.queue_size", "is %d; must be 0 or more", p.QueueSize)
	}
	if p.RequestTimeout.Duration <= 0 {
		bad("proxy.request_timeout", "must be above 0")
	}
	if p.Harakiri.Duration > 0 && p.Harakiri.Duration <= p.RequestTimeout.Duration {
		bad("proxy.harakiri", "is %s; must be above proxy.request_timeout (%s)", p.Harakiri, p.RequestTimeout)
	}
	return errors.Join(errs...)
}

// UsesSocket reports whether the command template asks for a unix socket.
func (w *Worker) UsesSocket() bool { return templateHas(w.Command, SocketPlaceholder) }

// UsesPort reports whether the command template asks for a TCP port.
func (w *Worker) UsesPort() bool { return templateHas(w.Command, PortPlaceholder) }

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
