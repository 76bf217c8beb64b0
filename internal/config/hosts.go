package config

import (
	"bytes"
	"strings"
)

// Hosts is proxy.allowed_hosts compiled for matching: exact names, ".example.com" for a domain
// and its subdomains, or "*" for any. It is built once, not per request.
type Hosts struct {
	any      bool
	exact    map[string]bool
	suffixes [][]byte // ".example.com"
}

// CompileHosts compiles an allow-list; nil for an empty one (every host is allowed).
func CompileHosts(allowed []string) *Hosts {
	if len(allowed) == 0 {
		return nil
	}
	h := &Hosts{exact: map[string]bool{}}
	for _, a := range allowed {
		a = strings.ToLower(a)
		switch {
		case a == "*":
			h.any = true
		case strings.HasPrefix(a, "."):
			h.exact[a[1:]] = true
			h.suffixes = append(h.suffixes, []byte(a))
		default:
			h.exact[a] = true
		}
	}
	return h
}

// Allowed reports whether host (with or without port, any case) matches; a nil Hosts allows
// every host. It allocates nothing for a host already in lower case.
func (h *Hosts) Allowed(host []byte) bool {
	if h == nil || h.any {
		return true
	}
	host = hostOnly(host)
	host = bytes.TrimSuffix(host, []byte("."))
	if hasUpper(host) {
		host = bytes.ToLower(host)
	}
	if h.exact[string(host)] {
		return true
	}
	for _, s := range h.suffixes {
		if bytes.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// hostOnly strips a port: "[::1]:80" -> "::1", "a.example:80" -> "a.example".
func hostOnly(host []byte) []byte {
	if len(host) > 0 && host[0] == '[' {
		if i := bytes.IndexByte(host, ']'); i > 0 {
			return host[1:i]
		}
		return host
	}
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && bytes.IndexByte(host[:i], ':') < 0 {
		return host[:i]
	}
	return host
}

func hasUpper(b []byte) bool {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}
