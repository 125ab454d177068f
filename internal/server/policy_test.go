package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/ratelimit/redistest"
	"github.com/moat-dev/moat/internal/testnet"
)

// clientFrom is a client of moat's HTTPS listener (HTTP/1.1) with
// connections leaving from the source address src, so the policy sees that
// client address; in front of the forward-auth endpoint it is the ingress.
func (m *testMoat) clientFrom(src string) *http.Client {
	return testnet.Pin{Addr: m.addrs.HTTPS, From: src}.Client()
}

// The seed's front door: the partner host admits only the customer's VPN
// address (here 127.0.0.2) and refuses everyone else with 403 before any
// login page; the staff host admits both.
const seedConfig = baseConfig + `  - {host: dash-partner.example.com, backend: app, security_policy: customer-vpn-only, login: [password], allow: ["group:customer-a"]}
  - {host: dash-staff.example.com, backend: app, public: true}
security_policies:
  customer-vpn-only:
    rules:
      - {priority: 0, match: {src_ip_ranges: ["127.0.0.2/32"]}, action: allow}
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: "deny(403)"}
`

func TestSeedScenarioPartnerHostAdmitsOnlyTheVPNAddress(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, seedConfig)
	tests := []struct {
		name, src, host string
		want            int
	}{
		{"the VPN address reaches the partner host's sign-in", "127.0.0.2", "dash-partner.example.com", http.StatusSeeOther},
		{"any other address is refused before the sign-in", "127.0.0.1", "dash-partner.example.com", http.StatusForbidden},
		{"the staff host admits the VPN address", "127.0.0.2", "dash-staff.example.com", http.StatusOK},
		{"the staff host admits other addresses", "127.0.0.1", "dash-staff.example.com", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, m.clientFrom(tt.src), "https://"+tt.host+"/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
			if resp.StatusCode != tt.want {
				t.Fatalf("got %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusForbidden && (strings.Contains(body, "password") || !strings.Contains(body, "Request ID")) {
				t.Errorf("refusal is not moat's policy page with a request id:\n%s", body)
			}
		})
	}
	resp, _ := get(t, m.clientFrom("127.0.0.1"), "https://dash-partner.example.com/_moat/login", "Accept", "text/html")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("login page from outside the VPN: %d, want 403", resp.StatusCode)
	}
	if !strings.Contains(m.logs.String(), `"policy":"customer-vpn-only"`) || !strings.Contains(m.logs.String(), `"rule_priority":"2147483647"`) {
		t.Error("decision log lacks the policy and rule priority")
	}
}

func TestBanThroughOneInstanceHoldsOnAnotherSharingRedis(t *testing.T) {
	redisURL := redistest.Start(t)
	cfg := strings.Replace(baseConfig, "tls: {self_signed: true}\n", "tls: {self_signed: true}\ncounters: "+redisURL+"\n", 1) +
		`  - {host: api.example.com, backend: app, public: true, security_policy: api}
security_policies:
  api:
    rules:
      - priority: 100
        match: {src_ip_ranges: ["*"]}
        action: rate_based_ban
        rate_limit: {count: 5, interval: 1m, key: ip, ban_duration: 10m, exceed_action: "deny(429)"}
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: allow}
`
	backend := echoBackend(t)
	a := startMoat(t, backend.URL, cfg)
	b := startMoat(t, backend.URL, cfg)
	var last int
	for i := 0; i < 8; i++ {
		resp, _ := get(t, a.clientFrom("127.0.0.3"), "https://api.example.com/")
		last = resp.StatusCode
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("after 8 requests to instance A the client got %d, want 429 (banned)", last)
	}
	resp, _ := get(t, b.clientFrom("127.0.0.3"), "https://api.example.com/")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("instance B answered the banned client %d, want 429", resp.StatusCode)
	}
	if resp, _ := get(t, b.clientFrom("127.0.0.4"), "https://api.example.com/"); resp.StatusCode != http.StatusOK {
		t.Errorf("instance B answered another client %d, want 200", resp.StatusCode)
	}
}

// Issue 12 #1: the sign-in pages of an IP-restricted path_prefix route
// ran under the policy of the host's "/" route, so a client the route
// refuses got the login form (/_moat/login?return_to=/partner/x → 200),
// could test passwords and reach the console. A sign-in page runs under
// the policy of the route its return_to names; pages that speak for the
// whole host (console, account) under every signed-in route's policy.
func TestSignInPagesOfAnIPRestrictedPathPrefixRouteRunUnderItsPolicy(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, baseConfig+`  - {host: shop.example.com, backend: app, login: [password], allow: ["group:staff"]}
  - {host: shop.example.com, path_prefix: /partner/, backend: app, security_policy: customer-vpn-only, login: [password], allow: ["group:customer-a"]}
  - {host: vpn.example.com, backend: app, public: true}
  - {host: vpn.example.com, path_prefix: /partner/, backend: app, security_policy: customer-vpn-only, login: [password], allow: ["group:customer-a"]}
security_policies:
  customer-vpn-only:
    rules:
      - {priority: 0, match: {src_ip_ranges: ["127.0.0.2/32"]}, action: allow}
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: "deny(403)"}
`)
	nav := []string{"Accept", "text/html", "Sec-Fetch-Mode", "navigate"}
	for _, tt := range []struct {
		name, src, path string
		want            int
	}{
		{"the partner route's login refuses an outside address", "127.0.0.1", "/_moat/login?return_to=/partner/x", http.StatusForbidden},
		{"the partner route's SSO-less second step refuses it too", "127.0.0.1", "/_moat/mfa?return_to=/partner/x", http.StatusForbidden},
		{"the partner route's passkey sign-in refuses it too", "127.0.0.1", "/_moat/passkey/sign-in/begin?return_to=/partner/x", http.StatusForbidden},
		{"the VPN address reaches the partner route's passkey sign-in (a POST only)", "127.0.0.2", "/_moat/passkey/sign-in/begin?return_to=/partner/x", http.StatusMethodNotAllowed},
		{"the console refuses it", "127.0.0.1", "/_moat/admin/users", http.StatusForbidden},
		{"the account page refuses it", "127.0.0.1", "/_moat/account", http.StatusForbidden},
		{"a login headed nowhere in particular takes a route that admits it", "127.0.0.1", "/_moat/login", http.StatusOK},
		{"the open route's login admits it", "127.0.0.1", "/_moat/login?return_to=/dashboard", http.StatusOK},
		{"static assets stay reachable", "127.0.0.1", "/_moat/static/moat.css", http.StatusOK},
		{"the VPN address gets the partner route's login", "127.0.0.2", "/_moat/login?return_to=/partner/x", http.StatusOK},
		{"the VPN address reaches the account page's sign-in", "127.0.0.2", "/_moat/account", http.StatusSeeOther},
		{"on a host whose only signed-in route refuses it, a bare login refuses it", "127.0.0.1", "vpn:/_moat/login", http.StatusForbidden},
		{"and so does the partner route's login there", "127.0.0.1", "vpn:/_moat/login?return_to=/partner/", http.StatusForbidden},
		{"the VPN address gets the bare login there", "127.0.0.2", "vpn:/_moat/login", http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			host, path := "shop.example.com", tt.path
			if p, ok := strings.CutPrefix(path, "vpn:"); ok {
				host, path = "vpn.example.com", p
			}
			resp, _ := get(t, m.clientFrom(tt.src), "https://"+host+path, nav...)
			if resp.StatusCode != tt.want {
				t.Fatalf("%s%s from %s: %d, want %d", host, path, tt.src, resp.StatusCode, tt.want)
			}
		})
	}
}
