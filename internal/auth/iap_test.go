package auth_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/authtest"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/identity/assertion"
)

// TestAppVerifiesTheIAPAssertionAsGoogleDocumentsIt checks
// X-Goog-IAP-JWT-Assertion the way cloud.google.com/iap/docs/signed-headers-howto
// tells an app to: take the key set (moat's /_moat/jwks.json instead of
// https://www.gstatic.com/iap/verify/public_key-jwk), check the header's
// alg is ES256 and its kid is in the set, verify the signature, then
// check exp and iat (with IAP's 30 s of skew), aud is the expected
// audience and iss is https://cloud.google.com/iap; email and sub carry
// the user.
func TestAppVerifiesTheIAPAssertionAsGoogleDocumentsIt(t *testing.T) {
	const aud = "/projects/123456/global/backendServices/987654"
	h := authtest.NewSSO(t, func(cfg *config.Config) {
		cfg.Identity.IAPCompatibleHeaders = true
		cfg.Identity.IAPAudiences = map[string]string{"127.0.0.1/sso/": aud}
	})
	c := h.Browser()
	h.SSOSignIn(c, "/sso/", "alice@example.com")
	status, got := h.Identity(c, "/sso/")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	u, err := h.Store.GetUserByEmail(t.Context(), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if e := got[http.CanonicalHeaderKey(assertion.HeaderIAPEmail)]; e != "accounts.google.com:alice@example.com" {
		t.Errorf("%s = %q", assertion.HeaderIAPEmail, e)
	}
	if id := got[http.CanonicalHeaderKey(assertion.HeaderIAPID)]; id != "accounts.google.com:"+u.ID {
		t.Errorf("%s = %q", assertion.HeaderIAPID, id)
	}
	tok := got[http.CanonicalHeaderKey(assertion.HeaderIAPAssertion)]
	if tok == "" {
		t.Fatalf("no %s; app saw %v", assertion.HeaderIAPAssertion, got)
	}
	claims := verifyAsAnApp(t, h.Srv.Client(), h.Srv.URL+"/_moat/jwks.json", tok, assertion.IAPIssuer, aud)
	if claims.Email != "alice@example.com" || claims.Subject != "accounts.google.com:"+u.ID {
		t.Errorf("claims = %+v", claims)
	}
	if claims.IssuedAt == nil || claims.IssuedAt.Time().After(time.Now().Add(30*time.Second)) {
		t.Errorf("iat %v is in the future", claims.IssuedAt)
	}
	if claims.Expiry == nil || claims.Expiry.Time().Sub(claims.IssuedAt.Time()) > 10*time.Minute {
		t.Errorf("exp %v is more than 10 minutes after iat", claims.Expiry)
	}

	t.Run("a route not listed in iap_audiences gets its name as aud", func(t *testing.T) {
		b := h.Browser()
		h.SSOSignIn(b, "/api/", "bob@example.com")
		_, got := h.Identity(b, "/api/")
		verifyAsAnApp(t, h.Srv.Client(), h.Srv.URL+"/_moat/jwks.json", got[http.CanonicalHeaderKey(assertion.HeaderIAPAssertion)], assertion.IAPIssuer, "127.0.0.1/api/")
	})
}

func TestIAPHeadersAreOffByDefaultAndNeverForged(t *testing.T) {
	h := authtest.NewSSO(t, nil)
	c := h.Browser()
	h.SSOSignIn(c, "/sso/", "alice@example.com")
	req, _ := http.NewRequest("GET", h.Srv.URL+"/sso/", nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set(assertion.HeaderIAPEmail, "accounts.google.com:mallory@example.com")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := authtest.ReadBody(t, resp)
	resp.Body.Close()
	if strings.Contains(strings.ToLower(body), "x-goog") {
		t.Errorf("the app saw X-Goog headers without iap_compatible_headers: %s", body)
	}
}
