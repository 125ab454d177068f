package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/store"
)

// benchConfig mirrors bench/run's moat: a public route with no policy, and
// a signed-in route behind ten rules and a rate limit that a benign client
// passes through, in front of a trivial backend.
const benchConfig = `
server:
  https_addr: "127.0.0.1:0"
  http_addr: "127.0.0.1:0"
  internal_addr: "127.0.0.1:0"
data_dir: %q
tls: {self_signed: true}
backends:
  app: {url: %q}
security_policies:
  ten-rules:
    rules:
      - {priority: 1, match: {src_ip_ranges: ["203.0.113.0/24", "2001:db8::/32"]}, action: "deny(403)"}
      - {priority: 2, match: {src_ip_ranges: ["198.51.100.0/24"]}, action: "deny(403)"}
      - {priority: 3, expr: "request.path.startsWith('/admin')", action: "deny(404)"}
      - {priority: 4, expr: "request.headers['user-agent'].contains('sqlmap')", action: "deny(403)"}
      - {priority: 5, expr: "request.method == 'TRACE'", action: "deny(403)"}
      - {priority: 6, expr: "request.query.contains('union select')", action: "deny(403)"}
      - {priority: 7, expr: "inIpRange(origin.ip, '192.0.2.0/24')", action: "deny(403)"}
      - {priority: 8, match: {src_ip_ranges: ["100.64.0.0/10"]}, action: "deny(403)"}
      - {priority: 9, expr: "request.path.endsWith('.php')", action: "deny(404)"}
      - priority: 10
        match: {src_ip_ranges: ["*"]}
        action: throttle
        rate_limit: {count: 1000000000, interval: 1m, key: ip, exceed_action: "deny(429)"}
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: "deny(403)"}
routes:
  - {host: dash.example.com, backend: app, public: true}
  - {host: app.example.com, backend: app, login: [password], allow: ["group:staff"], security_policy: ten-rules}
`

// BenchmarkFrontDoor is one request through the whole front door as
// Server.ServeHTTP runs it — request id, client IP, route, security
// policy, sign-in and allow list, the proxy and a round trip to a trivial
// backend on loopback — without TLS or a listener, on a public route and on
// a signed-in one behind bench/run's ten rules. Compare runs of the same
// machine only.
func BenchmarkFrontDoor(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello, world\n")
	}))
	b.Cleanup(backend.Close)
	dir := b.TempDir()
	path := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(benchConfig, dir, backend.URL)), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(cfg, path, slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		s.world.Load().close()
		s.close()
	})
	cookie := benchSession(b, s)

	for _, tc := range []struct{ name, url, cookie string }{
		{"public", "https://dash.example.com/reports", ""},
		{"signed-in", "https://app.example.com/reports", cookie},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := httptest.NewRequest(http.MethodGet, tc.url, nil)
					r.RemoteAddr = "127.0.0.1:40000"
					if tc.cookie != "" {
						r.Header.Set("Cookie", tc.cookie)
					}
					w := httptest.NewRecorder()
					s.ServeHTTP(w, r)
					if w.Code != http.StatusOK {
						b.Errorf("status %d: %s", w.Code, w.Body)
						return
					}
				}
			})
		})
	}
}

// benchSession starts a session for a staff user and returns its Cookie
// header.
func benchSession(b *testing.B, s *Server) string {
	b.Helper()
	ctx := context.Background()
	u := &store.User{Email: "bench@example.com", Groups: []string{"staff"}}
	if err := s.store.CreateUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "https://app.example.com/_moat/login", nil)
	if _, err := s.identity.Sessions.Start(ctx, w, r, u, "password", session.Lifetimes{MaxAge: time.Hour, Idle: time.Hour}); err != nil {
		b.Fatal(err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == session.Cookie {
			return c.Name + "=" + c.Value
		}
	}
	b.Fatal("no session cookie")
	return ""
}
