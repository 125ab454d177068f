package certs

import (
	"net"
	"net/http"
	"strings"

	"github.com/moat-dev/moat/internal/web"
)

// acmeChallengePrefix is where ACME HTTP-01 challenges are fetched (RFC 8555
// section 8.3).
const acmeChallengePrefix = "/.well-known/acme-challenge/"

// HTTPHandler returns the handler for the plain-HTTP listener. With ACME it
// answers HTTP-01 challenges for the routed hosts; every other request for a
// routed host is redirected to the same host, path and query over HTTPS (301
// for GET and HEAD, 308 otherwise so that the method and body are kept).
// httpsPort is the HTTPS listener's port, as "8443" or as its listen address
// ":8443"; it is left out of the redirect when empty or 443. A malformed Host
// header gets 400 and a host moat does not route gets 404, so the listener
// never redirects to an arbitrary site.
func (s *Source) HTTPHandler(httpsPort string) http.Handler {
	port := httpsPort
	if _, p, err := net.SplitHostPort(httpsPort); err == nil {
		port = p
	}
	if port == "443" || !validPort(port) {
		if port != "" && port != "443" {
			s.logger.Error("invalid HTTPS port for redirects; redirecting to the default port 443", "https_port", httpsPort)
		}
		port = ""
	}
	return &redirector{src: s, port: port}
}

type redirector struct {
	src  *Source
	port string // empty for 443
}

func (h *redirector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, ok := parseHostHeader(r.Host)
	if !ok {
		web.Error(w, r, http.StatusBadRequest, "bad_request")
		return
	}
	if !h.src.hosts.match(host) {
		web.Error(w, r, http.StatusNotFound, "not_found")
		return
	}
	if h.src.acmeIssuer != nil && strings.HasPrefix(r.URL.Path, acmeChallengePrefix) {
		// The answer comes from the store, whichever instance asked the
		// CA; certmagic checks the host against the challenge's.
		r2 := r.Clone(r.Context())
		r2.Host = host
		if !h.src.acmeIssuer.HandleHTTPChallenge(w, r2) {
			web.Error(w, r, http.StatusNotFound, "not_found")
		}
		return
	}
	uri := r.URL.RequestURI()
	if !strings.HasPrefix(uri, "/") { // "*" (OPTIONS) or an opaque URI
		web.Error(w, r, http.StatusBadRequest, "bad_request")
		return
	}
	target := "https://" + hostForURL(host)
	if h.port != "" {
		target += ":" + h.port
	}
	target += uri
	status := http.StatusPermanentRedirect
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		status = http.StatusMovedPermanently
	}
	http.Redirect(w, r, target, status)
}

// hostForURL brackets an IPv6 address.
func hostForURL(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}
