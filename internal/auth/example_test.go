package auth_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// An app behind moat checks X-Moat-Assertion with nothing but moat's JWKS:
// the signature by a published key, the issuer (moat's public URL), the
// audience (the route's name: host plus path prefix) and the expiry. The
// X-Moat-User-* headers are for convenience; the assertion is the proof.
func Example_verifyAssertionInTheApp() {
	const (
		issuer   = "https://dash.example.com"  // server.public_url
		audience = "dash.example.com"          // the route: host + path_prefix
		jwksURL  = issuer + "/_moat/jwks.json" // cache it for a few minutes
		maxSkew  = 30 * time.Second            // clock difference to tolerate
		header   = "X-Moat-Assertion"          // ES256, kid names a JWKS key
	)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(jwksURL)
		if err != nil {
			http.Error(w, "cannot fetch keys", http.StatusServiceUnavailable)
			return
		}
		defer resp.Body.Close()
		var keys jose.JSONWebKeySet
		if err := json.NewDecoder(resp.Body).Decode(&keys); err != nil {
			http.Error(w, "bad keys", http.StatusServiceUnavailable)
			return
		}
		tok, err := jwt.ParseSigned(r.Header.Get(header), []jose.SignatureAlgorithm{jose.ES256})
		if err != nil || len(tok.Headers) != 1 || len(keys.Key(tok.Headers[0].KeyID)) != 1 {
			http.Error(w, "no valid assertion", http.StatusUnauthorized)
			return
		}
		var claims struct {
			jwt.Claims
			Email  string   `json:"email"`
			Groups []string `json:"groups"`
		}
		if err := tok.Claims(keys.Key(tok.Headers[0].KeyID)[0].Key, &claims); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: issuer, AnyAudience: jwt.Audience{audience}, Time: time.Now()}, maxSkew); err != nil {
			http.Error(w, "assertion not for this app", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "hello %s (%v)", claims.Email, claims.Groups)
	})
	_ = handler
}
