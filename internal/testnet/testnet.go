// Package testnet gives tests the network pieces they all need: a port on
// 127.0.0.1 that is free, a wait until an address listens or a URL
// answers, and an HTTP client pinned to the one server a test started.
// Tests and test-support packages import it; moat itself never does.
package testnet

import (
	"net"
	"strconv"
	"testing"
)

// Port returns a TCP port on 127.0.0.1 that was free a moment ago: the
// kernel picked it for a listener that Port closed again. Another process
// may take it before the caller listens on it.
func Port() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreePort is Port for a test, which fails when there is no port to have.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := Port()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return p
}

// FreeAddr returns "127.0.0.1:PORT" with a port from FreePort. Nothing
// listens there until the caller does, so it is also an address that
// refuses connections.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}
