package testnet

import (
	"net"
	"testing"
)

func TestAFreeAddrRefusesUntilSomeoneListensThere(t *testing.T) {
	addr := FreeAddr(t)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("%s accepted a connection before anyone listened", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on the free address: %v", err)
	}
	l.Close()
}
