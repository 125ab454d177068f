package auth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/moat-dev/moat/internal/auth/authtest"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/identity/assertion"
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
	h := authtest.New(t, nil)
	alice := h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff", "sales"}, false)
	c := h.Browser()
	authtest.WantRedirect(t, h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/"), "/app/")
	_, id := h.Identity(c, "/app/")
	if id[assertion.HeaderUserID] != alice.ID || id[assertion.HeaderUserGroups] != "sales,staff" {
		t.Errorf("identity headers: %v", id)
	}
	jwksURL := h.Srv.URL + "/_moat/jwks.json"
	claims := verifyAsAnApp(t, h.Srv.Client(), jwksURL, id[assertion.HeaderAssertion], "https://127.0.0.1", "127.0.0.1/app/")
	if claims.Subject != alice.ID || claims.Email != "alice@example.com" || strings.Join(claims.Groups, ",") != "sales,staff" {
		t.Errorf("claims = %+v", claims)
	}
	if life := claims.Expiry.Time().Sub(claims.IssuedAt.Time()); life != assertion.AssertionLifetime {
		t.Errorf("exp - iat = %v, want %v", life, assertion.AssertionLifetime)
	}
	t.Run("a token for another route fails the audience check", func(t *testing.T) {
		_, other := h.Identity(c, "/app/x")
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
		resp, err := h.Srv.Client().Get(h.Srv.URL + "/_moat/jwks.json")
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

// Issue 9: a rotation publishes the new key at once and signs with it only
// after twice the JWKS cache lifetime, so an app holding a JWKS fetched
// just before the rotation never meets an unknown kid; the old key stays
// published for the tokens it signed.
func TestKeyRotationPublishesTheNewKeyFirstAndSignsWithItLater(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, func(c *config.Config) { c.Identity.JWKSMaxAge = config.Duration(time.Second) })
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	c := h.Browser()
	authtest.WantRedirect(t, h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/"), "/app/")
	_, before := h.Identity(c, "/app/")
	oldKid := kidOf(t, before[assertion.HeaderAssertion])

	const maxAge = time.Second
	newKid, signsFrom, err := assertion.RotateKey(context.Background(), h.Store, h.Proc.Key, maxAge)
	if err != nil {
		t.Fatal(err)
	}
	if want := assertion.SwitchDelay(maxAge); time.Until(signsFrom) > want || want != 2*maxAge {
		t.Fatalf("the new key signs from %s, want %s after the rotation", signsFrom, want)
	}
	if err := h.Proc.Signer.Reload(context.Background()); err != nil { // the fan-out's KeysChanged does this
		t.Fatal(err)
	}
	jwksURL := h.Srv.URL + "/_moat/jwks.json"
	client := h.Srv.Client()
	resp, err := client.Get(jwksURL)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Cache-Control"); got != "public, max-age=1" {
		t.Errorf("Cache-Control %q, want identity.jwks_max_age's public, max-age=1", got)
	}
	if len(set.Key(oldKid)) != 1 || len(set.Key(newKid)) != 1 {
		t.Fatalf("JWKS right after the rotation lacks a key: old %d, new %d", len(set.Key(oldKid)), len(set.Key(newKid)))
	}
	asked := time.Now()
	_, during := h.Identity(c, "/app/")
	if got := kidOf(t, during[assertion.HeaderAssertion]); asked.Before(signsFrom) && got != oldKid {
		t.Errorf("before the switch the assertion is signed by %q, want the old key %q", got, oldKid)
	}
	keys, err := assertion.ListKeys(context.Background(), h.Store)
	if err != nil || len(keys) != 2 || keys[0].ID != newKid || !keys[0].SignsFrom.Equal(signsFrom) || !keys[1].RetireAt.Equal(signsFrom) {
		t.Fatalf("assertion.ListKeys = %+v, %v", keys, err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		_, after := h.Identity(c, "/app/")
		got := kidOf(t, after[assertion.HeaderAssertion])
		if got == newKid {
			if now := time.Now(); now.Before(signsFrom) {
				t.Fatalf("the new key signed at %s, before %s", now, signsFrom)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the rotation the assertion is still signed by %q", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A token signed by the old key before the switch still verifies.
	verifyAsAnApp(t, client, jwksURL, during[assertion.HeaderAssertion], "https://127.0.0.1", "127.0.0.1/app/")
	if keys, _ := assertion.ListKeys(context.Background(), h.Store); !keys[0].Signing(time.Now()) || keys[1].Signing(time.Now()) || !keys[1].Published {
		t.Errorf("after the switch: %+v", keys)
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
	h := authtest.New(t, nil)
	out, _ := http.NewRequest("GET", "https://127.0.0.1/app/", nil)
	in, _ := http.NewRequest("GET", "https://127.0.0.1/app/", nil)
	h.Svc.SetIdentity(out, in)
	if len(out.Header) != 0 {
		t.Errorf("headers set for an anonymous request: %v", out.Header)
	}
}

func TestIAPCompatibleHeadersCarryTheSameIdentity(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, func(c *config.Config) { c.Identity.IAPCompatibleHeaders = true })
	u := h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	route := h.Routes["/app/"]
	in := httptest.NewRequest("GET", "https://127.0.0.1/app/", nil)
	in = request.With(in, &request.Info{ID: "t", Route: route, User: request.User{ID: u.ID, Email: u.Email, Groups: []string{"staff"}, SessionID: "s"}})
	out := httptest.NewRequest("GET", "http://backend/app/", nil)
	h.Svc.SetIdentity(out, in)
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
