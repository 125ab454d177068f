package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/auth/oidc"
	"github.com/moat-dev/moat/internal/auth/pat"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// Bearer tokens: on a route with bearer: true, a script may send
// "Authorization: Bearer <token>" instead of a session cookie, where the
// token is a moat personal access token (moat_pat_…, see moat tokens) or
// an OpenID Connect ID token from one of the route's SSO providers whose
// audience is that provider's client_id.

// ProviderToken is request.User.Provider for a personal access token.
const ProviderToken = "token"

// tokenVerifyEvery is how long a checked personal access token is trusted
// before the store is asked again; a revocation takes effect within it.
const tokenVerifyEvery = 4 * time.Second

// maxCachedTokens bounds the token cache; past it the cache starts over.
const maxCachedTokens = 10000

type cachedToken struct {
	user    request.User
	checked time.Time
	expires time.Time
}

// tokenCache holds recently checked personal access tokens by hash.
type tokenCache struct {
	ttl time.Duration // tokenVerifyEvery; shorter in tests
	mu  sync.Mutex
	m   map[string]cachedToken
}

// bearerToken returns the token of an Authorization: Bearer header, or "".
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// serveBearer checks the token of a request to a bearer: true route that
// has no session but an Authorization: Bearer header. sent is false when
// there is no such header (the caller goes on as usual). Otherwise a token
// that is not valid is answered 401 (refusal SignIn), a user the rule
// refuses as access.Refuse does, and a token that passes leaves the request
// signed in as its user, without the header (refusal Pass).
func (s *Service) serveBearer(w http.ResponseWriter, r *http.Request, route *config.Route, rule access.Rule) (refusal access.Refusal, sent bool) {
	raw, ok := bearerToken(r)
	if !ok {
		return access.Pass, false
	}
	info := request.From(r)
	u, err := s.bearerUser(r.Context(), route, raw, directory.Actor{ClientIP: clientIP(info), RequestID: info.ID})
	if err != nil {
		s.p.logger.Warn("bearer token refused", "route", route.Name(), "client_ip", clientIP(info), "request_id", info.ID, "err", err)
		p := web.NewProblem(http.StatusUnauthorized, "auth.bearer.invalid").With("WWW-Authenticate", `Bearer error="invalid_token"`)
		if errors.Is(err, oidc.ErrProviderDown) || errors.Is(err, errStoreDown) {
			p = web.Unavailable(err)
		}
		web.Fail(w, r, p)
		return access.SignIn, true
	}
	info.User = u
	if d := rule.Check(u, nil, time.Now()); d.Refusal != access.Pass {
		s.refuse(w, r, rule, d)
		return d.Refusal, true
	}
	// The token was moat's to check, not the app's (issue 12 #9): it
	// would let the app, or anything it logs to, act as the user.
	r.Header.Del("Authorization")
	return access.Pass, true
}

var errStoreDown = errors.New("store unavailable")

// bearerUser checks a bearer token and returns its user; a is the request,
// for the audit event of an ID token's first sign-in.
func (s *Service) bearerUser(ctx context.Context, route *config.Route, raw string, a directory.Actor) (request.User, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if strings.HasPrefix(raw, pat.Prefix) {
		return s.p.TokenUser(ctx, raw)
	}
	p, err := s.bearerProvider(route, raw)
	if err != nil {
		return request.User{}, err
	}
	id, err := p.VerifyBearer(ctx, raw)
	if err != nil {
		return request.User{}, err
	}
	id.Groups = s.p.dir.KeepProviderGroups(id.Provider, id.Email, id.Groups)
	u, err := s.p.dir.ProviderUser(ctx, a, id.Email, id.Name, id.Provider)
	if err != nil {
		if errors.Is(err, directory.ErrDisabled) {
			return request.User{}, err
		}
		return request.User{}, fmt.Errorf("%w: %w", errStoreDown, err)
	}
	groups := append([]string(nil), u.Groups...)
	for _, g := range id.Groups {
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	return request.User{ID: u.ID, Email: u.Email, Name: u.Name, Groups: groups, Provider: p.Name(),
		HostedDomain: id.HostedDomain, SessionID: bearerSessionPrefix + p.Name() + ":" + u.ID}, nil
}

// bearerProvider picks, by the token's (unverified) iss, which of the
// route's providers must verify it, so a token never makes moat contact a
// provider the route does not use.
func (s *Service) bearerProvider(route *config.Route, raw string) (*oidc.Provider, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || len(raw) > 16<<10 {
		return nil, fmt.Errorf("%w: not a JWT", oidc.ErrInvalidToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", oidc.ErrInvalidToken)
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.Iss == "" {
		return nil, fmt.Errorf("%w: no iss", oidc.ErrInvalidToken)
	}
	for _, m := range route.Login {
		if pc := s.cfg.Identity.SSO[m]; pc != nil && strings.TrimSuffix(pc.Issuer, "/") == strings.TrimSuffix(c.Iss, "/") {
			return s.providers[m], nil
		}
	}
	return nil, fmt.Errorf("%w: issuer %q is not a provider of this route", oidc.ErrInvalidToken, c.Iss)
}

// TokenUser checks a personal access token: known, a personal access
// token (not a set-password link), not revoked, not expired, its user
// enabled. A token checked within tokenVerifyEvery is answered from
// memory; a revocation through this instance (Forget) takes effect at once.
func (s *Process) TokenUser(ctx context.Context, raw string) (request.User, error) {
	if !pat.Valid(raw) {
		return request.User{}, errors.New("malformed personal access token")
	}
	return s.tokenByHash(ctx, pat.Hash(raw))
}

func (s *Process) tokenByHash(ctx context.Context, hash string) (request.User, error) {
	now := time.Now()
	if u, ok := s.tokens.get(hash, now); ok {
		return u, nil
	}
	t, err := s.store.GetTokenByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return request.User{}, errors.New("unknown personal access token")
	}
	if err != nil {
		return request.User{}, fmt.Errorf("%w: %w", errStoreDown, err)
	}
	switch {
	case t.Kind != store.TokenPersonal:
		// A set-password link lives in the same table; it is never a
		// bearer token, whatever its hash.
		return request.User{}, errors.New("not a personal access token")
	case !t.RevokedAt.IsZero():
		return request.User{}, fmt.Errorf("personal access token %s was revoked", t.ID)
	case !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt):
		return request.User{}, fmt.Errorf("personal access token %s has expired", t.ID)
	}
	u, err := s.store.GetUser(ctx, t.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return request.User{}, fmt.Errorf("personal access token %s: user deleted", t.ID)
	}
	if err != nil {
		return request.User{}, fmt.Errorf("%w: %w", errStoreDown, err)
	}
	if u.Disabled {
		return request.User{}, fmt.Errorf("personal access token %s: %w", t.ID, directory.ErrDisabled)
	}
	user := request.User{ID: u.ID, Email: u.Email, Name: u.Name, Groups: append([]string(nil), u.Groups...),
		Provider: ProviderToken, SessionID: tokenSessionID(hash)}
	if t.LastUsed.IsZero() || now.Sub(t.LastUsed) > time.Minute {
		if err := s.store.TouchToken(ctx, t.ID, now); err != nil {
			s.logger.Warn("record token use", "err", err)
		}
	}
	s.tokens.put(hash, cachedToken{user: user, checked: now, expires: t.ExpiresAt})
	return user, nil
}

// tokenSessionID is request.User.SessionID for a personal access token:
// what its WebSockets are registered under.
func tokenSessionID(hash string) string { return tokenSessionPrefix + hash }

// Prefixes of request.User.SessionID for bearer tokens, which have no
// session in the store.
const (
	tokenSessionPrefix  = "token:"
	bearerSessionPrefix = "bearer:"
)

// bearerAlive answers Holder for a WebSocket opened with an ID token as a
// bearer token: ok is false when id is not such a socket's. The token's
// user must still be enabled.
func (s *Service) bearerAlive(ctx context.Context, id string) (alive, ok bool) {
	rest, ok := strings.CutPrefix(id, bearerSessionPrefix)
	if !ok {
		return false, false
	}
	_, userID, _ := strings.Cut(rest, ":")
	u, err := s.p.store.GetUser(ctx, userID)
	if err != nil {
		return !errors.Is(err, store.ErrNotFound), true
	}
	return !u.Disabled, true
}

func (c *tokenCache) get(hash string, now time.Time) (request.User, bool) {
	c.mu.Lock()
	e, ok := c.m[hash]
	c.mu.Unlock()
	if ok && now.Sub(e.checked) < c.ttl && (e.expires.IsZero() || now.Before(e.expires)) {
		return e.user, true
	}
	return request.User{}, false
}

func (c *tokenCache) put(hash string, e cachedToken) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedTokens {
		c.m = make(map[string]cachedToken)
	}
	c.m[hash] = e
	c.mu.Unlock()
}

func (c *tokenCache) remove(hash string) {
	c.mu.Lock()
	delete(c.m, hash)
	c.mu.Unlock()
}

// clear drops every cached token.
func (c *tokenCache) clear() {
	c.mu.Lock()
	c.m = nil
	c.mu.Unlock()
}

// removeUser drops a user's cached tokens and returns their session ids.
func (c *tokenCache) removeUser(userID string) []string {
	var out []string
	c.mu.Lock()
	for h, e := range c.m {
		if e.user.ID == userID {
			delete(c.m, h)
			out = append(out, tokenSessionID(h))
		}
	}
	c.mu.Unlock()
	return out
}
