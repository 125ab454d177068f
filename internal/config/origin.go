package config

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// ParseOrigin parses a web origin (RFC 6454) written scheme://host[:port],
// as a browser sends it in the Origin header and as routes[].allowed_origins
// lists it, and returns its canonical form: lower-case, without the scheme's
// default port, so that two spellings of one origin compare equal. Only
// http and https origins are accepted; "null", and anything with a path,
// query, fragment or credentials, is an error.
func ParseOrigin(s string) (string, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	scheme = strings.ToLower(scheme)
	if !ok || scheme != "http" && scheme != "https" {
		return "", errors.New("an origin starts with https:// or http://")
	}
	if rest == "" || strings.ContainsAny(rest, "/?#@\\") {
		return "", errors.New("an origin is scheme://host[:port], without a path, query or credentials")
	}
	host, port := rest, ""
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", errors.New("an IPv6 origin host is written in brackets, such as https://[2001:db8::1]")
		}
		host, port = rest[:end+1], rest[end+1:]
		if a, err := netip.ParseAddr(host[1 : len(host)-1]); err != nil || !a.Is6() || a.Zone() != "" {
			return "", errors.New("invalid IPv6 address in origin")
		}
	} else {
		if i := strings.IndexByte(rest, ':'); i >= 0 {
			host, port = rest[:i], rest[i:]
		}
		if host == "" || !validOriginHost(host) {
			return "", errors.New("invalid host in origin: use letters, digits, '-', '_' and '.'")
		}
	}
	if port != "" {
		n, err := strconv.Atoi(port[1:])
		if port[0] != ':' || err != nil || n < 1 || n > 65535 || port[1] == '+' || port[1] == '-' {
			return "", errors.New("invalid port in origin")
		}
		port = ":" + strconv.Itoa(n)
		if scheme == "https" && n == 443 || scheme == "http" && n == 80 {
			port = ""
		}
	}
	return scheme + "://" + strings.ToLower(host) + port, nil
}

func validOriginHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
