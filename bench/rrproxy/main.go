// Command rrproxy is a round-robin TCP proxy for benchmarks: each accepted connection
// goes to the next backend in turn (skipping one that refuses), as a load balancer
// without session affinity does. It passes bytes through; TLS ends at the backends.
//
//	rrproxy -listen 127.0.0.1:18440 -backends 127.0.0.1:18441,127.0.0.1:18442
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to accept connections on")
	list := flag.String("backends", "", "backend addresses HOST:PORT, separated by commas")
	flag.Parse()
	backends := strings.Split(*list, ",")
	if *list == "" {
		fmt.Fprintln(os.Stderr, "rrproxy: -backends is required")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rrproxy:", err)
		os.Exit(1)
	}
	var next atomic.Uint64
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "rrproxy:", err)
			os.Exit(1)
		}
		first := next.Add(1) - 1
		go proxy(c, backends, first)
	}
}

// proxy connects c to the first backend, from index first on, that accepts.
func proxy(c net.Conn, backends []string, first uint64) {
	defer c.Close()
	var b net.Conn
	for i := 0; i < len(backends) && b == nil; i++ {
		b, _ = net.DialTimeout("tcp", backends[(first+uint64(i))%uint64(len(backends))], 2*time.Second)
	}
	if b == nil {
		return
	}
	defer b.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(b, c)
		b.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(c, b)
	c.(*net.TCPConn).CloseWrite()
	<-done
}
