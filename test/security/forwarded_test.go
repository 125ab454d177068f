package security

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// frontConfig is a host with a protected app and a public prefix, and a
// partner host that only 127.0.0.2 may reach. 127.0.0.1 is a trusted
// proxy (a TLS-terminating balancer, in http_mode serve); every other
// loopback address is a client.
const frontServer = "  trusted_proxies: [127.0.0.1/32]\n  http_mode: serve\n"

const frontConfig = `backends:
  app: {url: %q}
routes:
  - {host: app.example.com, backend: app, login: [password], allow: ["group:staff"]}
  - {host: app.example.com, path_prefix: /public/, backend: app, public: true}
  - {host: app.example.com, path_prefix: /admin/, backend: app, public: true, security_policy: nobody}
  - {host: partner.example.com, backend: app, public: true, security_policy: vpn-only}
security_policies:
  vpn-only:
    rules:
      - {priority: 0, match: {src_ip_ranges: ["127.0.0.2/32"]}, action: allow}
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: "deny(403)"}
  nobody:
    rules:
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: "deny(403)"}
`

// client is an untrusted client's address.
const client = "127.0.0.3"

// Forwarding headers are moat's to write: from a client (or anyone but a
// trusted proxy) they never choose a route, lift a rule, or reach the app.
func TestForwardedHeadersFromClientsAreNotTrusted(t *testing.T) {
	a := startApp(t)
	m := startMoat(t, frontServer, fmt.Sprintf(frontConfig, a.URL))

	t.Run("oauth2-proxy CVE-2026-40575: X-Forwarded-Uri does not pick the route", func(t *testing.T) {
		// GHSA-7x63-xv5r-3p2x: oauth2-proxy matched skip-auth routes
		// against a client's X-Forwarded-Uri, not the path it proxied.
		resp, _ := do(t, m.bare(t, client), http.MethodGet, "https://app.example.com/private/report", nil,
			"X-Forwarded-Uri", "/public/x", "X-Original-Url", "/public/x", "X-Rewrite-Url", "/public/x",
			"X-Forwarded-Path", "/public/x", "X-Forwarded-Prefix", "/public")
		if !refused(resp) {
			t.Errorf("a protected path with a public X-Forwarded-Uri got %d, want sign-in", resp.StatusCode)
		}
		if s := a.requests(); len(s) != 0 {
			t.Errorf("the app was reached: %+v", s)
		}
	})

	t.Run("Traefik CVE-2026-35051: X-Forwarded-Prefix never reaches the app", func(t *testing.T) {
		// GHSA-6384-m2mw-rf54: Traefik rebuilt X-Forwarded-For/Host/Proto
		// but passed a client's X-Forwarded-Prefix to the auth service.
		resp, _ := do(t, m.bare(t, client), http.MethodGet, "https://app.example.com/public/x", nil,
			"X-Forwarded-Prefix", "/admin", "X-Forwarded-Uri", "/admin/x", "X-Original-Url", "/admin/x",
			"X-Forwarded-Host", "admin.example.com", "X-Forwarded-Server", "admin", "Forwarded", "for=127.0.0.2;host=admin.example.com;proto=https")
		if resp.StatusCode != 200 {
			t.Fatalf("public page got %d", resp.StatusCode)
		}
		h := a.last(t).Header
		for _, name := range []string{"X-Forwarded-Prefix", "X-Forwarded-Uri", "X-Original-Url", "X-Forwarded-Server", "Forwarded"} {
			if v := h.Values(name); len(v) > 0 {
				t.Errorf("the app got the client's %s: %q", name, v)
			}
		}
		if got := h.Get("X-Forwarded-Host"); got != "app.example.com" {
			t.Errorf("the app got X-Forwarded-Host %q, want moat's app.example.com", got)
		}
	})

	t.Run("authentik CVE-2024-47070: an unparsable X-Forwarded-For does not lift an IP rule", func(t *testing.T) {
		// authentik skipped a policy when X-Forwarded-For held an
		// unparsable address such as "a".
		for _, tc := range []struct {
			from, xff string
			want      int
		}{
			{"127.0.0.1", "127.0.0.2", 200},    // control: the trusted proxy names the VPN client
			{"127.0.0.1", "a", 403},            // unparsable: the peer, a proxy, is not the VPN
			{"127.0.0.1", "127.0.0.2, a", 403}, // one bad hop spoils the chain
			{"127.0.0.1", "127.0.0.2,,", 403},  // empty hops too
			{"127.0.0.1", strings.Repeat("1", 9000), 403},
			{client, "127.0.0.2", 403}, // from a client it is not believed
			{client, "", 403},
		} {
			resp, _ := do(t, m.bare(t, tc.from), http.MethodGet, "https://partner.example.com/", nil, "X-Forwarded-For", tc.xff)
			if resp.StatusCode != tc.want {
				t.Errorf("from %s with X-Forwarded-For %.40q: %d, want %d", tc.from, tc.xff, resp.StatusCode, tc.want)
			}
		}
		a.requests()
	})

	t.Run("Traefik CVE-2026-54764: a client's X-Forwarded-Proto does not make plain HTTP https", func(t *testing.T) {
		// GHSA-3q9r-p662-5j8m: Traefik derived X-Forwarded-Port 443
		// from a client's X-Forwarded-Proto: https on plain HTTP.
		resp, _ := do(t, m.plainClient(t, client), http.MethodGet, "http://app.example.com/public/x", nil,
			"X-Forwarded-Proto", "https", "X-Forwarded-Port", "443", "X-Forwarded-Ssl", "on",
			"X-Forwarded-Scheme", "https", "Front-End-Https", "on", "X-Url-Scheme", "https")
		if resp.StatusCode != 200 {
			t.Fatalf("public page over plain HTTP got %d", resp.StatusCode)
		}
		if hsts := resp.Header.Get("Strict-Transport-Security"); hsts != "" {
			t.Errorf("moat sent HSTS to a plain-HTTP client who claimed https: %q", hsts)
		}
		h := a.last(t).Header
		if got := h.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "http" {
			t.Errorf("the app got X-Forwarded-Proto %q, want moat's http", got)
		}
		for _, name := range []string{"X-Forwarded-Port", "X-Forwarded-Ssl", "X-Forwarded-Scheme", "Front-End-Https", "X-Url-Scheme"} {
			if v := h.Values(name); len(v) > 0 {
				t.Errorf("the app got the client's %s: %q", name, v)
			}
		}
	})
}
