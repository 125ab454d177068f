// Package clientip finds the client's address behind trusted proxies: from
// X-Forwarded-For or Forwarded (RFC 7239) when the peer is a trusted proxy,
// and from a PROXY protocol (v1 or v2) header on a listener that enables it;
// and the scheme the client used, from X-Forwarded-Proto of a trusted proxy.
//
// Only trusted peers are believed. A spoofed header from anyone else is
// ignored, and a malformed one makes moat fall back to the peer's address.
package clientip

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/moat-dev/moat/internal/config"
)

// Bounds on forwarding headers: a longer chain is treated as malformed.
const (
	maxHops        = 32
	maxHeaderBytes = 8 << 10
)

// Resolver resolves a request's client address. Its zero value trusts no
// proxy and so always answers the peer's address.
type Resolver struct {
	// Trusted lists the proxies whose forwarding headers are believed.
	Trusted []netip.Prefix
}

// Resolve returns the client address of r: the peer's address, unless the
// peer is trusted; then the right-most address of X-Forwarded-For (or, when
// that header is absent, of Forwarded's for= parameters) that is not itself
// a trusted proxy. A malformed or oversized header yields the peer. The
// result is never an IPv4-mapped IPv6 address.
func (res *Resolver) Resolve(r *http.Request) netip.Addr {
	peer := PeerAddr(r.RemoteAddr)
	if !peer.IsValid() || !res.IsTrusted(peer) {
		return peer
	}
	var chain []netip.Addr
	var ok bool
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		chain, ok = ParseXForwardedFor(xff)
	} else if fwd := r.Header.Values("Forwarded"); len(fwd) > 0 {
		chain, ok = ParseForwarded(fwd)
	} else {
		return peer
	}
	if !ok || len(chain) == 0 {
		return peer
	}
	for i := len(chain) - 1; i >= 0; i-- {
		if !res.IsTrusted(chain[i]) {
			return chain[i]
		}
	}
	// Every hop is a trusted proxy: the left-most one is the closest to
	// the client that we know of.
	return chain[0]
}

// Scheme returns the scheme the client used: "https" on a TLS connection;
// on a plain one from a trusted proxy (a TLS-terminating load balancer, as
// in server.http_mode: serve), what its X-Forwarded-Proto says when that is
// "http" or "https" (the right-most value, which the nearest proxy wrote);
// otherwise "http". A client's own X-Forwarded-Proto is never believed.
func (res *Resolver) Scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	values := r.Header.Values("X-Forwarded-Proto")
	if len(values) == 0 {
		return "http"
	}
	if peer := PeerAddr(r.RemoteAddr); !peer.IsValid() || !res.IsTrusted(peer) {
		return "http"
	}
	last := values[len(values)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	switch p := strings.ToLower(strings.TrimSpace(last)); p {
	case "http", "https":
		return p
	}
	return "http"
}

// New returns a Resolver trusting the given CIDRs or addresses (as in
// server.trusted_proxies). IPv4-mapped IPv6 ranges are taken as the IPv4
// ranges they map, since addresses are compared unmapped.
func New(trusted []string) (*Resolver, error) {
	res := &Resolver{}
	for _, s := range trusted {
		p, err := config.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxies: %w", err)
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		res.Trusted = append(res.Trusted, p)
	}
	return res, nil
}

// IsTrusted reports whether a is in one of the trusted proxy ranges.
func (res *Resolver) IsTrusted(a netip.Addr) bool {
	for _, p := range res.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// PeerAddr parses a net/http RemoteAddr ("ip:port" or a bare ip). It returns
// the zero Addr when s is neither.
func PeerAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}

// ParseXForwardedFor parses the values of X-Forwarded-For, left to right.
// ok is false when any element is not an address (ports and brackets are
// tolerated) or when the header is too long.
func ParseXForwardedFor(values []string) (chain []netip.Addr, ok bool) {
	total := 0
	for _, v := range values {
		total += len(v)
		if total > maxHeaderBytes {
			return nil, false
		}
		for elem := range strings.SplitSeq(v, ",") {
			a, ok := parseNode(strings.TrimSpace(elem))
			if !ok || len(chain) == maxHops {
				return nil, false
			}
			chain = append(chain, a)
		}
	}
	return chain, true
}

// ParseForwarded parses the for= parameters of Forwarded header values
// (RFC 7239), left to right. ok is false when an element is malformed, its
// for= is not an address (including "unknown" and obfuscated names), or the
// header is too long. Elements without for= are skipped.
func ParseForwarded(values []string) (chain []netip.Addr, ok bool) {
	total := 0
	for _, v := range values {
		total += len(v)
		if total > maxHeaderBytes {
			return nil, false
		}
		p := forwardedParser{s: v}
		for {
			forValue, hasFor, more, ok := p.element()
			if !ok {
				return nil, false
			}
			if hasFor {
				a, ok := parseNode(forValue)
				if !ok || len(chain) == maxHops {
					return nil, false
				}
				chain = append(chain, a)
			}
			if !more {
				break
			}
		}
	}
	return chain, true
}

// parseNode parses "ip", "ip:port", "[ipv6]" or "[ipv6]:port".
func parseNode(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		rest := s[end+1:]
		if rest != "" && (rest[0] != ':' || !isPort(rest[1:])) {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(s[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, false
		}
		return a.Unmap(), true
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || !isPort(port) || strings.Contains(host, ":") {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

func isPort(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// forwardedParser walks one Forwarded header value: elements separated by
// commas, each a list of token=value pairs separated by semicolons, where a
// value is a token or a quoted string.
type forwardedParser struct {
	s   string
	pos int
}

func (p *forwardedParser) skipSpace() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t') {
		p.pos++
	}
}

// element parses one element. more says another element follows.
func (p *forwardedParser) element() (forValue string, hasFor, more, ok bool) {
	for {
		p.skipSpace()
		start := p.pos
		for p.pos < len(p.s) && isTokenChar(p.s[p.pos]) {
			p.pos++
		}
		name := p.s[start:p.pos]
		if name == "" || p.pos >= len(p.s) || p.s[p.pos] != '=' {
			return "", false, false, false
		}
		p.pos++
		var val string
		if p.pos < len(p.s) && p.s[p.pos] == '"' {
			p.pos++
			var b strings.Builder
			closed := false
			for p.pos < len(p.s) {
				c := p.s[p.pos]
				p.pos++
				if c == '\\' && p.pos < len(p.s) {
					b.WriteByte(p.s[p.pos])
					p.pos++
					continue
				}
				if c == '"' {
					closed = true
					break
				}
				b.WriteByte(c)
			}
			if !closed {
				return "", false, false, false
			}
			val = b.String()
		} else {
			start := p.pos
			for p.pos < len(p.s) && isTokenChar(p.s[p.pos]) {
				p.pos++
			}
			val = p.s[start:p.pos]
			if val == "" {
				return "", false, false, false
			}
		}
		if strings.EqualFold(name, "for") {
			if hasFor {
				return "", false, false, false // for= twice in one element
			}
			forValue, hasFor = val, true
		}
		p.skipSpace()
		if p.pos >= len(p.s) {
			return forValue, hasFor, false, true
		}
		switch p.s[p.pos] {
		case ';':
			p.pos++
		case ',':
			p.pos++
			return forValue, hasFor, true, true
		default:
			return "", false, false, false
		}
	}
}

// isTokenChar reports whether c may appear in an RFC 7230 token. ':' '[' and
// ']' are not token characters; an IPv6 for= value must be quoted.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
