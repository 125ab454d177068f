package assertion

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
)

// Headers moat sets on a proxied request for a signed-in user.
const (
	HeaderUserEmail  = "X-Moat-User-Email"
	HeaderUserID     = "X-Moat-User-Id"
	HeaderUserGroups = "X-Moat-User-Groups"
	// HeaderUserName is the display name, percent-encoded (NameHeader).
	HeaderUserName  = "X-Moat-User-Name"
	HeaderAssertion = "X-Moat-Assertion"

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
	// groupList is what groups was joined from, so that a request of the
	// same session reuses groups rather than joining its own.
	groupList []string
	iat       time.Time
	// kid signed it; once another key signs, it is signed anew.
	kid string
	// What the token says; a change (groups edited) signs anew.
	id, email, groups string
}

// reusable reports whether c may still be sent at now, when k signs.
func (c cachedAssertion) reusable(now time.Time, k *signingKey) bool {
	return now.Sub(c.iat) < assertionReuse && !now.Before(c.iat) && k != nil && c.kid == k.rec.ID
}

// cacheKey names a cached assertion: one session, one audience (a struct,
// not a joined string, so that a lookup allocates nothing).
type cacheKey struct{ session, audience string }

type assertionCache struct {
	mu sync.Mutex
	m  map[cacheKey]cachedAssertion
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

// Signer signs assertions with the store's signing keys and caches what it
// signed per session and audience. One Signer serves the whole process
// (reloads keep its keys and caches); create it with NewSigner.
type Signer struct {
	store  store.Store
	key    *instancekey.Key
	logger *slog.Logger

	keys keyRing
	moat assertionCache // X-Moat-Assertion
	iap  assertionCache // X-Goog-IAP-JWT-Assertion
}

// NewSigner loads the signing keys from st (opened with the instance key
// ik), creating the first one on a new store.
func NewSigner(ctx context.Context, st store.Store, ik *instancekey.Key, logger *slog.Logger) (*Signer, error) {
	s := &Signer{store: st, key: ik, logger: logger}
	s.moat.m = make(map[cacheKey]cachedAssertion)
	s.iap.m = make(map[cacheKey]cachedAssertion)
	if err := s.Reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// JWKS is the body of /_moat/jwks.json: the public keys that verify the
// assertions.
func (s *Signer) JWKS() []byte {
	s.keys.mu.RLock()
	defer s.keys.mu.RUnlock()
	return s.keys.jwks
}

// Forget drops the assertions cached for one session (it was revoked).
func (s *Signer) Forget(sessionID string) {
	s.moat.forget(sessionID)
	s.iap.forget(sessionID)
}

// Headers sets the identity headers of one configuration on the requests
// the proxy forwards.
type Headers struct {
	Signer *Signer
	// Issuer is the iss of X-Moat-Assertion (Issuer(cfg)).
	Issuer string
	// IAP also sets Google IAP's headers (identity.iap_compatible_headers),
	// with IAPAudiences (identity.iap_audiences) as their aud.
	IAP          bool
	IAPAudiences map[string]string
}

// NewHeaders is the Headers of cfg.
func NewHeaders(cfg *config.Config, s *Signer) *Headers {
	return &Headers{Signer: s, Issuer: Issuer(cfg), IAP: cfg.Identity.IAPCompatibleHeaders, IAPAudiences: cfg.Identity.IAPAudiences}
}

// Issuer is the iss of this instance's assertions: server.public_url, or
// https:// plus the first route's host.
func Issuer(cfg *config.Config) string {
	if cfg.Server.PublicURL != "" {
		return strings.TrimSuffix(cfg.Server.PublicURL, "/")
	}
	for _, r := range cfg.Routes {
		if r != nil && r.Host != "" {
			return "https://" + r.Host
		}
	}
	return "https://localhost"
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
// also goes out under IAP's header names. X-Moat-User-Name carries the
// user's display name, when there is one (NameHeader).
func (h *Headers) SetIdentity(out *http.Request, in *http.Request) {
	info := request.From(in)
	u := info.User
	if !u.SignedIn() || info.Route == nil || info.Route.Public {
		return
	}
	tok, groups := h.Signer.assertion(u, h.Issuer, info.Route.Name())
	// One backing array for the values: one allocation, not five. The
	// names are canonical already, as Header.Set would make them.
	vals := make([]string, 0, 5)
	set := func(name, v string) {
		vals = append(vals, v)
		out.Header[name] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	set(HeaderUserEmail, u.Email)
	set(HeaderUserID, u.ID)
	set(HeaderUserGroups, groups)
	if u.Name != "" {
		set(HeaderUserName, NameHeader(u.Name))
	}
	if tok != "" {
		set(HeaderAssertion, tok)
	}
	if h.IAP {
		// iap.go: IAP's own claims (iss https://cloud.google.com/iap, aud
		// from identity.iap_audiences), signed with moat's key.
		h.setIAPHeaders(out, u, info.Route)
	}
}

// NameHeader is the value of X-Moat-User-Name for the display name name:
// its UTF-8 bytes with %, control characters, non-ASCII bytes and a
// leading or trailing space percent-encoded (%XX, RFC 3986 section 2.1),
// every other byte as it is. A header value is read as Latin-1 by
// Starlette (Streamlit's server) and is unsafe with control characters, so
// "Jürgen Weiß" goes as "J%C3%BCrgen Wei%C3%9F", while a plain ASCII name
// such as "Alice Smith" arrives unchanged; an app decodes it with Python's
// urllib.parse.unquote (or JavaScript's decodeURIComponent).
func NameHeader(name string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '%' || c < 0x20 || c >= 0x7f || c == ' ' && (i == 0 || i == len(name)-1) {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// assertion returns a signed assertion for u on route, reusing one signed
// within the last minute, and u's groups joined with commas (as the
// assertion's cache holds them: a request of a cached session joins
// nothing). The token is "" when signing failed.
func (s *Signer) assertion(u request.User, issuer, route string) (token, groups string) {
	key := cacheKey{u.SessionID, route}
	now := time.Now()
	k := s.keys.current(now)
	s.moat.mu.Lock()
	c, ok := s.moat.m[key]
	s.moat.mu.Unlock()
	if ok && slices.Equal(c.groupList, u.Groups) {
		groups = c.groups
	} else {
		groups = strings.Join(u.Groups, ",")
	}
	if ok && c.reusable(now, k) && c.id == u.ID && c.email == u.Email && c.groups == groups {
		return c.token, groups
	}
	tok, err := sign(k, Claims{
		Issuer: issuer, Audience: route, Subject: u.ID, Email: u.Email, Groups: u.Groups,
		IssuedAt: now.Unix(), Expiry: now.Add(AssertionLifetime).Unix(),
	})
	if err != nil {
		s.logger.Error("sign assertion", "route", route, "user", u.Email, "err", err)
		return "", groups
	}
	s.moat.mu.Lock()
	if len(s.moat.m) >= maxCachedAssertions {
		s.moat.m = make(map[cacheKey]cachedAssertion)
	}
	s.moat.m[key] = cachedAssertion{token: tok, iat: time.Unix(now.Unix(), 0), kid: k.rec.ID, id: u.ID, email: u.Email,
		groups: groups, groupList: slices.Clone(u.Groups)}
	s.moat.mu.Unlock()
	return tok, groups
}

// forget drops the cached assertions of one session.
func (c *assertionCache) forget(sessionID string) {
	c.mu.Lock()
	for k := range c.m {
		if k.session == sessionID {
			delete(c.m, k)
		}
	}
	c.mu.Unlock()
}

// sign makes a compact ES256 JWS (RFC 7515, RFC 7518 §3.4) of c with k,
// the current key.
func sign(k *signingKey, c Claims) (string, error) {
	if c.Groups == nil {
		c.Groups = []string{}
	}
	return signJSON(k, c)
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
