// Package oidc signs people in with an OpenID Connect provider (Google,
// Entra ID, Okta, Keycloak, Dex, ZITADEL, ...): discovery, the
// authorization code flow with PKCE, state and nonce, ID token
// verification with go-oidc, refresh, and ID tokens presented as bearer
// tokens by scripts. It knows nothing of moat's sessions or cookies; the
// auth package drives it.
package oidc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/moat-dev/moat/internal/config"
)

// DefaultScopes are requested when the provider's scopes are not set.
var DefaultScopes = []string{gooidc.ScopeOpenID, "email", "profile"}

// Timing of calls to the provider.
const (
	// DefaultClockSkew is how far past exp an ID token is still accepted
	// (Google's IAP accepts 30 s too).
	DefaultClockSkew = 30 * time.Second
	// requestTimeout bounds every call to the provider.
	requestTimeout = 10 * time.Second
	// googleIssuer is Google's issuer, which wants access_type=offline
	// instead of the offline_access scope.
	googleIssuer = "https://accounts.google.com"
)

// discoveryRetry is the least time between two discovery attempts while
// the provider is unreachable, so a login flood during an outage does not
// become a flood at the provider. A variable for tests.
var discoveryRetry = 2 * time.Second

// Provider is one configured OpenID Connect provider. Create it with New;
// it discovers the provider's endpoints on first use (and retries while
// the provider is down), so moat starts even if the provider is briefly
// unreachable. It is safe for concurrent use; set the optional fields
// before first use.
type Provider struct {
	// HTTPClient makes every call to the provider; nil means a client with
	// bounded dial, TLS, header and total timeouts.
	HTTPClient *http.Client
	// ClockSkew is the tolerance on the ID token's exp; zero means
	// DefaultClockSkew.
	ClockSkew time.Duration
	// Audiences are accepted by VerifyBearer besides client_id (for
	// example the client id of a CLI that fetches ID tokens).
	Audiences []string
	// Now is the clock (a fake in tests); nil means time.Now.
	Now func() time.Time
	// TrustHostedDomain: the provider's hd claim is Google's, checked by
	// Google against the Workspace, so with hosted_domain set it becomes
	// Identity.HostedDomain (which domain: allow members match). New sets
	// it for Google's issuer only; tests set it for their provider.
	TrustHostedDomain bool

	name   string
	cfg    config.SSOProvider
	scopes []string

	mu        sync.Mutex
	op        *gooidc.Provider
	authStyle oauth2.AuthStyle
	lastTry   time.Time
	lastErr   error
}

// New returns the provider name configured by cfg. It does not contact the
// provider.
func New(name string, cfg *config.SSOProvider) (*Provider, error) {
	if cfg == nil {
		return nil, fmt.Errorf("oidc: provider %s: no settings", name)
	}
	u, err := url.Parse(cfg.Issuer)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("oidc: provider %s: invalid issuer %q", name, cfg.Issuer)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
		return nil, fmt.Errorf("oidc: provider %s: issuer %q must be https:// (http:// only on a loopback address)", name, cfg.Issuer)
	}
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("oidc: provider %s: client_id is required", name)
	}
	scopes := cfg.Scopes
	if len(scopes) == 0 {
		scopes = DefaultScopes
	}
	scopes = slices.Clone(scopes)
	if !slices.Contains(scopes, gooidc.ScopeOpenID) {
		scopes = append([]string{gooidc.ScopeOpenID}, scopes...)
	}
	// Re-checking the user needs a refresh token: ask for one.
	if cfg.RefreshInterval > 0 && cfg.Issuer != googleIssuer && !slices.Contains(scopes, gooidc.ScopeOfflineAccess) {
		scopes = append(scopes, gooidc.ScopeOfflineAccess)
	}
	return &Provider{name: name, cfg: *cfg, scopes: scopes, TrustHostedDomain: cfg.Issuer == googleIssuer}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Name is the provider's key under identity.sso.
func (p *Provider) Name() string { return p.name }

// RefreshInterval is how often a session signed in with this provider is
// re-checked with its refresh token (zero: never).
func (p *Provider) RefreshInterval() time.Duration { return p.cfg.RefreshInterval.D() }

// defaultClient bounds every phase of a call to the provider.
var defaultClient = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 5 * time.Second
	t.ResponseHeaderTimeout = requestTimeout
	t.MaxResponseHeaderBytes = 64 << 10
	return &http.Client{Transport: t, Timeout: requestTimeout}
}()

func (p *Provider) client() *http.Client {
	if p.HTTPClient != nil {
		return p.HTTPClient
	}
	return defaultClient
}

func (p *Provider) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Provider) skew() time.Duration {
	if p.ClockSkew > 0 {
		return p.ClockSkew
	}
	return DefaultClockSkew
}

// ctx carries the HTTP client to go-oidc and x/oauth2 and bounds the call.
func (p *Provider) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	return gooidc.ClientContext(ctx, p.client()), cancel
}

// Discover fetches the provider's metadata if it has not been fetched yet.
// Other methods call it; the server may call it at start to warm up.
// While the provider is unreachable, attempts are at least a couple of
// seconds apart and fail with ErrProviderDown.
func (p *Provider) Discover(ctx context.Context) error {
	_, err := p.discover(ctx)
	return err
}

func (p *Provider) discover(ctx context.Context) (*gooidc.Provider, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.op != nil {
		return p.op, nil
	}
	if !p.lastTry.IsZero() && time.Since(p.lastTry) < discoveryRetry {
		return nil, p.lastErr
	}
	p.lastTry = time.Now()
	// The key set go-oidc builds keeps this context's HTTP client for later
	// key fetches; WithoutCancel keeps the caller's cancellation out of it.
	dctx, cancel := p.ctx(context.WithoutCancel(ctx))
	defer cancel()
	op, err := gooidc.NewProvider(dctx, p.cfg.Issuer)
	if err != nil {
		p.lastErr = fmt.Errorf("%w: %s: discovery: %v", ErrProviderDown, p.name, err)
		return nil, p.lastErr
	}
	p.op, p.lastErr = op, nil
	p.authStyle = authStyle(op)
	return op, nil
}

// authStyle picks how to send the client secret from the methods the
// provider lists. It is never auto-detection: that retries a refused
// request the other way, which turns one refusal into two requests and can
// hide it.
func authStyle(op *gooidc.Provider) oauth2.AuthStyle {
	var meta struct {
		Methods []string `json:"token_endpoint_auth_methods_supported"`
	}
	_ = op.Claims(&meta)
	if len(meta.Methods) == 0 || slices.Contains(meta.Methods, "client_secret_basic") {
		return oauth2.AuthStyleInHeader // the default of OIDC Discovery 1.0
	}
	if slices.Contains(meta.Methods, "client_secret_post") {
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader
}

func (p *Provider) oauth(op *gooidc.Provider, redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.cfg.ClientID,
		ClientSecret: p.cfg.ClientSecret,
		Endpoint: oauth2.Endpoint{
			AuthURL:   op.Endpoint().AuthURL,
			TokenURL:  op.Endpoint().TokenURL,
			AuthStyle: p.authStyle,
		},
		RedirectURL: redirectURL,
		Scopes:      p.scopes,
	}
}

// RandomToken returns 32 random bytes, base64url: a state, nonce or PKCE
// verifier.
func RandomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// AuthCodeURL is where to send the browser to sign in: the provider's
// authorization endpoint with state, nonce, the PKCE S256 challenge of
// verifier, and hd when hosted_domain is set. redirectURL is moat's
// callback on the route's host.
func (p *Provider) AuthCodeURL(ctx context.Context, state, nonce, verifier, redirectURL string) (string, error) {
	op, err := p.discover(ctx)
	if err != nil {
		return "", err
	}
	opts := []oauth2.AuthCodeOption{gooidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}
	if p.cfg.HostedDomain != "" {
		opts = append(opts, oauth2.SetAuthURLParam("hd", p.cfg.HostedDomain))
	}
	if p.cfg.RefreshInterval > 0 && p.cfg.Issuer == googleIssuer {
		opts = append(opts, oauth2.AccessTypeOffline)
	}
	return p.oauth(op, redirectURL).AuthCodeURL(state, opts...), nil
}

// Exchange redeems the authorization code from the callback and verifies
// the ID token it returns: signature, issuer, audience (client_id), expiry
// (with ClockSkew), nonce, at_hash, email_verified and hosted domain. The
// caller has already checked state. The returned token holds the refresh
// token, if the provider sent one.
func (p *Provider) Exchange(ctx context.Context, code, verifier, redirectURL, nonce string) (*Identity, *oauth2.Token, error) {
	op, err := p.discover(ctx)
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := p.ctx(ctx)
	defer cancel()
	tok, err := p.oauth(op, redirectURL).Exchange(cctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: redeem code: %v", classifyTokenError(err, ErrBadState), p.name, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, nil, fmt.Errorf("%w: %s: token response has no id_token", ErrInvalidToken, p.name)
	}
	idt, err := p.verify(cctx, op, raw, []string{p.cfg.ClientID})
	if err != nil {
		return nil, nil, err
	}
	if nonce == "" || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return nil, nil, fmt.Errorf("%w: %s: nonce does not match", ErrBadState, p.name)
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrInvalidToken, p.name, err)
		}
	}
	id, err := p.identity(idt)
	if err != nil {
		return nil, nil, err
	}
	return id, tok, nil
}

// Refresh uses a refresh token to ask the provider whether the person is
// still signed in, and returns who they are now together with the new
// token (providers that rotate refresh tokens send a new one: store it).
// A refusal is ErrRefreshRejected (end the session); ErrProviderDown means
// the provider could not answer. The caller should check that
// Identity.Subject is the session's.
func (p *Provider) Refresh(ctx context.Context, refreshToken string) (*Identity, *oauth2.Token, error) {
	if refreshToken == "" {
		return nil, nil, fmt.Errorf("%w: %s: no refresh token", ErrRefreshRejected, p.name)
	}
	op, err := p.discover(ctx)
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := p.ctx(ctx)
	defer cancel()
	// An expired token with no access token makes the source refresh.
	tok, err := p.oauth(op, "").TokenSource(cctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: refresh: %v", classifyTokenError(err, ErrRefreshRejected), p.name, err)
	}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		idt, err := p.verify(cctx, op, raw, []string{p.cfg.ClientID})
		if err != nil {
			return nil, nil, err
		}
		id, err := p.identity(idt)
		if err != nil {
			return nil, nil, err
		}
		return id, tok, nil
	}
	// No new ID token (allowed by OIDC Core 12.2): ask userinfo.
	info, err := op.UserInfo(cctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: userinfo: %v", ErrProviderDown, p.name, err)
	}
	var raw json.RawMessage
	if err := info.Claims(&raw); err != nil {
		return nil, nil, fmt.Errorf("%w: %s: userinfo: %v", ErrInvalidToken, p.name, err)
	}
	id, err := p.parseIdentity(raw, tok.Expiry)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", p.name, err)
	}
	return id, tok, nil
}

// VerifyBearer checks an ID token a script sent as
// "Authorization: Bearer <token>": signature, issuer, expiry, an audience
// of client_id or one of Audiences, email_verified and hosted domain.
func (p *Provider) VerifyBearer(ctx context.Context, rawIDToken string) (*Identity, error) {
	if len(rawIDToken) > 16<<10 {
		return nil, fmt.Errorf("%w: %s: token too long", ErrInvalidToken, p.name)
	}
	op, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	cctx, cancel := p.ctx(ctx)
	defer cancel()
	idt, err := p.verify(cctx, op, rawIDToken, append([]string{p.cfg.ClientID}, p.Audiences...))
	if err != nil {
		return nil, err
	}
	return p.identity(idt)
}

// verify checks the token's signature, issuer, expiry, that it was not
// issued in the future, and that its audience includes one of audiences.
func (p *Provider) verify(ctx context.Context, op *gooidc.Provider, raw string, audiences []string) (*gooidc.IDToken, error) {
	v := op.Verifier(&gooidc.Config{
		SkipClientIDCheck: true, // checked below, against several audiences
		Now:               func() time.Time { return p.now().Add(-p.skew()) },
	})
	idt, err := v.Verify(ctx, raw)
	if err != nil {
		var expired *gooidc.TokenExpiredError
		switch {
		case errors.As(err, &expired):
			return nil, fmt.Errorf("%w: %s: expired at %s", ErrInvalidToken, p.name, expired.Expiry.UTC().Format(time.RFC3339))
		case isNetworkError(err):
			return nil, fmt.Errorf("%w: %s: fetch keys: %v", ErrProviderDown, p.name, err)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidToken, p.name, err)
	}
	if !idt.IssuedAt.IsZero() && idt.IssuedAt.After(p.now().Add(p.skew())) {
		return nil, fmt.Errorf("%w: %s: issued in the future (%s); check the clocks", ErrInvalidToken, p.name, idt.IssuedAt.UTC().Format(time.RFC3339))
	}
	ok := false
	for _, a := range idt.Audience {
		if slices.Contains(audiences, a) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s: audience %q is not accepted", ErrInvalidToken, p.name, idt.Audience)
	}
	return idt, nil
}

func (p *Provider) identity(idt *gooidc.IDToken) (*Identity, error) {
	var raw json.RawMessage
	if err := idt.Claims(&raw); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidToken, p.name, err)
	}
	id, err := p.parseIdentity(raw, idt.Expiry)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.name, err)
	}
	return id, nil
}
