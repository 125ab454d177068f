package security

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat-dev/moat/internal/auth/oidc/oidctest"
)

// Findings of moat's own hostile review (issue 12), kept as regression
// tests of the moat binary beside the peers' advisories.
func TestIssue12FindingsStayFixed(t *testing.T) {
	t.Run("issue 12 #9: a personal access token moat checked never reaches the app", func(t *testing.T) {
		// The token was moat's to check: sent on to the app, it would let
		// the app, or anything the app logs to, act as the user.
		a := startApp(t)
		m := startMoat(t, "", fmt.Sprintf(bearerConfig, a.URL))
		m.addUser(t, staffEmail, staffPassword, "staff")
		token := tokenRe.FindString(m.cli(t, "", "tokens", "create", staffEmail, "--name", "script"))
		if token == "" {
			t.Fatal("moat tokens create printed no token")
		}
		resp, _ := do(t, m.bare(t, client), http.MethodGet, "https://api.example.com/data", nil, "Authorization", "Bearer "+token)
		if resp.StatusCode != 200 {
			t.Fatalf("the token opened nothing: %d", resp.StatusCode)
		}
		got := a.last(t)
		if got.Header.Get("X-Moat-User-Email") != staffEmail {
			t.Errorf("the app was not told who the token's user is: %v", got.Header)
		}
		// And on a WebSocket opened with the token.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hc := m.bare(t, client)
		hc.Transport.(*http.Transport).ForceAttemptHTTP2 = false
		ws, _, err := websocket.Dial(ctx, "wss://api.example.com/stream", &websocket.DialOptions{HTTPClient: hc,
			HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
		if err != nil {
			t.Fatalf("WebSocket with the token: %v", err)
		}
		ws.CloseNow()
		upgrade := a.last(t)
		for _, s := range []seen{got, upgrade} {
			for name, v := range s.Header {
				if strings.Contains(strings.Join(v, ","), token) || strings.Contains(strings.Join(v, ","), token[len("moat_pat_"):]) {
					t.Errorf("the app got the token in %s (%s)", name, s.Path)
				}
			}
			if s.Header.Get("Authorization") != "" {
				t.Errorf("the app got an Authorization header on %s", s.Path)
			}
		}
	})

	t.Run("issue 12 #13: an hd claim from a provider other than Google does not pass domain:", func(t *testing.T) {
		// Keycloak mappers, Authelia custom claims: where users or admins
		// map their own claims, an hd claim vouches for nothing. Only
		// Google's, with hosted_domain set, stands for a Workspace.
		const pw = "correct horse battery"
		a := startApp(t)
		op := oidctest.Start(t,
			oidctest.User{Email: "alice@example.com", Password: pw, EmailVerified: true, HostedDomain: "example.com"},
			oidctest.User{Email: "mallory@evil.example", Password: pw, EmailVerified: true, HostedDomain: "example.com"})
		for _, hosted := range []string{"", "example.com"} {
			extra := ""
			if hosted != "" {
				extra = ", hosted_domain: " + hosted
			}
			m := startMoat(t, "", fmt.Sprintf(`backends:
  app: {url: %q}
identity:
  sso:
    corp: {issuer: %q, client_id: %q, client_secret: %q%s}
routes:
  - {host: sso.example.com, backend: app, login: [corp], allow: ["domain:example.com"]}
`, a.URL, op.Issuer, oidctest.ClientID, oidctest.ClientSecret, extra))
			if resp := ssoSignIn(t, m, op, m.client(t, client), "https://sso.example.com/", "alice@example.com", pw); resp.StatusCode != 200 {
				t.Errorf("control (hosted_domain %q): alice@example.com got %d, want the app", hosted, resp.StatusCode)
			}
			a.requests()
			resp := ssoSignIn(t, m, op, m.client(t, client), "https://sso.example.com/", "mallory@evil.example", pw)
			if resp.StatusCode == 200 || len(a.requests()) > 0 {
				t.Errorf("hosted_domain %q: mallory@evil.example with hd example.com passed domain:example.com (%d)", hosted, resp.StatusCode)
			}
		}
	})

	t.Run("issue 12 #1: a path_prefix route's security policy covers its sign-in pages and the console", func(t *testing.T) {
		// /_moat/* used the policy of the host's / route, so a client the
		// partner route's IP rule refuses could test passwords there,
		// lock accounts and reach the admin console.
		a := startApp(t)
		m := startMoat(t, "", fmt.Sprintf(`backends:
  app: {url: %q}
routes:
  - {host: app.example.com, backend: app, public: true}
  - {host: app.example.com, path_prefix: /open/, backend: app, login: [password], allow: ["group:staff"]}
  - {host: app.example.com, path_prefix: /partner/, backend: app, login: [password], allow: ["group:staff"], security_policy: vpn-only}
security_policies:
  vpn-only:
    rules:
      - {priority: 0, match: {src_ip_ranges: ["127.0.0.2/32"]}, action: allow}
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: "deny(403)"}
`, a.URL))
		m.addUser(t, staffEmail, staffPassword, "staff")
		outside, inside := m.client(t, client), m.client(t, "127.0.0.2")
		page := func(c *http.Client, target string) int {
			resp, _ := do(t, c, http.MethodGet, "https://app.example.com"+target, nil, "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
			return resp.StatusCode
		}
		if got := page(outside, "/_moat/login?return_to="+url.QueryEscape("/open/x")); got != 200 {
			t.Fatalf("control: the sign-in page for /open/ answered %d outside the VPN, want the form", got)
		}
		if got := page(inside, "/_moat/login?return_to="+url.QueryEscape("/partner/x")); got != 200 {
			t.Fatalf("control: the sign-in page for /partner/ answered %d inside the VPN, want the form", got)
		}
		for _, target := range []string{"/partner/x", "/_moat/login?return_to=" + url.QueryEscape("/partner/x"), "/_moat/admin/", "/_moat/account"} {
			if got := page(outside, target); got != http.StatusForbidden {
				t.Errorf("%s outside the VPN: %d, want the policy's 403", target, got)
			}
		}
		// A sign-in for the partner route, posted with a CSRF token from
		// the page of a route that lets the client in, signs nobody in;
		// the same post for that route does (control).
		signedIn := func() bool {
			for _, c := range cookies(outside, "app.example.com") {
				if strings.Contains(c.Name, "moat-session") {
					return true
				}
			}
			return false
		}
		_, form := do(t, outside, http.MethodGet, "https://app.example.com/_moat/login?return_to="+url.QueryEscape("/open/x"), nil, "Accept", "text/html")
		fields, _, ok := formFields(form, "/_moat/login")
		if !ok {
			t.Fatalf("the sign-in page for /open/ has no form:\n%.1000s", form)
		}
		post := func(returnTo string) *http.Response {
			fields.Set("email", staffEmail)
			fields.Set("password", staffPassword)
			fields.Set("return_to", returnTo)
			resp, _ := do(t, outside, http.MethodPost, "https://app.example.com/_moat/login?return_to="+url.QueryEscape(returnTo),
				strings.NewReader(fields.Encode()), "Content-Type", "application/x-www-form-urlencoded", "Origin", "https://app.example.com",
				"Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "navigate", "Accept", "text/html")
			return resp
		}
		if resp := post("/partner/x"); resp.StatusCode != http.StatusForbidden || signedIn() {
			t.Errorf("a sign-in for /partner/ posted outside the VPN: %d (session: %v), want the policy's 403 and no session", resp.StatusCode, signedIn())
		}
		if resp := post("/open/x"); resp.StatusCode != http.StatusSeeOther || !signedIn() {
			t.Errorf("control: a sign-in for /open/ outside the VPN: %d (session: %v), want 303 and a session", resp.StatusCode, signedIn())
		}
		if got := page(outside, "/partner/x"); got != http.StatusForbidden {
			t.Errorf("signed in, /partner/x outside the VPN: %d, want 403", got)
		}
		if s := a.requests(); len(s) != 0 {
			t.Errorf("the app was reached: %+v", s)
		}
	})
}
