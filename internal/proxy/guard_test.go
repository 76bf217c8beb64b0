package proxy

import (
	"strings"
	"testing"
)

// The framing guard follows a connection's requests however the stream is cut into reads: a
// stream of requests it must pass, read in pieces of every size from 1 byte up, passes whole;
// the same stream followed by a refused head passes up to that head, then no more than a part
// of it: never the whole head, so net/http cannot read it as a request, and at least the
// first bytes, which net/http needs to answer 400 rather than close in silence.
func TestFramingGuardFollowsRequestsAcrossReads(t *testing.T) {
	pass := "GET / HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello\r\n\r\nxx" + // a body that looks like a head's end
		"POST /c HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n" + // bare LF heads
		"5;ext=1\r\nab\r\nc\r\n10\r\n" + strings.Repeat("z", 16) + "\r\n0\r\nX-T: 1\r\n\r\n" +
		"POST /z HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc" +
		"GET /last HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
	refusedHead := "POST /bad HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
	for size := 1; size <= len(pass)+len(refusedHead)+5; size++ {
		for _, stream := range []string{pass, pass + refusedHead + "0\r\n\r\n"} {
			var g framingGuard
			var got strings.Builder
			for i := 0; i < len(stream) && g.refused == ""; i += size {
				b := []byte(stream[i:min(i+size, len(stream))])
				got.Write(b[:g.scan(b)])
			}
			if g.state == guardAside {
				t.Fatalf("reads of %d bytes: the guard stepped aside", size)
			}
			if stream == pass {
				if got.String() != pass || g.refused != "" {
					t.Fatalf("reads of %d bytes: passed %q, refused %q", size, got.String(), g.refused)
				}
				continue
			}
			rest, ok := strings.CutPrefix(got.String(), pass)
			if !ok || g.refused != "a request may not have both Content-Length and Transfer-Encoding" ||
				!strings.HasPrefix(refusedHead, rest) || len(rest) < refusedPrefix || len(rest) >= len(refusedHead) {
				t.Fatalf("reads of %d bytes: passed %q of the refused head (refused %q)", size, rest, g.refused)
			}
		}
	}
}

// What the guard cannot follow it leaves to net/http, which refuses it or ends the connection:
// an upgrade, a malformed chunk, a head too large.
func TestFramingGuardStepsAsideFromWhatItCannotFollow(t *testing.T) {
	for name, stream := range map[string]string{
		"upgrade":           "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"chunk size in LF":  "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n",
		"bad chunk end":     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
		"unknown version":   "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
		"gzip encoding":     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
		"lengths disagree":  "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"a head over 1 MiB": "GET / HTTP/1.1\r\nX: " + strings.Repeat("x", guardMaxHead),
	} {
		var g framingGuard
		if n := g.scan([]byte(stream)); n != len(stream) || g.refused != "" || g.state != guardAside {
			t.Errorf("%s: passed %d of %d, refused %q, state %d", name, n, len(stream), g.refused, g.state)
		}
	}
}
