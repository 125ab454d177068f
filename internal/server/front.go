package server

import (
	"bufio"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moat-dev/moat/internal/bodylimit"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/forwardauth"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/identity/login"
	"github.com/moat-dev/moat/internal/logging"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/route"
	"github.com/moat-dev/moat/internal/tracing"
	"github.com/moat-dev/moat/internal/web"
)

// moatPrefix is where moat's own pages live on every routed host.
const moatPrefix = "/_moat/"

// ServeHTTP is the front stage of every public request: it resolves the
// client, finds the route in the current world, hands the request to that
// route's chain, and writes the access log line and metrics.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.serveHealth(w, r) {
		return
	}
	wd := s.world.Load()
	info := &request.Info{ID: request.NewID(), Start: time.Now()}
	r = request.With(r, info)
	// The request's span; a caller's traceparent counts only from a
	// trusted proxy (internal/tracing).
	r, span := s.tracer.Start(r, wd.clientIP)
	ipSpan := tracing.Start(r.Context(), "moat.client_ip")
	// Behind a trusted TLS-terminating front the client used https even
	// though moat's listener is plain (issue 12, finding 10).
	info.Scheme = wd.clientIP.Scheme(r)
	info.ClientIP = wd.clientIP.Resolve(r)
	ipSpan.End()
	rec := &recorder{ResponseWriter: w}
	if *wd.cfg.Server.HSTS && info.Scheme == "https" {
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
	}
	wd.serve(rec, r, info)
	s.accessLog(rec, r, info)
	traceRequest(span, rec, r, info)
}

// serve routes r within one world and hands it to its handler.
func (wd *world) serve(w http.ResponseWriter, r *http.Request, info *request.Info) {
	span := tracing.Start(r.Context(), "moat.route")
	h, r := wd.route(w, r, info)
	span.End()
	if h != nil {
		h.ServeHTTP(w, r)
	}
}

// route finds the handler of r — a route's chain, moat's own pages under
// the right policy, the forward-auth endpoint — noting the route on info,
// and returns it with r's body bounded; or answers r itself (not found, a
// path to clean, a body too large) and returns a nil handler.
func (wd *world) route(w http.ResponseWriter, r *http.Request, info *request.Info) (http.Handler, *http.Request) {
	host := route.Host(r.Host)
	clean, ok := routable(w, r)
	if !ok {
		return nil, r
	}
	// Every body is bounded in time, sign-in forms as much as uploads
	// (issue 12, finding 4); a route's body is bounded in size too.
	limits := bodylimit.Limits{Stall: wd.cfg.Server.BodyStallTimeout.D(), MinRate: wd.cfg.Server.BodyMinRate}
	if wd.forwardAuth != nil && forwardauth.Serves(clean) {
		return wd.forwardAuth, bodylimit.Wrap(w, r, limits)
	}
	if strings.HasPrefix(clean, moatPrefix) {
		hostRt := wd.routes.HostRoute(host)
		if hostRt == nil {
			web.Error(w, r, http.StatusNotFound, "not_found")
			return nil, r
		}
		rt, hostWide := wd.ownPage(r, host, clean, hostRt)
		info.Route = rt
		if hostWide {
			return wd.hostWide[rt], bodylimit.Wrap(w, r, limits)
		}
		return wd.own[rt], bodylimit.Wrap(w, r, limits)
	}
	rt := wd.routes.Lookup(host, clean)
	if rt == nil || rt.ForwardAuth {
		// A forward_auth route is the ingress's to proxy: moat has no
		// backend for it.
		web.Error(w, r, http.StatusNotFound, "not_found")
		return nil, r
	}
	info.Route = rt
	// A declared length over the bound is refused before anything reaches
	// the app; a chunked body is cut at the bound (issue 12, finding 7).
	if r.ContentLength > rt.MaxBodyBytes {
		web.Error(w, r, http.StatusRequestEntityTooLarge, "body_too_large")
		return nil, r
	}
	limits.MaxBytes = rt.MaxBodyBytes
	return wd.chains[rt], bodylimit.Wrap(w, r, limits)
}

// authorize answers an ingress's auth request about orig (see
// forwardauth.Endpoint) as serve would route orig: the same refusal of
// ambiguous paths, on the cleaned path, by host then longest path prefix,
// then the route's chain — its security policy and access rule, ending in
// forwardauth.Grant. Only a forward_auth route is answered for; moat's own
// pages are never the ingress's to authorize (it forwards /_moat/ to moat).
func (wd *world) authorize(w http.ResponseWriter, orig *http.Request) {
	clean, ok := routable(w, orig)
	if !ok {
		return
	}
	var rt *config.Route
	if !strings.HasPrefix(clean, moatPrefix) {
		rt = wd.routes.Lookup(route.Host(orig.Host), clean)
	}
	if rt == nil || !rt.ForwardAuth {
		web.Error(w, orig, http.StatusNotFound, "not_found")
		return
	}
	request.From(orig).Route = rt
	wd.chains[rt].ServeHTTP(w, orig)
}

// routable returns the path r is routed on, its path cleaned, so that
// /public/../private cannot reach a route the raw path does not name. A
// path the app may read differently from moat (ambiguousPath) is refused;
// one that is not clean is answered here too: a browser's GET or HEAD is
// sent to the clean path, anything else refused. ok is false when r has
// been answered.
func routable(w http.ResponseWriter, r *http.Request) (clean string, ok bool) {
	if ambiguousPath(r.URL.Path) {
		web.Error(w, r, http.StatusBadRequest, "bad_request")
		return "", false
	}
	clean = cleanPath(r.URL.Path)
	if clean == r.URL.Path {
		return clean, true
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		u := *r.URL
		u.Scheme, u.Host = "", ""
		u.Path, u.RawPath = clean, ""
		http.Redirect(w, r, u.RequestURI(), http.StatusPermanentRedirect)
		return "", false
	}
	web.Error(w, r, http.StatusBadRequest, "bad_request")
	return "", false
}

// ambiguousPath reports whether a decoded request path could name another
// place to the app than to moat's router: a backslash (a separator on
// Windows and to some frameworks), a control character (a NUL ends the path
// in C), or a dot, slash, backslash or NUL still percent-encoded after
// decoding (an app that decodes twice sees "../"). Peers' routers were
// bypassed by each (Traefik GHSA-gm3x-23wp-hc2c, Caddy GHSA-qrp7-cvwr-j2c6);
// no browser sends them, so moat refuses them rather than guess.
func ambiguousPath(p string) bool {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\', c < 0x20, c == 0x7f:
			return true
		case c == '%' && i+2 < len(p):
			switch strings.ToLower(p[i+1 : i+3]) {
			case "2e", "2f", "5c", "00":
				return true
			}
		}
	}
	return false
}

// ownPage picks the route, and so the security policy, a page of moat's own
// on host runs under (hostWide: the policies of every signed-in route of
// the host) (issue 12 #1: they all ran under the host's "/" route,
// so a client an IP-restricted path_prefix route refuses could still test
// passwords and reach the console through it):
//   - static assets, the JWKS and sign-out: the host's route, as before;
//     they open nothing;
//   - a sign-in page (login, second step, password change, SSO start and
//     callback) whose return_to names a signed-in route of the host: that
//     route, so only a client the route admits signs in through it;
//   - a sign-in page headed nowhere in particular (where sign-out lands):
//     the first signed-in route of the host whose policy admits the client
//     (a dry run), as if return_to named it;
//   - everything else, the console and the account page included, and a
//     sign-in page no route's policy admits: the policy of every signed-in
//     route of the host, since they speak for the whole host.
func (wd *world) ownPage(r *http.Request, host, path string, hostRt *config.Route) (rt *config.Route, hostWide bool) {
	switch {
	case strings.HasPrefix(path, web.StaticPrefix), path == "/_moat/jwks.json", path == "/_moat/logout":
		return hostRt, false
	case login.FlowPage(path):
		returnTo := r.URL.Query().Get("return_to")
		if path == login.CallbackPath {
			returnTo = wd.identity.Flows.CallbackReturnTo(r)
		}
		if returnTo != "" {
			p, _, _ := strings.Cut(access.SafeReturnTo(returnTo), "?")
			if rt := wd.routes.Lookup(host, cleanPath(p)); rt != nil && !rt.Public {
				return rt, false
			}
		}
		// Headed nowhere in particular (where sign-out lands): the first
		// signed-in route of the host whose policy admits the client, as
		// if return_to named it; none admitting, every policy answers.
		for _, rt := range wd.cfg.Routes {
			if rt.Host == hostRt.Host && !rt.Public && wd.engine.Admits(rt.SecurityPolicy, r) {
				return rt, false
			}
		}
	}
	return hostRt, true
}

// cleanPath is path.Clean that keeps a trailing slash and a leading one.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

func (s *Server) accessLog(rec *recorder, r *http.Request, info *request.Info) {
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	routeName := ""
	if info.Route != nil {
		routeName = info.Route.Name()
	}
	elapsed := time.Since(info.Start)
	metrics.Requests.WithLabelValues(routeName, strconv.Itoa(status)).Inc()
	metrics.Duration.WithLabelValues(routeName).Observe(elapsed.Seconds())
	if !s.log.Enabled(r.Context(), slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("request_id", info.ID),
		slog.String("route", routeName),
		slog.String(logging.KeyMethod, r.Method),
		slog.String(logging.KeyScheme, info.Scheme),
		slog.String(logging.KeyHost, r.Host),
		slog.String(logging.KeyPath, directory.LogPath(r.URL.Path)),
		slog.Int(logging.KeyStatus, status),
		slog.Float64(logging.KeyDuration, float64(elapsed.Microseconds())/1000),
		slog.Int64(logging.KeyBytes, rec.bytes),
		slog.String(logging.KeyClientIP, info.ClientIP.String()),
		slog.String(logging.KeyProto, r.Proto),
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, slog.String(logging.KeyUserAgent, truncate(ua, maxLoggedUserAgent)))
	}
	if rec.hijacked {
		attrs = append(attrs, slog.Bool("websocket", true))
	}
	if info.User.SignedIn() {
		attrs = append(attrs, slog.String("user", info.User.Email))
	}
	if info.Decision != "" {
		attrs = append(attrs, slog.String("decision", info.Decision))
	}
	if info.Original != "" {
		attrs = append(attrs, slog.String("forward_auth", info.Original))
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, logging.AccessMessage, attrs...)
}

// maxLoggedUserAgent bounds the User-Agent an access line repeats.
const maxLoggedUserAgent = 256

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// recorder notes the status and size of a response for the access log. It
// passes Flush and Hijack through so streaming and WebSockets work, and
// Unwrap so http.ResponseController reaches the connection.
type recorder struct {
	http.ResponseWriter
	status   int
	bytes    int64
	hijacked bool
}

func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 && code >= 200 || code == http.StatusSwitchingProtocols {
		rec.status = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	n, err := rec.ResponseWriter.Write(b)
	rec.bytes += int64(n)
	return n, err
}

func (rec *recorder) Flush() {
	if f, ok := rec.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (rec *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := rec.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection cannot be hijacked")
	}
	rec.hijacked = true
	if rec.status == 0 {
		rec.status = http.StatusSwitchingProtocols
	}
	return h.Hijack()
}

func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }
