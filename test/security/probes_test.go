package security

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Nothing about a request but its credentials opens a protected route: not
// a health checker's User-Agent, not a health or ping path.
func TestHealthCheckLookalikesDoNotBypassSignIn(t *testing.T) {
	t.Run("oauth2-proxy CVE-2026-34457: a health checker's User-Agent opens nothing", func(t *testing.T) {
		// GHSA-5hvv-m4w4-gf6v: oauth2-proxy answered any path as a health
		// check when the User-Agent was the configured ping agent.
		a := startApp(t)
		m := startMoat(t, "", fmt.Sprintf(frontConfig, a.URL))
		c := m.bare(t, client)
		for _, ua := range []string{"GoogleHC/1.0", "kube-probe/1.31", "ELB-HealthChecker/2.0", "Go-http-client/1.1", "moat", ""} {
			for _, p := range []string{"/", "/private/x", "/ping", "/healthz", "/readyz", "/metrics", "/health", "/_stcore/health", "/_moat/healthz/", "/_moat/health"} {
				resp, _ := do(t, c, http.MethodGet, "https://app.example.com"+p, nil, "User-Agent", ua)
				if !refused(resp) && resp.StatusCode != http.StatusNotFound {
					t.Errorf("User-Agent %q, %s: %d, want sign-in", ua, p, resp.StatusCode)
				}
			}
			// moat's own health paths answer for moat alone, and say
			// nothing else.
			for _, p := range []string{"/_moat/healthz", "/_moat/readyz"} {
				resp, body := do(t, c, http.MethodGet, "https://app.example.com"+p, nil, "User-Agent", ua)
				if body != "ok\n" && body != "not ready\n" {
					t.Errorf("User-Agent %q, %s: %d %q, want moat's bare health answer", ua, p, resp.StatusCode, body)
				}
			}
		}
		if s := a.requests(); len(s) != 0 {
			t.Errorf("the app was reached by %d anonymous requests", len(s))
		}
	})
}

// A page on another site cannot open a WebSocket to a signed-in app with
// the user's cookie.
func TestCrossSiteWebSocketsAreRefused(t *testing.T) {
	t.Run("Komari GHSA-q355-h244-969h: a cross-site WebSocket does not ride the user's cookie", func(t *testing.T) {
		// Komari accepted WebSockets from any Origin, so any page could
		// act as the signed-in user over them.
		a := startApp(t)
		m := startMoat(t, "", fmt.Sprintf(frontConfig, a.URL))
		m.addUser(t, staffEmail, staffPassword, "staff")
		c := http1(m.client(t, client))
		signIn(t, c, "app.example.com", staffEmail, staffPassword)
		a.requests()
		dial := func(origin string) int {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			hc := *c
			hc.Timeout = 0
			ws, resp, err := websocket.Dial(ctx, "wss://app.example.com/stream", &websocket.DialOptions{HTTPClient: &hc, HTTPHeader: http.Header{"Origin": {origin}}})
			if err == nil {
				ws.CloseNow()
			}
			if resp == nil {
				t.Fatalf("dial with Origin %s: %v", origin, err)
			}
			return resp.StatusCode
		}
		for _, origin := range []string{"https://evil.example", "https://app.example.com.evil.example", "null", "http://app.example.com"} {
			if status := dial(origin); status != http.StatusForbidden {
				t.Errorf("a WebSocket from %s got %d, want 403", origin, status)
			}
		}
		if s := a.requests(); len(s) != 0 {
			t.Errorf("the app saw %d cross-site upgrades", len(s))
		}
		if status := dial("https://app.example.com"); status != http.StatusSwitchingProtocols {
			t.Errorf("control: the app's own page got %d, want 101", status)
		}
	})
}
