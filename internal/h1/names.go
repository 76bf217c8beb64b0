package h1

// Name identifies the fields whose meaning HTTP/1.1 fixes for a proxy: framing and hop-by-hop
// fields (RFC 9110 7.6.1), Host, Expect and Date. Everything else is NameOther.
type Name uint8

// The fields FieldName knows.
const (
	NameOther Name = iota
	NameHost
	NameContentLength
	NameTransferEncoding
	NameConnection
	NameUpgrade
	NameExpect
	NameTE
	NameTrailer
	NameKeepAlive
	NameProxyConnection
	NameProxyAuthenticate
	NameProxyAuthorization
	NameDate
)

// FieldName names a field, ignoring case, by its length first: most fields are none of these,
// and are told so after at most one comparison. It is the one table of these names for
// requests, responses and the proxy's rules.
func FieldName(name []byte) Name {
	switch len(name) {
	case 2:
		if equalFold(name, "te") {
			return NameTE
		}
	case 4:
		if equalFold(name, "host") {
			return NameHost
		}
		if equalFold(name, "date") {
			return NameDate
		}
	case 6:
		if equalFold(name, "expect") {
			return NameExpect
		}
	case 7:
		if equalFold(name, "upgrade") {
			return NameUpgrade
		}
		if equalFold(name, "trailer") {
			return NameTrailer
		}
	case 10:
		if equalFold(name, "connection") {
			return NameConnection
		}
		if equalFold(name, "keep-alive") {
			return NameKeepAlive
		}
	case 14:
		if equalFold(name, "content-length") {
			return NameContentLength
		}
	case 16:
		if equalFold(name, "proxy-connection") {
			return NameProxyConnection
		}
	case 17:
		if equalFold(name, "transfer-encoding") {
			return NameTransferEncoding
		}
	case 18:
		if equalFold(name, "proxy-authenticate") {
			return NameProxyAuthenticate
		}
	case 19:
		if equalFold(name, "proxy-authorization") {
			return NameProxyAuthorization
		}
	}
	return NameOther
}

// HopByHop reports the fields that concern one connection only and never pass a proxy (RFC
// 9110 7.6.1): Connection (and the fields it names, which the caller finds), Keep-Alive,
// Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, TE, Trailer, Transfer-Encoding and
// Upgrade. It is the one list of them, for requests and responses alike.
func (n Name) HopByHop() bool {
	switch n {
	case NameConnection, NameKeepAlive, NameProxyConnection, NameProxyAuthenticate, NameProxyAuthorization,
		NameTE, NameTrailer, NameTransferEncoding, NameUpgrade:
		return true
	}
	return false
}
