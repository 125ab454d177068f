package assertion

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
)

// The IAP-compatible headers (HeaderIAPEmail, HeaderIAPID,
// HeaderIAPAssertion, see assertion.go) follow Google's Identity-Aware
// Proxy (cloud.google.com/iap/docs/identity-howto and
// …/signed-headers-howto), so an app written for IAP runs behind moat
// unchanged. The proxy deletes every incoming X-Goog-* header first, so a
// client cannot forge them.

// IAPIssuer is the iss of X-Goog-IAP-JWT-Assertion, as Google's IAP sends it.
const IAPIssuer = "https://cloud.google.com/iap"

// IAPClaims is the payload of X-Goog-IAP-JWT-Assertion, with IAP's claim
// names. It is signed (ES256) by moat's current key; an app verifies it
// with moat's /_moat/jwks.json instead of Google's
// https://www.gstatic.com/iap/verify/public_key-jwk (that URL is the only
// thing to change in the app). aud is identity.iap_audiences[route name],
// or else the route's name (host + path_prefix).
type IAPClaims struct {
	Issuer   string `json:"iss"`
	Audience string `json:"aud"`
	Subject  string `json:"sub"` // accounts.google.com:USER_ID
	Email    string `json:"email"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
}

// iapAudience is the aud of route's IAP assertion.
func (h *Headers) iapAudience(route *config.Route) string {
	if aud := h.IAPAudiences[route.Name()]; aud != "" {
		return aud
	}
	return route.Name()
}

// setIAPHeaders adds IAP's identity headers and signed assertion to out.
func (h *Headers) setIAPHeaders(out *http.Request, u request.User, route *config.Route) {
	out.Header.Set(HeaderIAPEmail, iapPrefix+u.Email)
	out.Header.Set(HeaderIAPID, iapPrefix+u.ID)
	aud := h.iapAudience(route)
	key := cacheKey{u.SessionID, aud}
	now := time.Now()
	s := h.Signer
	k := s.keys.current(now)
	c := &s.iap
	c.mu.Lock()
	hit, ok := c.m[key]
	c.mu.Unlock()
	if ok && hit.reusable(now, k) && hit.id == u.ID && hit.email == u.Email {
		out.Header.Set(HeaderIAPAssertion, hit.token)
		return
	}
	tok, err := signJSON(k, IAPClaims{Issuer: IAPIssuer, Audience: aud, Subject: iapPrefix + u.ID, Email: u.Email,
		IssuedAt: now.Unix(), Expiry: now.Add(AssertionLifetime).Unix()})
	if err != nil {
		s.logger.Error("sign IAP assertion", "route", route.Name(), "user", u.Email, "err", err)
		return
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedAssertions {
		c.m = make(map[cacheKey]cachedAssertion)
	}
	c.m[key] = cachedAssertion{token: tok, iat: time.Unix(now.Unix(), 0), kid: k.rec.ID, id: u.ID, email: u.Email}
	c.mu.Unlock()
	out.Header.Set(HeaderIAPAssertion, tok)
}

// signJSON makes a compact ES256 JWS of claims with k, the current key
// (keyRing.current; nil when there is none).
func signJSON(k *signingKey, claims any) (string, error) {
	if k == nil {
		return "", errors.New("no signing key: every key this instance holds is retired (reload the keys)")
	}
	header, err := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": k.rec.ID})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	return signES256(k.priv, b64(header)+"."+b64(payload))
}
