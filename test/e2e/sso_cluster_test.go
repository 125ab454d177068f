package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/oidc/oidctest"
	"github.com/moat-dev/moat/internal/store/storetest"
)

// TestAnOIDCCallbackRedeemedOnOneInstanceIsRefusedOnAnother: two moat
// processes on one PostgreSQL, with one instance key, behind one name. A
// sign-in with a provider begun and finished on A; the same callback, with
// a copy of the browser's cookies (the sealed flow cookie opens on every
// instance), replayed on B is refused as already used. The provider is
// down for the replay, so only the replay check can answer it: an instance
// that took the state for fresh would try to redeem the code and answer
// 503. Alice herself, signed in, repeating the callback on B (a restored
// tab) is sent where her sign-in was headed, as on A.
func TestAnOIDCCallbackRedeemedOnOneInstanceIsRefusedOnAnother(t *testing.T) {
	dsn := storetest.Postgres(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	t.Setenv("MOAT_SECRET_KEY", base64.StdEncoding.EncodeToString(key))
	op := oidctest.Start(t)
	cfg := fmt.Sprintf("store: %q\n", dsn) + fmt.Sprintf(`backends:
  app: {url: %q}
identity:
  sso:
    corp: {issuer: %q, client_id: %q, client_secret: %q, groups_claim: groups}
routes:
  - {host: localhost, backend: app, login: [corp], allow: ["group:staff"]}
`, whoAmI(t), op.Issuer, oidctest.ClientID, oidctest.ClientSecret)
	a := startMoat(t, cfg)
	b := startMoat(t, cfg)
	op.SetRedirectURIs(a.URL + "/_moat/oidc/callback")

	alice := newBrowserOf(t, a.URL, a, b)
	// A page navigation, as a browser sends it: moat answers a script's
	// call with 401, a navigation with the way to the provider.
	nav := http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"document"}}
	const headed = "/reports/q1?region=emea"
	path := headed
	for range 5 {
		status, body, h := alice.do(a, "GET", path, nil, nav)
		if status/100 != 3 {
			t.Fatalf("GET %s on A: %d, want a redirect towards the provider\n%s", path, status, body)
		}
		path = h.Get("Location")
		if strings.HasPrefix(path, op.Issuer+"/") {
			break
		}
	}
	if !strings.HasPrefix(path, op.Issuer+"/") {
		t.Fatalf("moat sent the browser to %s, want the provider at %s", path, op.Issuer)
	}
	cb, err := op.Login(t.Context(), path, "alice@example.com", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	thief := newBrowserOf(t, a.URL, a, b)
	thief.jar = jarCopy(t, alice.jar)
	if status, body, h := alice.do(a, "GET", cb.RequestURI(), nil, nav); status != http.StatusSeeOther || h.Get("Location") != headed {
		t.Fatalf("the callback on A: %d %s, want 303 to %s\n%s", status, h.Get("Location"), headed, body)
	}
	if status, body, _ := alice.do(b, "GET", "/", nil, nav); status != http.StatusOK || !strings.Contains(body, "alice@example.com") {
		t.Fatalf("the session on B: %d %s", status, body)
	}

	op.SetDown(true)
	if status, body, h := alice.do(b, "GET", cb.RequestURI(), nil, nav); status != http.StatusSeeOther || h.Get("Location") != headed {
		t.Fatalf("the callback repeated on B by the signed-in browser: %d %s, want 303 to %s\n%s", status, h.Get("Location"), headed, body)
	}
	status, body, _ := thief.do(b, "GET", cb.RequestURI(), nil, nav)
	if status != http.StatusBadRequest || !strings.Contains(body, "This sign-in has expired") {
		t.Fatalf("the callback replayed on B: %d, want 400 \"This sign-in has expired\"\n%s", status, body)
	}
	b.WaitLog(t, 5*time.Second, func(r map[string]any) bool {
		e, _ := r["err"].(string)
		return r["msg"] == "sso sign-in failed" && strings.Contains(e, "state already used")
	})
}
