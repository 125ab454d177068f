package proxy

import (
	"net/http"
	"slices"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
)

// maxLoggedOrigin bounds how much of a refused Origin header a log line
// carries.
const maxLoggedOrigin = 256

// originAllowed reports whether a WebSocket upgrade may reach the backend,
// judged by its Origin header. Browsers always send one with a WebSocket
// handshake and cookies ride along whoever the page is, so a cross-site
// page could otherwise open a socket as the signed-in user (cross-site
// WebSocket hijacking; issue 12, finding 3). Allowed: no Origin at all (a
// non-browser client, such as one with a bearer token), the request's own
// origin, or one of the route's allowed_origins. Several Origin headers, a
// malformed one and "null" are refused.
func originAllowed(r *http.Request, info *request.Info) bool {
	values := r.Header.Values("Origin")
	switch len(values) {
	case 0:
		return true
	case 1:
	default:
		return false
	}
	origin, err := config.ParseOrigin(values[0])
	if err != nil {
		return false
	}
	if self, err := config.ParseOrigin(schemeOf(r, info) + "://" + r.Host); err == nil && origin == self {
		return true
	}
	return info.Route != nil && slices.Contains(info.Route.AllowedOrigins, origin)
}

// schemeOf is the scheme the client used, as the server resolved it; a
// request that did not pass the server (a unit test) is judged by its
// connection.
func schemeOf(in *http.Request, info *request.Info) string {
	if info.Scheme != "" {
		return info.Scheme
	}
	if in.TLS != nil {
		return "https"
	}
	return "http"
}

// truncate shortens a client-supplied value for a log line.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
