package auth

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/request"
)

// Headers moat sets on a proxied request for a signed-in user.
const (
	HeaderUserEmail  = "X-Moat-User-Email"
	HeaderUserID     = "X-Moat-User-Id"
	HeaderUserGroups = "X-Moat-User-Groups"
	HeaderAssertion  = "X-Moat-Assertion"

	// With identity.iap_compatible_headers, the names Google's IAP uses,
	// so apps written for IAP run unchanged (they must verify the
	// assertion with moat's JWKS, issuer and audience, not Google's).
	HeaderIAPEmail     = "X-Goog-Authenticated-User-Email"
	HeaderIAPID        = "X-Goog-Authenticated-User-Id"
	HeaderIAPAssertion = "X-Goog-IAP-JWT-Assertion"
)

// iapPrefix is how IAP qualifies the email and id it sends.
const iapPrefix = "accounts.google.com:"

// assertionReuse is how long a signed assertion is reused for the same
// session and route; it keeps at least AssertionLifetime - assertionReuse of
// validity when sent.
const assertionReuse = time.Minute

// maxCachedAssertions bounds the assertion cache; past it the cache starts
// over.
const maxCachedAssertions = 50000

type cachedAssertion struct {
	token string
	iat   time.Time
	// What the token says; a change (groups edited) signs anew.
	id, email, groups string
}

type assertionCache struct {
	mu sync.Mutex
	m  map[string]cachedAssertion
}

// Claims is the payload of X-Moat-Assertion.
type Claims struct {
	Issuer   string   `json:"iss"`
	Audience string   `json:"aud"` // the route's name: host + path prefix
	Subject  string   `json:"sub"` // the user's id
	Email    string   `json:"email"`
	Groups   []string `json:"groups"`
	IssuedAt int64    `json:"iat"`
	Expiry   int64    `json:"exp"`
}

// SetIdentity sets the identity headers on out, the request the proxy sends
// to the backend, from the user moat signed in on in. The proxy has already
// deleted every header moat owns (X-Moat-*, X-Goog-* and their look-alikes)
// and moat's cookies from out; nothing is set for anonymous requests or
// public routes.
//
// X-Moat-Assertion is an ES256 JWT with iss = the instance's public URL,
// aud = the route's name (config.Route.Name: host plus path prefix, such as
// "dash.example.com" or "example.com/app/"), sub = the user's id, email,
// groups, iat and exp = iat + 5 minutes; its kid names a key in
// /_moat/jwks.json. With identity.iap_compatible_headers the same identity
// also goes out under IAP's header names.
func (s *Service) SetIdentity(out *http.Request, in *http.Request) {
	info := request.From(in)
	u := info.User
	if !u.SignedIn() || info.Route == nil || info.Route.Public {
		return
	}
	out.Header.Set(HeaderUserEmail, u.Email)
	out.Header.Set(HeaderUserID, u.ID)
	groups := strings.Join(u.Groups, ",")
	out.Header.Set(HeaderUserGroups, groups)
	tok := s.assertion(u, groups, info.Route.Name())
	if tok != "" {
		out.Header.Set(HeaderAssertion, tok)
	}
	if s.cfg.Identity.IAPCompatibleHeaders {
		// iap.go: IAP's own claims (iss https://cloud.google.com/iap, aud
		// from identity.iap_audiences), signed with moat's key.
		s.setIAPHeaders(out, u, info.Route)
	}
}

// assertion returns a signed assertion for u on route, reusing one signed
// within the last minute.
func (s *Service) assertion(u request.User, groups, route string) string {
	key := u.SessionID + "\x00" + route
	now := time.Now()
	s.assertions.mu.Lock()
	c, ok := s.assertions.m[key]
	s.assertions.mu.Unlock()
	if ok && now.Sub(c.iat) < assertionReuse && !now.Before(c.iat) && c.id == u.ID && c.email == u.Email && c.groups == groups {
		return c.token
	}
	tok, err := s.sign(Claims{
		Issuer: s.issuer, Audience: route, Subject: u.ID, Email: u.Email, Groups: u.Groups,
		IssuedAt: now.Unix(), Expiry: now.Add(AssertionLifetime).Unix(),
	})
	if err != nil {
		s.logger.Error("sign assertion", "route", route, "user", u.Email, "err", err)
		return ""
	}
	s.assertions.mu.Lock()
	if len(s.assertions.m) >= maxCachedAssertions {
		s.assertions.m = make(map[string]cachedAssertion)
	}
	s.assertions.m[key] = cachedAssertion{token: tok, iat: time.Unix(now.Unix(), 0), id: u.ID, email: u.Email, groups: groups}
	s.assertions.mu.Unlock()
	return tok
}

// forgetAssertions drops the cached assertions of one session.
func (s *Process) forgetAssertions(sessionID string) {
	prefix := sessionID + "\x00"
	s.assertions.mu.Lock()
	for k := range s.assertions.m {
		if strings.HasPrefix(k, prefix) {
			delete(s.assertions.m, k)
		}
	}
	s.assertions.mu.Unlock()
}

func (s *Process) clearAssertions() {
	s.assertions.mu.Lock()
	s.assertions.m = make(map[string]cachedAssertion)
	s.assertions.mu.Unlock()
}

// sign makes a compact ES256 JWS (RFC 7515, RFC 7518 §3.4) of c with the
// current key.
func (s *Process) sign(c Claims) (string, error) {
	s.keys.mu.RLock()
	k := s.keys.current
	s.keys.mu.RUnlock()
	if c.Groups == nil {
		c.Groups = []string{}
	}
	header, err := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": k.rec.ID})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signingInput := b64(header) + "." + b64(payload)
	return signES256(k.priv, signingInput)
}

func signES256(priv *ecdsa.PrivateKey, signingInput string) (string, error) {
	sum := sha256.Sum256([]byte(signingInput))
	r, sv, err := ecdsa.Sign(rand.Reader, priv, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
