// Package forwardauth lets an ingress that proxies to the app itself
// (nginx auth_request, Caddy forward_auth, Traefik ForwardAuth,
// ingress-nginx auth-url) ask moat whether each request may pass.
//
// The ingress sends moat an auth request naming the request it asks about
// in X-Forwarded-Method, X-Forwarded-Proto, X-Forwarded-Host and
// X-Forwarded-Uri, with the client's other headers (its cookies) as they
// came. Endpoint believes those four headers only from server.
// trusted_proxies and refuses everyone else: from any other peer they
// cannot say which request is meant, so nothing is granted. The request
// they name then goes through the server's routing, the route's security
// policy and its access rule — the very chain a proxied route runs — and
// Grant, at its end, answers 200 with the identity headers and the signed
// assertion the proxy would have sent the app.
package forwardauth

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/moat-dev/moat/internal/clientip"
	"github.com/moat-dev/moat/internal/proxy"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/web"
)

// Where an ingress sends its auth requests.
const (
	// Path answers in the way of ingresses that relay moat's refusal to
	// the browser (Caddy forward_auth, Traefik ForwardAuth): a person's
	// page navigation that must sign in gets a redirect to moat's login
	// page.
	Path = "/_moat/auth"
	// NginxPath answers in the way nginx's auth_request understands,
	// which passes on only 401 and 403 and treats any other refusal as
	// its own error (500): a redirect becomes 401 with the Location
	// header kept, for the ingress to send the browser there; any other
	// refusal of the client becomes 403.
	NginxPath = "/_moat/auth/nginx"
)

// Headers an ingress sets on its auth request to name the request it asks
// about; each must come exactly once.
const (
	HeaderMethod = "X-Forwarded-Method"
	HeaderProto  = "X-Forwarded-Proto"
	HeaderHost   = "X-Forwarded-Host"
	HeaderURI    = "X-Forwarded-Uri"
)

// HeaderCookie, in a 200 answer, is the client's Cookie header without
// moat's own cookies, for the ingress to send the app in place of the
// Cookie header the client sent (which carries moat's session cookie: the
// app, or anything it logs, could act as the user with it). It is absent
// when no cookie is left: the ingress then sends the app none.
const HeaderCookie = "X-Moat-Cookie"

// Bounds on what an auth request may name.
const (
	maxMethod = 32
	maxHost   = 300
	maxURI    = 8 << 10
)

// Serves reports whether path is one of the auth request paths.
func Serves(path string) bool { return path == Path || path == NginxPath }

// Endpoint answers an ingress's auth requests at Path and NginxPath.
type Endpoint struct {
	// Trusted reports whether a peer may name the request it asks about
	// (server.trusted_proxies). Nil trusts nobody.
	Trusted func(netip.Addr) bool
	// Authorize answers for orig, the request the ingress asks about, as
	// the route it reaches would: the server's routing, then the route's
	// chain ending in Grant.
	Authorize func(w http.ResponseWriter, orig *http.Request)
	// Log receives the refusals of peers and malformed auth requests; nil
	// means slog.Default().
	Log *slog.Logger
}

// ServeHTTP answers one auth request.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := request.From(r)
	// An answer is about one request of one client: never cache it.
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Path == NginxPath {
		w = &nginxWriter{ResponseWriter: w}
	}
	peer := clientip.PeerAddr(r.RemoteAddr)
	if e.Trusted == nil || !e.Trusted(peer) {
		e.log().Warn("forward-auth request refused: the peer is not in server.trusted_proxies, so its X-Forwarded-* headers cannot say which request is meant",
			"peer", peer.String(), "request_id", info.ID)
		web.Error(w, r, http.StatusForbidden, "forward_auth.untrusted")
		return
	}
	orig, err := Original(r)
	if err != nil {
		e.log().Warn("forward-auth request refused: the ingress did not name the request it asks about; set X-Forwarded-Method, -Proto, -Host and -Uri in its auth request",
			"peer", peer.String(), "request_id", info.ID, "err", err.Error())
		web.Error(w, r, http.StatusForbidden, "forward_auth.bad_request")
		return
	}
	info.Scheme = orig.URL.Scheme
	info.Original = orig.Method + " " + orig.Host + orig.URL.Path
	e.Authorize(w, orig)
}

func (e *Endpoint) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.Default()
}

// Original is the request an auth request r asks about: the method,
// scheme, host and request URI its X-Forwarded-Method, -Proto, -Host and
// -Uri name, with r's other headers (the client's, as the ingress passed
// them on) and no body. Each of the four must come exactly once and be
// well formed; Original does not check who sent them (Endpoint does).
func Original(r *http.Request) (*http.Request, error) {
	method, err := single(r.Header, HeaderMethod, maxMethod)
	if err != nil {
		return nil, err
	}
	if !isToken(method) {
		return nil, fmt.Errorf("%s %q is not a method", HeaderMethod, method)
	}
	proto, err := single(r.Header, HeaderProto, len("https"))
	if err != nil {
		return nil, err
	}
	proto = strings.ToLower(proto)
	if proto != "https" && proto != "http" {
		return nil, fmt.Errorf("%s %q is neither https nor http", HeaderProto, proto)
	}
	host, err := single(r.Header, HeaderHost, maxHost)
	if err != nil {
		return nil, err
	}
	if !isHost(host) {
		return nil, fmt.Errorf("%s %q is not a host", HeaderHost, host)
	}
	uri, err := single(r.Header, HeaderURI, maxURI)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(uri, "/") || !isVisible(uri) {
		return nil, fmt.Errorf("%s %q is not a path", HeaderURI, uri)
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", HeaderURI, err)
	}
	u.Scheme, u.Host = proto, host
	orig := r.Clone(r.Context())
	orig.Method = method
	orig.Host = host
	orig.URL = u
	orig.RequestURI = uri
	orig.Body, orig.ContentLength, orig.TransferEncoding = http.NoBody, 0, nil
	for _, name := range []string{HeaderMethod, HeaderProto, HeaderHost, HeaderURI, "Content-Length"} {
		delete(orig.Header, name)
	}
	return orig, nil
}

// single returns the one value of header name, at most limit bytes long.
func single(h http.Header, name string, limit int) (string, error) {
	vs := h.Values(name)
	switch {
	case len(vs) == 0 || vs[0] == "":
		return "", fmt.Errorf("no %s", name)
	case len(vs) > 1:
		return "", fmt.Errorf("%s sent %d times", name, len(vs))
	case len(vs[0]) > limit:
		return "", fmt.Errorf("%s longer than %d bytes", name, limit)
	}
	return vs[0], nil
}

// isToken reports whether s is an RFC 9110 token (a method).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// isHost accepts a DNS name, an IPv4 address or a bracketed IPv6 address,
// with an optional port: the characters of those and no others.
func isHost(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-.:[]", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// isVisible reports whether s holds only visible ASCII (no spaces, control
// characters or fragments), as a request target on the wire does.
func isVisible(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '#' {
			return false
		}
	}
	return true
}

// Grant ends the chain of a forward-auth route: the request passed the
// route's security policy and access rule, so it answers 200 with what
// the proxy would have sent the app — the identity headers and the signed
// assertion that setIdentity (assertion.Headers.SetIdentity, nothing for
// anonymous requests and public routes) sets — and HeaderCookie.
func Grant(setIdentity func(out, in *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := &http.Request{Header: http.Header{}}
		if setIdentity != nil {
			setIdentity(out, r)
		}
		h := w.Header()
		for name, vs := range out.Header {
			h[name] = vs
		}
		if c := AppCookie(r.Header); c != "" {
			h.Set(HeaderCookie, c)
		}
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	})
}

// AppCookie is the Cookie header of h without moat's cookies (the rule
// the proxy applies, proxy.StripOwned), or "" when none is left.
func AppCookie(h http.Header) string {
	values := h["Cookie"]
	if len(values) == 0 {
		return ""
	}
	c := http.Header{"Cookie": values}
	proxy.StripOwned(c)
	return strings.Join(c["Cookie"], "; ")
}

// nginxWriter turns the answers nginx's auth_request cannot pass on into
// ones it can: a redirect into 401 with its Location (the ingress's
// error_page sends the browser there), any other refusal of the client
// (404, 429, …) into 403. 2xx, 401, 403 and moat's own failures (5xx,
// which nginx answers with 500: closed) pass unchanged.
type nginxWriter struct {
	http.ResponseWriter
	wrote bool
}

func (n *nginxWriter) WriteHeader(code int) {
	if !n.wrote {
		n.wrote = true
		code = nginxStatus(code)
	}
	n.ResponseWriter.WriteHeader(code)
}

func (n *nginxWriter) Write(b []byte) (int, error) {
	n.wrote = true
	return n.ResponseWriter.Write(b)
}

func (n *nginxWriter) Unwrap() http.ResponseWriter { return n.ResponseWriter }

// nginxStatus is what nginx's auth_request is told for code.
func nginxStatus(code int) int {
	switch {
	case code < 300, code == http.StatusUnauthorized, code == http.StatusForbidden, code >= 500:
		return code
	case code < 400:
		return http.StatusUnauthorized
	}
	return http.StatusForbidden
}
