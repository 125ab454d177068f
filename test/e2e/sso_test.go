package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moat-dev/moat/internal/auth/oidc/oidctest"
)

// TestSSOSignInWithARealBrowser opens the dashboard behind the moat binary
// on a route that signs in only with an OpenID Provider (oidctest:
// zitadel's op on 127.0.0.1): moat sends the browser straight to the
// provider's login page, the person signs in there, the provider sends the
// browser back to moat's /_moat/oidc/callback, and the Streamlit dashboard
// renders with the signed-in user's email.
func TestSSOSignInWithARealBrowser(t *testing.T) {
	t.Parallel()
	st := sharedStreamlit(t)
	op := oidctest.Start(t)
	m := startMoat(t, fmt.Sprintf(`backends:
  dashboard: {url: %q, health_path: /_stcore/health}
identity:
  sso:
    corp: {issuer: %q, client_id: %q, client_secret: %q, groups_claim: groups, refresh_interval: 5m}
routes:
  - {host: localhost, backend: dashboard, login: [corp], allow: ["group:staff"]}
`, st.URL, op.Issuer, oidctest.ClientID, oidctest.ClientSecret))
	op.SetRedirectURIs(m.URL + "/_moat/oidc/callback")

	ctx := newBrowser(t, m.Cert)
	within(t, ctx, 30*time.Second, "open the dashboard and land on the provider's login page",
		chromedp.Navigate(m.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#provider-login")),
	)
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loc, op.Issuer+"/login") {
		t.Fatalf("the browser is at %s, want the provider's login page at %s", loc, op.Issuer)
	}
	screenshot(t, ctx, "sso-provider-login")
	within(t, ctx, 30*time.Second, "sign in at the provider",
		chromedp.SendKeys(chromedp.CSS("#email"), "alice@example.com"),
		chromedp.SendKeys(chromedp.CSS("#password"), "correct horse battery"),
		chromedp.Click(chromedp.CSS("#sign-in")),
	)
	deadline := time.Now().Add(45 * time.Second)
	var caption string
	for time.Now().Before(deadline) {
		caption, _ = chromedp.Run(ctx, chromedp.Evaluate[string](captionJS))
		if caption != "" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	loc, _ = chromedp.Run(ctx, chromedp.Location())
	screenshot(t, ctx, "sso-dashboard")
	if !strings.HasPrefix(loc, m.URL+"/") {
		t.Fatalf("after signing in the browser is at %s, want the dashboard at %s", loc, m.URL)
	}
	if !strings.Contains(caption, "alice@example.com") {
		t.Fatalf("the dashboard does not show the signed-in user (caption %q)", caption)
	}
	if r, err := readRendered(ctx); err != nil || r.Title == "" {
		t.Errorf("dashboard did not render: %+v %v", r, err)
	}
}
