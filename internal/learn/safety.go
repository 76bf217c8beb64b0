package learn

import (
	"bytes"
	"net/http"
	"strings"

	"warmpool/internal/config"
	"warmpool/internal/h1"
)

// Bounds on what is learned: a hostile or merely varied traffic grows nothing without limit.
const (
	// MaxRequests is how many learned requests run in a warm-up, the most costly first.
	MaxRequests = 16
	// MaxModules is how many learned modules a template imports.
	MaxModules = 2000
	maxPaths   = 1024 // paths observed; more are ignored
	maxTracked = 8192 // module names observed; more are ignored
	maxPathLen = 512
	maxNameLen = 200
)

// credentialWords are parts of header names that carry credentials (X-Api-Key, X-Auth-Token,
// X-Session-Id, X-Amz-Security-Token, X-Hub-Signature).
var credentialWords = [][]byte{[]byte("auth"), []byte("token"), []byte("key"), []byte("session"),
	[]byte("secret"), []byte("password"), []byte("signature"), []byte("csrf")}

// IsCredentialHeader reports whether a request header named name carries credentials: Cookie,
// Authorization, Proxy-Authorization, or any name with a word of credentialWords in it. A
// request with one is never learned.
func IsCredentialHeader(name []byte) bool {
	if h1.EqualFold(name, "cookie") {
		return true
	}
	var lower [64]byte
	if len(name) > len(lower) {
		return true // no header of ours is this long: suspicious enough
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	l := lower[:len(name)]
	for _, w := range credentialWords {
		if bytes.Contains(l, w) {
			return true
		}
	}
	return false
}

// CarriesCredentials reports whether h has a credential header (IsCredentialHeader).
func CarriesCredentials(h http.Header) bool {
	for name := range h {
		if IsCredentialHeader([]byte(name)) {
			return true
		}
	}
	return false
}

// learnablePath says why a path may not become a learned request ("" when it may): it must be
// an absolute path of printable ASCII, and none of its segments may look like a secret (a
// password-reset or unsubscribe token, a signed link).
func learnablePath(path string) string {
	if path == "" || path[0] != '/' || len(path) > maxPathLen {
		return "not a short absolute path"
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= ' ' || c >= 0x7f {
			return "has bytes outside printable ASCII"
		}
	}
	for seg := range strings.SplitSeq(path, "/") {
		if looksLikeToken(seg) {
			return "a segment looks like a token (" + seg[:4] + "...)"
		}
	}
	return ""
}

// looksLikeToken: a segment with a long run of letters and digits mixed (tokens, hashes, signed
// ids), or a UUID (it names one object, not a route). A slug ("annual-report-2024") is neither.
func looksLikeToken(seg string) bool {
	run, letters, digits, hex := 0, false, false, 0
	for i := 0; i <= len(seg); i++ {
		var c byte
		if i < len(seg) {
			c = seg[i]
		}
		isDigit, isLetter := c >= '0' && c <= '9', c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if isDigit || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' {
			hex++
		}
		if isDigit || isLetter {
			run++
			letters, digits = letters || isLetter, digits || isDigit
			continue
		}
		if run >= 16 && letters && digits {
			return true
		}
		run, letters, digits = 0, false, false
	}
	return hex >= 32 && len(seg) <= 36+4
}

// learnableMethod: only GET and HEAD are replayed; they change nothing on a well-behaved app.
func learnableMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }

// validModule reports whether name can be a module a template imports.
func validModule(name string) bool {
	return len(name) <= maxNameLen && config.PythonDotted(name) && !strings.HasPrefix(name, "__main__")
}
