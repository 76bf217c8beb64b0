// Command upstream is the trivial worker of the proxy benchmark: it answers every request with
// the same 64-byte body, on 127.0.0.1:$PORT (or --port) or on a unix socket (--socket),
// keeping connections alive.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
)

var body = []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n") // 64 bytes

func main() {
	port := flag.String("port", os.Getenv("PORT"), "port on 127.0.0.1")
	socket := flag.String("socket", "", "unix socket path (instead of the port)")
	flag.Parse()
	var ln net.Listener
	var err error
	if *socket != "" {
		ln, err = net.Listen("unix", *socket)
	} else {
		ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", *port))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
	length := strconv.Itoa(len(body))
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain"}
		h["Content-Length"] = []string{length}
		w.Write(body)
	}))
	fmt.Fprintln(os.Stderr, "upstream:", err)
	os.Exit(1)
}
