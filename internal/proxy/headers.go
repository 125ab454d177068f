package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/moat-dev/moat/internal/request"
)

// ownedPrefixes are the header name prefixes moat owns: identity headers
// (X-Moat-*, Google IAP's X-Goog-*) and forwarding headers (X-Forwarded-*),
// which tell the app who the client is and how it came. A client may never
// send them to a backend, whatever moat itself sets: an app behind a proxy
// trusts them all, X-Forwarded-Prefix, -Port and -Uri included (Traefik
// CVE-2026-35051, CVE-2026-54764). Names are compared after foldByte.
var ownedPrefixes = []string{"x-moat-", "x-goog-", "x-forwarded-"}

// ownedNames are the other headers moat owns, whole names compared after
// foldByte: forwarding information without the X-Forwarded- prefix, and
// headers through which frameworks let a client redefine the path or the
// scheme the app sees.
var ownedNames = []string{
	"forwarded", "x-real-ip", "x-client-ip", "true-client-ip", "x-request-id",
	"x-original-url", "x-rewrite-url", "front-end-https", "x-url-scheme",
}

// ownedCookiePrefixes name the cookies moat sets; they never reach a backend
// (oauth2-proxy leaked its own cookie to the app: oauth2-proxy#388).
var ownedCookiePrefixes = []string{"__host-moat", "moat_"}

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1, plus the
// ones httputil drops for the same reason.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// foldByte lower-cases c and turns every byte that is not a letter or
// digit into '-', so that look-alikes such as X_Moat_User, x.moat.user or
// X-MOAT-User all read "x-moat-user". Caddy let an underscore alias of an
// identity header through (GHSA-f59h-q822-g45g): CGI, WSGI and many
// frameworks map '-' and '_' to the same variable.
func foldByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		return c
	}
	return '-'
}

// owned reports whether a header name belongs to moat (ownedPrefixes,
// ownedNames). It folds the name byte by byte (see foldByte) without
// allocating.
func owned(name string) bool {
	for _, p := range ownedPrefixes {
		if len(name) >= len(p) && foldedEqual(name[:len(p)], p) {
			return true
		}
	}
	for _, n := range ownedNames {
		if len(name) == len(n) && foldedEqual(name, n) {
			return true
		}
	}
	return false
}

// foldedEqual reports whether s, folded by foldByte, is folded (which is
// already lower-case with '-' for punctuation); len(s) == len(folded).
func foldedEqual(s, folded string) bool {
	for i := 0; i < len(folded); i++ {
		if foldByte(s[i]) != folded[i] {
			return false
		}
	}
	return true
}

// StripOwned deletes from h every header moat owns: any whose name, folded
// by case and with '_' (or any other non-alphanumeric character) read as
// '-', starts with "x-moat-", "x-goog-" or "x-forwarded-", or is one of
// ownedNames (Forwarded, X-Real-Ip, X-Request-Id, …); and moat's own
// cookies (names starting "__Host-moat" or "moat_") from the Cookie header,
// keeping the app's other cookies. Several Cookie headers (as HTTP/2
// clients send them) are joined into one.
func StripOwned(h http.Header) {
	for name := range h {
		if owned(name) {
			delete(h, name)
		}
	}
	stripOwnedCookies(h)
}

func stripOwnedCookies(h http.Header) {
	values := h["Cookie"]
	if len(values) == 0 {
		return
	}
	if len(values) == 1 && !ownedCookieIn(values[0]) {
		return
	}
	// Built without splitting: a request that carries moat's session
	// cookie alone, the usual signed-in request, allocates nothing.
	var kept strings.Builder
	for _, v := range values {
		for v != "" {
			var part string
			part, v, _ = strings.Cut(v, ";")
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			name, _, _ := strings.Cut(part, "=")
			if ownedCookie(strings.TrimSpace(name)) {
				continue
			}
			if kept.Len() > 0 {
				kept.WriteString("; ")
			}
			kept.WriteString(part)
		}
	}
	if kept.Len() == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{kept.String()}
}

// ownedCookieIn reports whether a Cookie header value may hold a moat cookie.
func ownedCookieIn(v string) bool {
	for _, p := range ownedCookiePrefixes {
		if containsFold(v, p) {
			return true
		}
	}
	return false
}

// ownedCookie reports whether a cookie name is one of moat's.
func ownedCookie(name string) bool {
	for _, p := range ownedCookiePrefixes {
		if len(name) >= len(p) && lowerEqual(name[:len(p)], p) {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains lower, a lower-case ASCII string,
// ignoring ASCII case in s, without allocating (strings.ToLower does).
func containsFold(s, lower string) bool {
	for i := 0; i+len(lower) <= len(s); i++ {
		if lowerEqual(s[i:i+len(lower)], lower) {
			return true
		}
	}
	return false
}

// lowerEqual reports whether s, with ASCII letters lower-cased, equals
// lower; len(s) == len(lower).
func lowerEqual(s, lower string) bool {
	for i := 0; i < len(lower); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// removeHopByHop deletes the hop-by-hop headers of h, including those named
// in its Connection header, as httputil does for plain requests.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for _, sf := range strings.Split(f, ",") {
			if sf = strings.TrimSpace(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// headerHasToken reports whether a comma-separated header holds token,
// compared without case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// prepareOutbound applies moat's header rules to out, the request sent to
// the backend, built from in, the client's request. It deletes first and
// sets afterwards, so a forgotten step cannot let a spoofed header through.
// Hop-by-hop headers must already be gone from out. target is the
// replica's URL.
func (b *Backend) prepareOutbound(out, in *http.Request, info *request.Info, target *url.URL) {
	StripOwned(out.Header)

	out.URL.Scheme = target.Scheme
	out.URL.Host = target.Host
	out.URL.Path, out.URL.RawPath = joinURLPath(target, in.URL)
	if b.preserveHost {
		out.Host = in.Host
	} else {
		out.Host = ""
	}

	// moat's view of the client replaces whatever the client claimed; the
	// server has already resolved ClientIP through trusted proxies.
	// One backing array for the four values: one allocation, not four.
	vals := []string{clientIP(in, info), schemeOf(in, info), in.Host, info.ID}
	if vals[0] != "" {
		out.Header["X-Forwarded-For"] = vals[0:1:1]
	}
	out.Header["X-Forwarded-Proto"] = vals[1:2:2]
	if vals[2] != "" {
		out.Header["X-Forwarded-Host"] = vals[2:3:3]
	}
	out.Header["X-Request-Id"] = vals[3:4:4]
	if b.SetIdentity != nil {
		b.SetIdentity(out, in)
	}
}

func clientIP(in *http.Request, info *request.Info) string {
	if info.ClientIP.IsValid() {
		return info.ClientIP.Unmap().String()
	}
	host, _, err := net.SplitHostPort(in.RemoteAddr)
	if err != nil {
		return ""
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().String()
	}
	return ""
}
