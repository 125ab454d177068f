package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
)

// appClaims is what an app reads from X-Moat-Assertion.
type appClaims struct {
	jwt.Claims
	Email  string   `json:"email"`
	Groups []string `json:"groups"`
}

// verifyAsAnApp checks an assertion the way an app behind moat would, with
// nothing but the JWKS fetched from /_moat/jwks.json: signature by a key
// the set names, iss, aud and exp.
func verifyAsAnApp(t *testing.T, client *http.Client, jwksURL, token, issuer, audience string) appClaims {
	t.Helper()
	resp, err := client.Get(jwksURL) // no cookie, no session
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		t.Fatalf("decode JWKS: %v", err)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("parse assertion: %v", err)
	}
	if len(tok.Headers) != 1 {
		t.Fatalf("%d signatures", len(tok.Headers))
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q is not in the JWKS (%d keys)", tok.Headers[0].KeyID, len(set.Keys))
	}
	var c appClaims
	if err := tok.Claims(keys[0].Key, &c); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: issuer, AnyAudience: jwt.Audience{audience}, Time: time.Now()}, 30*time.Second); err != nil {
		t.Fatalf("claims: %v", err)
	}
	return c
}

func TestAppVerifiesTheAssertionWithOnlyTheJWKS(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	alice := h.addUser("alice@example.com", alicePassword, []string{"staff", "sales"}, false)
	c := h.browser()
	wantRedirect(t, h.login(c, "alice@example.com", alicePassword, "/app/"), "/app/")
	_, id := h.identity(c, "/app/")
	if id[assertion.HeaderUserID] != alice.ID || id[assertion.HeaderUserGroups] != "sales,staff" {
		t.Errorf("identity headers: %v", id)
	}
	jwksURL := h.srv.URL + "/_moat/jwks.json"
	claims := verifyAsAnApp(t, h.srv.Client(), jwksURL, id[assertion.HeaderAssertion], "https://127.0.0.1", "127.0.0.1/app/")
	if claims.Subject != alice.ID || claims.Email != "alice@example.com" || strings.Join(claims.Groups, ",") != "sales,staff" {
		t.Errorf("claims = %+v", claims)
	}
	if life := claims.Expiry.Time().Sub(claims.IssuedAt.Time()); life != assertion.AssertionLifetime {
		t.Errorf("exp - iat = %v, want %v", life, assertion.AssertionLifetime)
	}
	t.Run("a token for another route fails the audience check", func(t *testing.T) {
		_, other := h.identity(c, "/app/x")
		tok, _ := jwt.ParseSigned(other[assertion.HeaderAssertion], []jose.SignatureAlgorithm{jose.ES256})
		var cl appClaims
		_ = tok.UnsafeClaimsWithoutVerification(&cl)
		if err := cl.Validate(jwt.Expected{AnyAudience: jwt.Audience{"127.0.0.1/corp/"}}); err == nil {
			t.Error("the /app/ assertion passes as one for /corp/")
		}
	})
	t.Run("a tampered token fails", func(t *testing.T) {
		parts := strings.Split(id[assertion.HeaderAssertion], ".")
		forged, _ := json.Marshal(map[string]any{"iss": "https://127.0.0.1", "aud": "127.0.0.1/app/", "sub": "admin", "email": "boss@example.com", "exp": time.Now().Add(time.Hour).Unix()})
		token := parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]
		tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		var cl appClaims
		var set jose.JSONWebKeySet
		resp, err := h.srv.Client().Get(h.srv.URL + "/_moat/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&set)
		resp.Body.Close()
		if len(set.Keys) == 0 {
			t.Fatal("no key published")
		}
		if err := tok.Claims(set.Keys[0].Key, &cl); err == nil {
			t.Error("a forged payload verified")
		}
	})
}

func TestKeyRotationKeepsTheOldKeyPublished(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	c := h.browser()
	wantRedirect(t, h.login(c, "alice@example.com", alicePassword, "/app/"), "/app/")
	_, before := h.identity(c, "/app/")
	oldKid := kidOf(t, before[assertion.HeaderAssertion])

	newKid, err := assertion.RotateKey(context.Background(), h.store, h.svc.p.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.svc.p.Signer.Reload(context.Background()); err != nil { // Run does this every keyReload
		t.Fatal(err)
	}
	_, after := h.identity(c, "/app/")
	if got := kidOf(t, after[assertion.HeaderAssertion]); got != newKid {
		t.Fatalf("after rotation the assertion is signed by %q, want the new key %q", got, newKid)
	}
	jwksURL := h.srv.URL + "/_moat/jwks.json"
	client := h.srv.Client()
	resp, err := client.Get(jwksURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	if len(set.Key(oldKid)) != 1 || len(set.Key(newKid)) != 1 {
		t.Fatalf("JWKS after rotation lacks a key: old %d, new %d", len(set.Key(oldKid)), len(set.Key(newKid)))
	}
	// A token signed by the old key before the rotation still verifies.
	verifyAsAnApp(t, client, jwksURL, before[assertion.HeaderAssertion], "https://127.0.0.1", "127.0.0.1/app/")

	keys, err := assertion.ListKeys(context.Background(), h.store)
	if err != nil || len(keys) != 2 || keys[0].ID != newKid || !keys[1].Published || keys[1].RetireAt.IsZero() {
		t.Fatalf("assertion.ListKeys = %+v, %v", keys, err)
	}
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Headers[0].KeyID
}

func TestIdentityHeadersAreNotSetForAnonymousRequests(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	out, _ := http.NewRequest("GET", "https://127.0.0.1/app/", nil)
	in, _ := http.NewRequest("GET", "https://127.0.0.1/app/", nil)
	h.svc.SetIdentity(out, in)
	if len(out.Header) != 0 {
		t.Errorf("headers set for an anonymous request: %v", out.Header)
	}
}

func TestIAPCompatibleHeadersCarryTheSameIdentity(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *config.Config) { c.Identity.IAPCompatibleHeaders = true })
	u := h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	route := h.routes["/app/"]
	in := httptest.NewRequest("GET", "https://127.0.0.1/app/", nil)
	in = request.With(in, &request.Info{ID: "t", Route: route, User: request.User{ID: u.ID, Email: u.Email, Groups: []string{"staff"}, SessionID: "s"}})
	out := httptest.NewRequest("GET", "http://backend/app/", nil)
	h.svc.SetIdentity(out, in)
	if got := out.Header.Get(assertion.HeaderIAPEmail); got != "accounts.google.com:alice@example.com" {
		t.Errorf("%s = %q", assertion.HeaderIAPEmail, got)
	}
	if got := out.Header.Get(assertion.HeaderIAPID); got != "accounts.google.com:"+u.ID {
		t.Errorf("%s = %q", assertion.HeaderIAPID, got)
	}
	// IAP's assertion has IAP's iss and aud, so it is its own token
	// (iap_test.go verifies it as Google's documentation says).
	if a := out.Header.Get(assertion.HeaderIAPAssertion); a == "" || a == out.Header.Get(assertion.HeaderAssertion) {
		t.Errorf("IAP assertion %q, moat assertion %q", a, out.Header.Get(assertion.HeaderAssertion))
	}
}
