package proxy

import (
	"net"
	"net/netip"
	"strings"

	"warmpool/internal/h1"
)

// Forwarding headers tell an app what the client saw: its address, scheme, host and port.
// Frameworks believe them (gunicorn's secure_scheme_headers, Django's SECURE_PROXY_SSL_HEADER,
// Werkzeug's ProxyFix, Rails), so a client must not be able to send its own: from a peer outside
// proxy.trusted_proxies they are removed; from a trusted one (the load balancer in front) they
// pass as sent. warmpool adds only what the worker cannot see otherwise: the client's address
// at the end of X-Forwarded-For, and X-Forwarded-Proto: https when warmpool ended TLS. Host
// passes unchanged, so no X-Forwarded-Host is added.
var forwardingHeaders = []string{
	"Forwarded", "X-Real-Ip", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
	"X-Forwarded-Prefix", "X-Forwarded-Ssl", "X-Forwarded-Protocol", "X-Forwarded-Scheme", "Front-End-Https",
}

// forwardingHeadersLower is forwardingHeaders in lower case, as h1.EqualFold compares.
var forwardingHeadersLower = func() []string {
	out := make([]string, len(forwardingHeaders))
	for i, h := range forwardingHeaders {
		out[i] = strings.ToLower(h)
	}
	return out
}()

// isForwardingHeader reports a forwarding header's name other than X-Forwarded-For, in any
// case, without allocating.
func isForwardingHeader(name []byte) bool {
	switch len(name) {
	case 9, 15, 16, 17, 18, 20:
		for _, h := range forwardingHeadersLower {
			if len(h) == len(name) && h1.EqualFold(name, h) {
				return true
			}
		}
	}
	return false
}

// trustedPeer reports that addr, a client's "ip:port" or ip, is in one of the prefixes.
func trustedPeer(prefixes []netip.Prefix, addr string) bool {
	if len(prefixes) == 0 {
		return false // and no parsing
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return false
		}
		ip = ap.Addr()
	}
	return trustedAddr(prefixes, ip)
}

func trustedAddr(prefixes []netip.Prefix, ip netip.Addr) bool {
	if len(prefixes) == 0 {
		return false
	}
	ip = ip.Unmap()
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// forwardedFor is the X-Forwarded-For value for the worker: the client's chain, then the
// client's address.
func forwardedFor(prior []string, remoteAddr string) string {
	client, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		client = remoteAddr
	}
	if len(prior) == 0 {
		return client
	}
	return strings.Join(prior, ", ") + ", " + client
}
