package certs

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// maxHostHeader bounds the Host header: a 253-byte DNS name, a colon and a
// port, with room for IPv6 brackets.
const maxHostHeader = 262

// hostSet answers whether a name is one of the routed hosts. A wildcard
// *.example.com matches exactly one label, as in TLS (RFC 6125 6.4.3).
type hostSet struct {
	exact    map[string]bool
	wildcard map[string]bool // by the suffix after "*."
}

func newHostSet(hosts []string) (hostSet, error) {
	hs := hostSet{exact: map[string]bool{}, wildcard: map[string]bool{}}
	for _, h := range hosts {
		h = normalizeHost(h)
		if suffix, ok := strings.CutPrefix(h, "*."); ok {
			if !validName(suffix) {
				return hs, fmt.Errorf("invalid host %q", h)
			}
			hs.wildcard[suffix] = true
			continue
		}
		if !validName(h) {
			return hs, fmt.Errorf("invalid host %q", h)
		}
		hs.exact[h] = true
	}
	return hs, nil
}

// match reports whether host (already normalised) is routed.
func (hs hostSet) match(host string) bool {
	if hs.exact[host] {
		return true
	}
	label, suffix, ok := strings.Cut(host, ".")
	return ok && label != "" && hs.wildcard[suffix]
}

// normalizeHost lower-cases a name and drops a trailing dot, so that
// "Dash.Example.com." and "dash.example.com" are the same host.
func normalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// validName accepts an IP address or a DNS name of letters, digits and
// hyphens (no wildcard).
func validName(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// parseHostHeader splits a Host header into a normalised host (IPv6 without
// brackets) and reports whether it is well formed.
func parseHostHeader(hostport string) (string, bool) {
	if hostport == "" || len(hostport) > maxHostHeader {
		return "", false
	}
	host := hostport
	if strings.HasPrefix(hostport, "[") || strings.Contains(hostport, ":") {
		h, port, err := net.SplitHostPort(hostport)
		if err != nil {
			// A bracketed IPv6 literal without a port.
			if !strings.HasPrefix(hostport, "[") || !strings.HasSuffix(hostport, "]") {
				return "", false
			}
			h, port = hostport[1:len(hostport)-1], ""
			if !strings.Contains(h, ":") {
				return "", false
			}
		} else if !validPort(port) {
			return "", false
		}
		host = h
	}
	host = normalizeHost(host)
	if strings.Contains(host, "%") { // no IPv6 zones from the network
		return "", false
	}
	if !validName(host) {
		return "", false
	}
	return host, true
}

// validPort accepts 1 to 65535 written in at most five digits.
func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n >= 1 && n <= 65535
}
