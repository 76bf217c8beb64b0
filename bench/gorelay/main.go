// Command gorelay is the proxy benchmark's reference floor, not a proxy: the cheapest relay Go
// can be on this machine. Each client connection gets its own worker connection, and every
// read from one side is written to the other as it is, with no parsing, no balancing, no
// metrics. It only works for exchanges that fit in one read, as the benchmark's do. warmpool's
// distance to it is what its own code costs; its distance to nginx is what Go's runtime costs.
//
//	gorelay --listen 127.0.0.1:8080 127.0.0.1:9001 127.0.0.1:9002
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"warmpool/internal/rawsock"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve")
	flag.Parse()
	workers := flag.Args()
	if len(workers) == 0 {
		fmt.Fprintln(os.Stderr, "gorelay: name the workers' addresses")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gorelay:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "gorelay listening")
	for i := 0; ; i++ {
		client, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "gorelay:", err)
			os.Exit(1)
		}
		go relay(client, workers[i%len(workers)])
	}
}

func relay(client net.Conn, worker string) {
	defer client.Close()
	up, err := net.Dial("tcp", worker)
	if err != nil {
		return
	}
	defer up.Close()
	// Raw socket I/O, as warmpool's front uses: the floor is the cheapest Go can do.
	var cr, ur io.ReadWriter = client, up
	if s := rawsock.New(); s.Reset(client) {
		cr = s
	}
	if s := rawsock.New(); s.Reset(up) {
		ur = s
	}
	in, out := make([]byte, 16<<10), make([]byte, 16<<10)
	for {
		n, err := cr.Read(in)
		if err != nil {
			return
		}
		if _, err := ur.Write(in[:n]); err != nil {
			return
		}
		m, err := ur.Read(out)
		if err != nil {
			return
		}
		if _, err := cr.Write(out[:m]); err != nil {
			return
		}
	}
}
