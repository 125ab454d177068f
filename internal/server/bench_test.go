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
// a signed-in route behind bench/run's ten rules (tenRulesFile), in front
// of a trivial backend.
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
%sroutes:
  - {host: dash.example.com, backend: app, public: true}
  - {host: app.example.com, backend: app, login: [password], allow: ["group:staff"], security_policy: ten-rules}
`

// tenRulesFile is bench/run's ten-rule policy, one definition for both.
const tenRulesFile = "../../bench/harness/ten-rules.yaml"

func tenRules(b testing.TB) string {
	b.Helper()
	raw, err := os.ReadFile(tenRulesFile)
	if err != nil {
		b.Fatal(err)
	}
	return string(raw)
}

// BenchmarkFrontDoor is one request through the whole front door as
// Server.ServeHTTP runs it — request id, client IP, route, security
// policy, sign-in and allow list, the proxy and a round trip to a trivial
// backend on loopback — without TLS or a listener, on a public route and on
// a signed-in one behind bench/run's ten rules, each with a bare request
// (wrk's: the Host and, signed in, the session cookie) and with bench/run's
// browser-like one. Compare runs of the same machine only.
func BenchmarkFrontDoor(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello, world\n")
	}))
	b.Cleanup(backend.Close)
	dir := b.TempDir()
	path := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(benchConfig, dir, backend.URL, tenRules(b))), 0o600); err != nil {
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

	// The browser-like request of a signed-in person carries moat's
	// session cookie after the app's.
	signedInBrowser := browserHeaders.Clone()
	signedInBrowser["Cookie"] = []string{browserHeaders.Get("Cookie") + "; " + cookie}
	for _, tc := range []struct {
		name, url string
		header    http.Header
	}{
		{"public", "https://dash.example.com/reports", nil},
		{"signed-in", "https://app.example.com/reports", http.Header{"Cookie": {cookie}}},
		{"public-browser", "https://dash.example.com" + browserPath, browserHeaders},
		{"signed-in-browser", "https://app.example.com" + browserPath, signedInBrowser},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := httptest.NewRequest(http.MethodGet, tc.url, nil)
					r.RemoteAddr = "127.0.0.1:40000"
					for k, v := range tc.header {
						r.Header[k] = v
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

// browserPath and browserHeaders are bench/run's browser-like request: a
// navigation with 12 headers (Host among them), 5 query arguments and 3
// cookies.
const browserPath = "/dashboard?tab=sales&region=emea&year=2024&page=2&sort=desc"

var browserHeaders = http.Header{
	"User-Agent":                {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
	"Accept":                    {"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"},
	"Accept-Language":           {"en-US,en;q=0.9,ja;q=0.8"},
	"Accept-Encoding":           {"gzip, deflate, br, zstd"},
	"Referer":                   {"https://app.example.com/dashboard?tab=overview"},
	"Cookie":                    {"_streamlit_xsrf=2|9f1c2a7e|8d0b6f4c1e2a3b5c7d9e0f1a2b3c4d5e|1733356800; ajs_anonymous_id=5e1f7c3a-8b2d-4f6e-9a0c-1d2e3f4a5b6c; theme=dark"},
	"Sec-Ch-Ua":                 {`"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"`},
	"Sec-Fetch-Dest":            {"document"},
	"Sec-Fetch-Mode":            {"navigate"},
	"Sec-Fetch-Site":            {"same-origin"},
	"Upgrade-Insecure-Requests": {"1"},
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
