// Command gorilla_chat is the Go peer of parley's benchmarks (docs/benchmarks.md): a chat relay
// written for this repository to the design of the chat example that ships with the
// gorilla/websocket library, the design parley descends from. One hub goroutine owns the set of
// clients and fans every message out to them; every client has a 256-message send queue, a
// goroutine that reads and one that writes. It uses the gorilla/websocket package Debian installs
// (golang-github-gorilla-websocket-dev) and builds offline: see the Makefile's bench target.
//
//	gorilla_chat [-addr 127.0.0.1:0]   prints "port=N" once it listens; WebSocket on /ws
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on (port 0: a free one)")
	flag.Parse()

	h := newHub()
	go h.run()

	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		serveWs(h, w, r)
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("gorilla_chat: listen %s: %v", *addr, err)
	}
	fmt.Printf("port=%d\n", ln.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	log.Fatal(http.Serve(ln, mux))
}
