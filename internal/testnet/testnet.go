// Package testnet holds network fixtures for tests: real loopback
// listeners that misbehave the way a hung server does.
package testnet

import (
	"net"
	"testing"
)

// Stalled listens on 127.0.0.1 (a port of its own), accepts every
// connection and never answers: a server that hangs. It returns the
// address; the listener and its connections close when the test ends.
func Stalled(t testing.TB) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().(*net.TCPAddr)
}
