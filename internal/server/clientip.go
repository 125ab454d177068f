package server

import (
	"net"
	"net/http"
	"net/netip"
)

// clientResolver names the client of a request.
type clientResolver interface {
	Resolve(r *http.Request) netip.Addr
}

type peerResolver struct{}

// Resolve returns the TCP peer; forwarded headers are never believed here.
func (peerResolver) Resolve(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

func newClientResolver(trusted []string) (clientResolver, error) {
	return peerResolver{}, nil
}
