package security

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/oidc/oidctest"
)

// ssoSignIn walks the single sign-on flow over HTTP as a browser would:
// open target on moat, follow moat's redirects to the provider, sign in
// there as email, follow the provider back to moat's callback, and return
// moat's answer to target afterwards.
func ssoSignIn(t *testing.T, m *moat, op *oidctest.Provider, c *http.Client, target, email, password string) *http.Response {
	t.Helper()
	next := target
	for i := 0; ; i++ {
		if i > 5 {
			t.Fatalf("moat never sent the browser to the provider (last %s)", next)
		}
		resp, body := do(t, c, http.MethodGet, next, nil, "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
		loc, err := resp.Location()
		if err != nil {
			t.Fatalf("%s answered %d without a redirect:\n%.1000s", next, resp.StatusCode, body)
		}
		if strings.HasPrefix(loc.String(), op.Issuer) {
			next = loc.String()
			break
		}
		next = loc.String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	callback, err := op.Login(ctx, next, email, password)
	if err != nil {
		t.Fatalf("sign-in at the provider: %v", err)
	}
	resp, _ := do(t, c, http.MethodGet, callback.String(), nil, "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if resp.StatusCode/100 != 3 {
		return resp // moat refused at the callback
	}
	resp, _ = do(t, c, http.MethodGet, target, nil, "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	return resp
}

// An allow list admits what it names and nothing its spelling can be
// stretched to: a query or fragment does not make a protected path public,
// and a look-alike email domain does not pass domain:.
func TestAllowListsCannotBeWidened(t *testing.T) {
	a := startApp(t)

	t.Run("oauth2-proxy CVE-2026-41059: a fragment or query does not reach a public prefix", func(t *testing.T) {
		// GHSA-pxq7-h93f-9jrg (fragments) and GHSA-7rh7-c77v-6434
		// (queries): oauth2-proxy matched its skip-auth allow list
		// against more than the path the app serves.
		m := startMoat(t, "", fmt.Sprintf(frontConfig, a.URL))
		c := m.bare(t, client)
		for _, target := range []string{"/private/x#/public/", "/private/x%23/public/x", "/private/x?/public/", "/private/x?r=/public/x",
			"/private/x;/public/x", "/private/x%3f/public/x", "/publicity/x", "/public.x"} {
			resp, _ := rawGet(t, c, "app.example.com", target)
			if !refused(resp) && resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s: %d, want sign-in (or 400)", target, resp.StatusCode)
			}
		}
		if s := a.requests(); len(s) != 0 {
			t.Errorf("the app was reached: %+v", s)
		}
	})

	t.Run("oauth2-proxy CVE-2026-40574: a look-alike email domain does not pass domain:", func(t *testing.T) {
		// GHSA-c5c4-8r6x-56w3: attacker@evil.com@company.com satisfied
		// email_domain company.com; neither it nor its neighbours (a
		// domain that ends with the allowed one, a subdomain, a quoted
		// local part) may pass: moat takes one plain addr-spec from a
		// provider and refuses the sign-in otherwise.
		const pw = "correct horse battery"
		users := []oidctest.User{{Email: "alice@example.com", Password: pw, EmailVerified: true}}
		for _, e := range []string{"mallory@notexample.com", "mallory@example.com.evil.example", "mallory@sub.example.com",
			`"mallory@example.com"@evil.example`, "mallory%example.com@evil.example",
			// Two @: the text after the last one is example.com.
			"mallory@evil.example@example.com", "mallory@evil.example.com@example.com"} {
			users = append(users, oidctest.User{Email: e, Password: pw, EmailVerified: true})
		}
		op := oidctest.Start(t, users...)
		m := startMoat(t, "", fmt.Sprintf(`backends:
  app: {url: %q}
identity:
  sso:
    corp: {issuer: %q, client_id: %q, client_secret: %q}
routes:
  - {host: sso.example.com, backend: app, login: [corp], allow: ["domain:example.com"]}
`, a.URL, op.Issuer, oidctest.ClientID, oidctest.ClientSecret))
		for _, u := range users {
			resp := ssoSignIn(t, m, op, m.client(t, client), "https://sso.example.com/", u.Email, pw)
			reached := len(a.requests()) > 0
			if u.Email == "alice@example.com" {
				if resp.StatusCode != 200 || !reached {
					t.Errorf("control: %s got %d, want the app", u.Email, resp.StatusCode)
				}
				continue
			}
			if resp.StatusCode == 200 || reached {
				t.Errorf("%s passed domain:example.com (status %d, app reached: %v)", u.Email, resp.StatusCode, reached)
			}
		}
	})
}
