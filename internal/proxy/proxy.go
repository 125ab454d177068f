// Package proxy forwards requests that passed moat's front door to a
// backend: plain HTTP through httputil.ReverseProxy (HTTP/1.1 and HTTP/2
// clients, streamed responses flushed at once) and WebSockets through a
// frame-aware splice that holds little memory while a socket is idle and
// can close a socket cleanly (shutdown, revoked session, lifetime and idle
// caps). It also runs the backend's active health check.
//
// Header rules are structural: every header moat owns is deleted from the
// outbound request before moat sets its own (see StripOwned).
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/bodylimit"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/tracing"
	"github.com/moat-dev/moat/internal/web"
)

// Defaults used when a Backend's configuration leaves a duration at zero
// (config.Validate normally fills them in).
const (
	defaultDialTimeout     = 5 * time.Second
	defaultResponseTimeout = 60 * time.Second
	defaultHealthInterval  = 10 * time.Second
)

// Backend proxies requests to one configured backend: one URL, or several
// replicas of the app, among which each user sticks to one (see pick).
// Build it with New; it is safe for concurrent use.
type Backend struct {
	// SetIdentity, when set, is called last while building each outbound
	// request (HTTP and WebSocket), after every header moat owns has been
	// deleted and the forwarding headers set: sign-in code adds the
	// identity headers here. out is the request to the backend, in the
	// client's request.
	SetIdentity func(out *http.Request, in *http.Request)
	// Log receives error lines; nil means slog.Default().
	Log *slog.Logger

	name         string
	cfg          *config.Backend
	replicas     []*replica
	preserveHost bool
	sockets      *Sockets
	transport    *http.Transport
	upstream     *upstream
	dialer       *net.Dialer
}

// New builds the proxy for the backend called name. sockets is the
// registry of open WebSockets, shared by all backends and kept across
// configuration reloads; nil gives the backend a registry of its own.
func New(name string, cfg *config.Backend, sockets *Sockets) (*Backend, error) {
	if cfg == nil {
		return nil, fmt.Errorf("backend %q: no configuration", name)
	}
	if sockets == nil {
		sockets = NewSockets()
	}
	b := &Backend{
		name:         name,
		cfg:          cfg,
		preserveHost: cfg.PreserveHost == nil || *cfg.PreserveHost,
		sockets:      sockets,
	}
	b.dialer = &net.Dialer{Timeout: orDefault(cfg.DialTimeout.D(), defaultDialTimeout), KeepAlive: 30 * time.Second}
	// One transport for every replica: it keeps idle connections per
	// host, so the bounds below hold for each replica.
	b.transport = &http.Transport{
		Proxy:                 nil, // never route backend traffic through an environment proxy
		DialContext:           b.dialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: orDefault(cfg.ResponseHeaderTimeout.D(), defaultResponseTimeout),
		ExpectContinueTimeout: time.Second,
		// Pass the client's Accept-Encoding through and the backend's
		// encoding back untouched.
		DisableCompression:     true,
		MaxResponseHeaderBytes: 1 << 20,
		ReadBufferSize:         16 << 10,
		WriteBufferSize:        16 << 10,
	}
	// The lean client for bodiless requests, in front of the transport,
	// shared by every replica as the transport is.
	b.upstream = newUpstream(b.transport)
	for _, raw := range cfg.Targets() {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("backend %q: invalid url %q", name, raw)
		}
		rp := &replica{target: u, label: raw, seed: mix64(fnv64a(raw))}
		rp.proxy = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) { b.rewrite(pr, rp) },
			// Each round trip is a span whose context the app receives.
			Transport: tracing.Transport(b.upstream),
			// 0: httputil flushes at once every response of unknown
			// length (chunked, as Streamlit streams) and every
			// text/event-stream, and lets a response of known length go
			// out in one write rather than headers and body apart: -1
			// cost a fifth of the requests/s.
			FlushInterval: 0,
			BufferPool:    copyBuffers{},
			ErrorHandler:  b.serveError,
			ErrorLog:      log.New(errorLogWriter{b}, "", 0),
		}
		if cfg.HealthPath == "" {
			rp.healthy.Store(true)
		}
		b.replicas = append(b.replicas, rp)
	}
	return b, nil
}

// Name returns the backend's name from the configuration.
func (b *Backend) Name() string { return b.name }

// Close releases the backend's idle connections. Open WebSockets are not
// affected: they belong to the shared Sockets registry.
func (b *Backend) Close() { b.upstream.CloseIdleConnections() }

func (b *Backend) log() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.Default()
}

// ServeHTTP forwards r to the backend. A WebSocket upgrade is spliced
// frame by frame; everything else goes through httputil.ReverseProxy.
func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info, ok := request.FromContext(r.Context())
	if !ok {
		info = request.From(r)
		r = request.With(r, info)
	}
	r, span := tracing.StartRequest(r, "moat.proxy")
	defer span.End()
	if r.Header.Get("Upgrade") != "" {
		if isWebSocketUpgrade(r) {
			rp, cookie := b.pick(r, info)
			b.serveWebSocket(w, r, info, rp, cookie)
			return
		}
		// Only WebSocket upgrades are proxied; anything else (h2c, TLS
		// upgrade, …) is forwarded as a plain request.
		r.Header.Del("Upgrade")
	}
	rp, cookie := b.pick(r, info)
	if cookie != nil {
		http.SetCookie(w, cookie)
	}
	// ReverseProxy hands its error handler the outbound request, whose
	// moat cookies (the language choice among them) are gone; keep the
	// client's request within reach for moat's error page.
	r = r.WithContext(context.WithValue(r.Context(), inboundKey{}, r))
	rp.proxy.ServeHTTP(w, r)
}

type inboundKey struct{}

// rewrite builds the outbound request to rp; httputil has already removed
// the hop-by-hop and X-Forwarded-* headers from pr.Out.
func (b *Backend) rewrite(pr *httputil.ProxyRequest, rp *replica) {
	info, _ := request.FromContext(pr.In.Context())
	if info == nil {
		info = &request.Info{ID: request.NewID()}
	}
	b.prepareOutbound(pr.Out, pr.In, info, rp.target)
}

// serveError turns a failed round trip into moat's 502 or 504 page, with
// the request id that the log line carries too.
func (b *Backend) serveError(w http.ResponseWriter, r *http.Request, err error) {
	if in, ok := r.Context().Value(inboundKey{}).(*http.Request); ok {
		r = in
	}
	info := request.From(r)
	tracing.Fail(r.Context(), err)
	// A body cut for its size or pace fails the round trip, or (HTTP/1.1,
	// whose server cancels the request when the read deadline passes)
	// cancels it: either way the answer is 413 or 408, not 502, and the app
	// saw its request aborted (issue 12, finding 7).
	if cut := bodylimit.Err(r.Context()); cut != nil {
		status, key, _ := bodylimit.Status(cut)
		b.log().Info("proxy: request body cut", "request_id", info.ID, "route", routeName(info), "backend", b.name,
			"status", status, "error", cut.Error())
		web.Error(w, r, status, key)
		return
	}
	if errors.Is(r.Context().Err(), context.Canceled) {
		// The client went away, whatever error that left the round trip
		// with; nobody is left to read a page, and the backend did not fail.
		b.log().Debug("proxy: client closed the request", "request_id", info.ID, "route", routeName(info), "backend", b.name, "error", err.Error())
		w.WriteHeader(request.StatusClientClosed)
		return
	}
	status, key := classify(err)
	b.log().Warn("proxy: backend error", "request_id", info.ID, "route", routeName(info), "backend", b.name,
		"status", status, "error", err.Error())
	web.Error(w, r, status, key)
}

// classify maps a transport error to 502 (refused, unreachable, broken) or
// 504 (the backend accepted but did not answer in time).
func classify(err error) (int, string) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return http.StatusBadGateway, "bad_gateway"
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return http.StatusGatewayTimeout, "gateway_timeout"
	}
	return http.StatusBadGateway, "bad_gateway"
}

func routeName(info *request.Info) string {
	if info == nil || info.Route == nil {
		return ""
	}
	return info.Route.Name()
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// joinURLPath joins the backend URL's path and the request's, as
// httputil.ProxyRequest.SetURL does.
func joinURLPath(a, b *url.URL) (path, rawpath string) {
	if a.Path == "" || a.Path == "/" {
		return b.Path, b.RawPath
	}
	if a.RawPath == "" && b.RawPath == "" {
		return singleJoiningSlash(a.Path, b.Path), ""
	}
	apath, bpath := a.EscapedPath(), b.EscapedPath()
	aslash, bslash := strings.HasSuffix(apath, "/"), strings.HasPrefix(bpath, "/")
	switch {
	case aslash && bslash:
		return a.Path + b.Path[1:], apath + bpath[1:]
	case !aslash && !bslash:
		return a.Path + "/" + b.Path, apath + "/" + bpath
	}
	return a.Path + b.Path, apath + bpath
}

func singleJoiningSlash(a, b string) string {
	aslash, bslash := strings.HasSuffix(a, "/"), strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}

// errorLogWriter sends ReverseProxy's own log lines (a client that went
// away mid-response, …) to the backend's logger at debug level.
type errorLogWriter struct{ b *Backend }

func (e errorLogWriter) Write(p []byte) (int, error) {
	e.b.log().Debug("proxy: "+strings.TrimSpace(string(p)), "backend", e.b.name)
	return len(p), nil
}

// copyBuffers lends ReverseProxy 32 KiB copy buffers instead of letting it
// allocate one per request.
type copyBuffers struct{}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (copyBuffers) Get() []byte  { return *(bufPool.Get().(*[]byte)) }
func (copyBuffers) Put(b []byte) { bufPool.Put(&b) }
