package proxy

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/testlog"
	"github.com/moat-dev/moat/internal/testnet"
	"github.com/moat-dev/moat/internal/testwait"
)

// testRoute is the route every test request matches.
var testRoute = &config.Route{Host: "app.test", Backend: "app", Public: true}

// startBackend starts a test backend server.
func startBackend(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// testParkAfter is Sockets.ParkAfter in tests: short, so that sockets park
// between most frames.
const testParkAfter = 5 * time.Millisecond

type proxyOpts struct {
	cfg     config.Backend
	sockets *Sockets
	// server adjusts the front server before it starts.
	server func(*http.Server)
	tls    bool
	hook   func(out, in *http.Request)
	// route is the route every request matches; nil means testRoute.
	route *config.Route
}

type testProxy struct {
	*httptest.Server
	backend *Backend
	log     *testlog.Buffer
	sockets *Sockets
}

// startProxy starts a front server that does what moat's server does
// before the proxy (request id, client IP, scheme, route; the session id
// and the user's id from the "session" and "user" query parameters,
// standing in for sign-in) and then
// hands the request to a Backend for backendURL, or for the replicas in
// o.cfg.URLs. The request id is echoed in the X-Test-Request-Id response
// header.
func startProxy(t testing.TB, backendURL string, o proxyOpts) *testProxy {
	t.Helper()
	cfg := o.cfg
	if len(cfg.URLs) == 0 {
		cfg.URL = backendURL
	}
	if o.sockets == nil {
		// Every WebSocket test runs with directions parking after a few
		// idle milliseconds, so each wait between frames goes through
		// the poller and back (park_test.go tests parking itself).
		o.sockets = &Sockets{ParkAfter: testParkAfter}
	}
	b, err := New("app", &cfg, o.sockets)
	if err != nil {
		t.Fatalf("new backend: %v", err)
	}
	logs := &testlog.Buffer{}
	b.Log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b.SetIdentity = o.hook
	t.Cleanup(b.Close)
	route := o.route
	if route == nil {
		route = testRoute
	}
	front := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := &request.Info{ID: request.NewID(), Start: time.Now(), Scheme: "http", Route: route}
		if r.TLS != nil {
			info.Scheme = "https"
		}
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			info.ClientIP, _ = netip.ParseAddr(host)
		}
		info.User.SessionID = r.URL.Query().Get("session")
		info.User.ID = r.URL.Query().Get("user")
		w.Header().Set("X-Test-Request-Id", info.ID)
		b.ServeHTTP(w, request.With(r, info))
	})
	srv := httptest.NewUnstartedServer(front)
	if o.server != nil {
		o.server(srv.Config)
	}
	if o.tls {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return &testProxy{Server: srv, backend: b, log: logs, sockets: o.sockets}
}

// refusedURL returns an http URL on which nothing listens.
func refusedURL(t testing.TB) string {
	t.Helper()
	return "http://" + testnet.FreeAddr(t)
}

// eventually waits up to five seconds for cond to hold.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, 5*time.Second, what, cond)
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
