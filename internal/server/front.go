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

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/forwardauth"
	"github.com/moat-dev/moat/internal/identity/access"
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
	wd := s.world.Load()
	info := &request.Info{ID: request.NewID(), Start: time.Now(), Scheme: "https"}
	if r.TLS == nil {
		info.Scheme = "http"
	}
	r = request.With(r, info)
	// The request's span; a caller's traceparent counts only from a
	// trusted proxy (internal/tracing).
	r, span := s.tracer.Start(r, wd.clientIP)
	ipSpan := tracing.Start(r.Context(), "moat.client_ip")
	info.ClientIP = wd.clientIP.Resolve(r)
	ipSpan.End()
	rec := &recorder{ResponseWriter: w}
	if *wd.cfg.Server.HSTS && r.TLS != nil {
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
	}
	wd.serve(rec, r, info)
	s.accessLog(rec, r, info)
	traceRequest(span, rec, r, info)
}

// serve routes r within one world and hands it to its handler.
func (wd *world) serve(w http.ResponseWriter, r *http.Request, info *request.Info) {
	span := tracing.Start(r.Context(), "moat.route")
	h := wd.route(w, r, info)
	span.End()
	if h != nil {
		h.ServeHTTP(w, r)
	}
}

// route finds the handler of r — a route's chain, moat's own pages under
// the right policy, the forward-auth endpoint — noting the route on info;
// or answers r itself (not found, a path to clean, a body too large) and
// returns nil.
func (wd *world) route(w http.ResponseWriter, r *http.Request, info *request.Info) http.Handler {
	host := route.Host(r.Host)
	clean, ok := routable(w, r)
	if !ok {
		return nil
	}
	if wd.forwardAuth != nil && forwardauth.Serves(clean) {
		return wd.forwardAuth
	}
	if strings.HasPrefix(clean, moatPrefix) {
		hostRt := wd.routes.HostRoute(host)
		if hostRt == nil {
			web.Error(w, r, http.StatusNotFound, "not_found")
			return nil
		}
		rt, hostWide := wd.ownPage(r, host, clean, hostRt)
		info.Route = rt
		if hostWide {
			return wd.hostWide[rt]
		}
		return wd.own[rt]
	}
	rt := wd.routes.Lookup(host, clean)
	if rt == nil || rt.ForwardAuth {
		// A forward_auth route is the ingress's to proxy: moat has no
		// backend for it.
		web.Error(w, r, http.StatusNotFound, "not_found")
		return nil
	}
	info.Route = rt
	if r.ContentLength > rt.MaxBodyBytes {
		web.Error(w, r, http.StatusRequestEntityTooLarge, "body_too_large")
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, rt.MaxBodyBytes)
	return wd.chains[rt]
}

// authorize answers an ingress's auth request about orig (see
// forwardauth.Endpoint) as serve would route orig: on the cleaned path, by
// host then longest path prefix, then the route's chain — its security
// policy and access rule, ending in forwardauth.Grant. Only a forward_auth
// route is answered for; moat's own pages are never the ingress's to
// authorize (it forwards /_moat/ to moat).
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

// routable returns the path r is routed on: its path cleaned, so that
// /public/../private cannot reach a route the raw path does not name. A
// path that is not clean is answered here (ok false): a browser's GET or
// HEAD is sent to the clean path, anything else refused.
func routable(w http.ResponseWriter, r *http.Request) (clean string, ok bool) {
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
	case auth.FlowPage(path):
		returnTo := r.URL.Query().Get("return_to")
		if path == auth.CallbackPath {
			returnTo = wd.identity.CallbackReturnTo(r)
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
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", directory.LogPath(r.URL.Path)),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
		slog.Int64("bytes", rec.bytes),
		slog.String("client_ip", info.ClientIP.String()),
		slog.String("proto", r.Proto),
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
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
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
