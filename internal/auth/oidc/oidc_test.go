package oidc_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/moat-dev/moat/internal/auth/oidc"
	"github.com/moat-dev/moat/internal/auth/oidc/oidctest"
	"github.com/moat-dev/moat/internal/config"
)

const (
	password    = "correct horse battery"
	redirectURL = "http://127.0.0.1:9/_moat/oidc/callback"
)

func newProvider(t *testing.T, cfg *config.SSOProvider) *oidc.Provider {
	t.Helper()
	p, err := oidc.New("test", cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// flow is one sign-in in progress, as moat's login handler keeps it.
type flow struct {
	state, nonce, verifier string
	authURL                string
}

func begin(t *testing.T, p *oidc.Provider) flow {
	t.Helper()
	f := flow{state: oidc.RandomToken(), nonce: oidc.RandomToken(), verifier: oauth2.GenerateVerifier()}
	u, err := p.AuthCodeURL(context.Background(), f.state, f.nonce, f.verifier, redirectURL)
	if err != nil {
		t.Fatalf("AuthCodeURL: %v", err)
	}
	f.authURL = u
	return f
}

// callback signs in at the provider and returns the code, checking the
// state came back unchanged.
func callback(t *testing.T, op *oidctest.Provider, f flow, email string) string {
	t.Helper()
	cb, err := op.Login(context.Background(), f.authURL, email, password)
	if err != nil {
		t.Fatalf("login at provider: %v", err)
	}
	if got := cb.Scheme + "://" + cb.Host + cb.Path; got != redirectURL {
		t.Fatalf("provider redirected to %s, want %s", got, redirectURL)
	}
	if cb.Query().Get("state") != f.state {
		t.Fatalf("state came back as %q, want %q", cb.Query().Get("state"), f.state)
	}
	code := cb.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in callback %s", cb)
	}
	return code
}

func signIn(t *testing.T, op *oidctest.Provider, p *oidc.Provider, email string) (*oidc.Identity, *oauth2.Token, error) {
	t.Helper()
	f := begin(t, p)
	code := callback(t, op, f, email)
	return p.Exchange(context.Background(), code, f.verifier, redirectURL, f.nonce)
}

func TestCodeFlowWithPKCESignsInAndReadsGroups(t *testing.T) {
	op := oidctest.Start(t)
	p := newProvider(t, op.Config())
	f := begin(t, p)
	u, _ := url.Parse(f.authURL)
	q := u.Query()
	for k, want := range map[string]string{"code_challenge_method": "S256", "state": f.state, "nonce": f.nonce, "client_id": oidctest.ClientID, "redirect_uri": redirectURL} {
		if q.Get(k) != want {
			t.Errorf("auth URL %s = %q, want %q", k, q.Get(k), want)
		}
	}
	if !strings.Contains(q.Get("scope"), "offline_access") {
		t.Errorf("scope %q lacks offline_access although refresh_interval is set", q.Get("scope"))
	}
	code := callback(t, op, f, "Alice@Example.com")
	id, tok, err := p.Exchange(context.Background(), code, f.verifier, redirectURL, f.nonce)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if id.Email != "alice@example.com" || !id.EmailVerified || id.Name != "Alice" || id.Subject == "" || id.Provider != "test" {
		t.Errorf("identity = %+v", id)
	}
	if !slices.Equal(id.Groups, []string{"staff", "admins"}) {
		t.Errorf("groups = %v, want [staff admins]", id.Groups)
	}
	if id.Domain() != "example.com" {
		t.Errorf("domain = %q", id.Domain())
	}
	if time.Until(id.Expiry) < 30*time.Minute {
		t.Errorf("expiry %s is too soon", id.Expiry)
	}
	if tok.RefreshToken == "" {
		t.Error("no refresh token although offline_access was asked")
	}
}

func TestExchangeRefusals(t *testing.T) {
	op := oidctest.Start(t)
	p := newProvider(t, op.Config())
	tests := []struct {
		name string
		// mutate changes what moat sends to Exchange.
		mutate func(f *flow, code *string)
		want   error
	}{
		{"a nonce other than the one sent is refused", func(f *flow, _ *string) { f.nonce = oidc.RandomToken() }, oidc.ErrBadState},
		{"an empty nonce is refused", func(f *flow, _ *string) { f.nonce = "" }, oidc.ErrBadState},
		{"a wrong PKCE verifier is refused", func(f *flow, _ *string) { f.verifier = oauth2.GenerateVerifier() }, oidc.ErrBadState},
		{"an unknown code is refused", func(_ *flow, code *string) { *code = "not-a-code" }, oidc.ErrBadState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := begin(t, p)
			code := callback(t, op, f, "alice@example.com")
			tt.mutate(&f, &code)
			_, _, err := p.Exchange(context.Background(), code, f.verifier, redirectURL, f.nonce)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Exchange error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestACodeCannotBeRedeemedTwice(t *testing.T) {
	op := oidctest.Start(t)
	p := newProvider(t, op.Config())
	f := begin(t, p)
	code := callback(t, op, f, "bob@example.com")
	if _, _, err := p.Exchange(context.Background(), code, f.verifier, redirectURL, f.nonce); err != nil {
		t.Fatalf("first Exchange: %v", err)
	}
	_, _, err := p.Exchange(context.Background(), code, f.verifier, redirectURL, f.nonce)
	if !errors.Is(err, oidc.ErrBadState) {
		t.Fatalf("replayed code: error = %v, want ErrBadState", err)
	}
}

func TestUnverifiedEmailIsRefused(t *testing.T) {
	op := oidctest.Start(t)
	p := newProvider(t, op.Config())
	_, _, err := signIn(t, op, p, "dave@example.com")
	if !errors.Is(err, oidc.ErrEmailNotVerified) {
		t.Fatalf("error = %v, want ErrEmailNotVerified", err)
	}
}

func TestHostedDomain(t *testing.T) {
	op := oidctest.Start(t)
	tests := []struct {
		name, hd, email string
		want            error
	}{
		{"a user of the hosted domain is accepted", "partner.example", "carol@partner.example", nil},
		{"the hosted domain is compared without case", "Partner.Example", "carol@partner.example", nil},
		{"a user of another hosted domain is refused", "example.com", "carol@partner.example", oidc.ErrDomainMismatch},
		{"a user without an hd claim is refused", "partner.example", "alice@example.com", oidc.ErrDomainMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := op.Config()
			cfg.HostedDomain = tt.hd
			p := newProvider(t, cfg)
			p.TrustHostedDomain = true // as for Google's issuer
			f := begin(t, p)
			u, _ := url.Parse(f.authURL)
			if u.Query().Get("hd") != tt.hd {
				t.Errorf("auth URL hd = %q, want %q", u.Query().Get("hd"), tt.hd)
			}
			code := callback(t, op, f, tt.email)
			id, _, err := p.Exchange(context.Background(), code, f.verifier, redirectURL, f.nonce)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if err == nil && id.HostedDomain != "partner.example" {
				t.Errorf("hosted domain = %q", id.HostedDomain)
			}
		})
	}
}

func TestExpiredIDToken(t *testing.T) {
	op := oidctest.Start(t)
	tests := []struct {
		name  string
		ahead time.Duration // how far the verifier's clock is past issue time
		want  error
	}{
		{"a token inside its lifetime is accepted", time.Minute, nil},
		{"a token just past exp is accepted within the clock skew", time.Hour + 10*time.Second, nil},
		{"a token past exp beyond the clock skew is refused", time.Hour + time.Minute, oidc.ErrInvalidToken},
		{"a token issued in the future beyond the clock skew is refused", -5 * time.Minute, oidc.ErrInvalidToken},
		{"a token issued a little in the future is accepted", -10 * time.Second, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProvider(t, op.Config())
			p.Now = func() time.Time { return time.Now().Add(tt.ahead) }
			_, _, err := signIn(t, op, p, "alice@example.com")
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestShortLivedIDTokenExpiresAsABearer(t *testing.T) {
	op := oidctest.Start(t)
	op.SetIDTokenLifetime(time.Second)
	p := newProvider(t, op.Config())
	p.ClockSkew = time.Millisecond
	_, tok, err := signIn(t, op, p, "alice@example.com")
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	raw := tok.Extra("id_token").(string)
	if _, err := p.VerifyBearer(context.Background(), raw); err != nil {
		t.Fatalf("fresh token refused: %v", err)
	}
	time.Sleep(2100 * time.Millisecond)
	if _, err := p.VerifyBearer(context.Background(), raw); !errors.Is(err, oidc.ErrInvalidToken) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: error = %v, want an expiry ErrInvalidToken", err)
	}
}

func TestRefresh(t *testing.T) {
	op := oidctest.Start(t)
	p := newProvider(t, op.Config())
	first, tok, err := signIn(t, op, p, "alice@example.com")
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	id, tok2, err := p.Refresh(context.Background(), tok.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if id.Subject != first.Subject || id.Email != "alice@example.com" || !slices.Equal(id.Groups, first.Groups) {
		t.Errorf("refreshed identity = %+v, want %+v", id, first)
	}
	if tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
		t.Fatalf("the provider rotates refresh tokens; got %q", tok2.RefreshToken)
	}
	t.Run("a rotated-out refresh token is refused", func(t *testing.T) {
		if _, _, err := p.Refresh(context.Background(), tok.RefreshToken); !errors.Is(err, oidc.ErrRefreshRejected) {
			t.Fatalf("error = %v, want ErrRefreshRejected", err)
		}
	})
	t.Run("a refresh the provider fails is refused", func(t *testing.T) {
		op.FailNextRefresh(1)
		if _, _, err := p.Refresh(context.Background(), tok2.RefreshToken); !errors.Is(err, oidc.ErrRefreshRejected) {
			t.Fatalf("error = %v, want ErrRefreshRejected", err)
		}
	})
	t.Run("groups changed at the provider arrive with the refresh", func(t *testing.T) {
		u, _ := op.User("alice@example.com")
		u.Groups = []string{"staff"}
		op.SetUser(u)
		id, tok3, err := p.Refresh(context.Background(), tok2.RefreshToken)
		if err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		if !slices.Equal(id.Groups, []string{"staff"}) {
			t.Errorf("groups = %v, want [staff]", id.Groups)
		}
		tok2 = tok3
	})
	t.Run("a revoked user's refresh is refused", func(t *testing.T) {
		op.RevokeUser("alice@example.com")
		if _, _, err := p.Refresh(context.Background(), tok2.RefreshToken); !errors.Is(err, oidc.ErrRefreshRejected) {
			t.Fatalf("error = %v, want ErrRefreshRejected", err)
		}
		if _, err := op.Login(context.Background(), begin(t, p).authURL, "alice@example.com", password); err == nil {
			t.Fatal("a revoked user could sign in at the provider")
		}
	})
}

func TestVerifyBearer(t *testing.T) {
	op := oidctest.Start(t)
	p := newProvider(t, op.Config())
	_, tok, err := signIn(t, op, p, "bob@example.com")
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	raw := tok.Extra("id_token").(string)
	other := op.Config()
	other.ClientID = "some-other-app"
	tests := []struct {
		name      string
		cfg       *config.SSOProvider
		audiences []string
		token     string
		want      error
	}{
		{"an ID token for our client is accepted", op.Config(), nil, raw, nil},
		{"an ID token for another audience is refused", other, nil, raw, oidc.ErrInvalidToken},
		{"an extra accepted audience lets it in", other, []string{oidctest.ClientID}, raw, nil},
		{"a token with a changed signature is refused", op.Config(), nil, raw[:len(raw)-4] + "AAAA", oidc.ErrInvalidToken},
		{"a token with a changed payload is refused", op.Config(), nil, tamper(raw), oidc.ErrInvalidToken},
		{"garbage is refused", op.Config(), nil, "not.a.jwt", oidc.ErrInvalidToken},
		{"an access token is refused", op.Config(), nil, tok.AccessToken, oidc.ErrInvalidToken},
		{"an oversized token is refused", op.Config(), nil, strings.Repeat("a", 20000), oidc.ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProvider(t, tt.cfg)
			p.Audiences = tt.audiences
			id, err := p.VerifyBearer(context.Background(), tt.token)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if err == nil && id.Email != "bob@example.com" {
				t.Errorf("email = %q", id.Email)
			}
		})
	}
}

// tamper swaps the payload of a JWT for one naming someone else.
func tamper(raw string) string {
	parts := strings.Split(raw, ".")
	parts[1] = strings.Replace(parts[1], parts[1][:8], "eyJzdWIi", 1)
	return strings.Join(parts, ".")
}

func TestProviderDown(t *testing.T) {
	restore := oidc.SetDiscoveryRetry(10 * time.Millisecond)
	t.Cleanup(restore)
	op := oidctest.Start(t)
	op.SetDown(true)
	p := newProvider(t, op.Config())
	_, err := p.AuthCodeURL(context.Background(), "s", "n", oauth2.GenerateVerifier(), redirectURL)
	if !errors.Is(err, oidc.ErrProviderDown) {
		t.Fatalf("AuthCodeURL while down: error = %v, want ErrProviderDown", err)
	}
	if _, err := p.VerifyBearer(context.Background(), "a.b.c"); !errors.Is(err, oidc.ErrProviderDown) {
		t.Fatalf("VerifyBearer while down: error = %v, want ErrProviderDown", err)
	}
	op.SetDown(false)
	time.Sleep(20 * time.Millisecond)
	if _, _, err := signIn(t, op, p, "alice@example.com"); err != nil {
		t.Fatalf("sign in after the provider came back: %v", err)
	}
	t.Run("a token endpoint that fails is provider down", func(t *testing.T) {
		f := begin(t, p)
		code := callback(t, op, f, "alice@example.com")
		op.SetDown(true)
		defer op.SetDown(false)
		_, _, err := p.Exchange(context.Background(), code, f.verifier, redirectURL, f.nonce)
		if !errors.Is(err, oidc.ErrProviderDown) {
			t.Fatalf("error = %v, want ErrProviderDown", err)
		}
	})
	t.Run("an unreachable issuer is provider down", func(t *testing.T) {
		cfg := op.Config()
		cfg.Issuer = "http://127.0.0.1:1"
		_, err := newProvider(t, cfg).AuthCodeURL(context.Background(), "s", "n", "v", redirectURL)
		if !errors.Is(err, oidc.ErrProviderDown) {
			t.Fatalf("error = %v, want ErrProviderDown", err)
		}
	})
}

func TestNewRefusesAPlainHTTPIssuerOffLoopback(t *testing.T) {
	for _, iss := range []string{"http://idp.example.com", "ftp://127.0.0.1", "https://"} {
		if _, err := oidc.New("x", &config.SSOProvider{Issuer: iss, ClientID: "c"}); err == nil {
			t.Errorf("issuer %q accepted", iss)
		}
	}
	for _, iss := range []string{"http://127.0.0.1:5556", "http://localhost:5556", "http://[::1]:5556", "https://accounts.google.com"} {
		if _, err := oidc.New("x", &config.SSOProvider{Issuer: iss, ClientID: "c"}); err != nil {
			t.Errorf("issuer %q refused: %v", iss, err)
		}
	}
}

// Issue 12 #13: an hd claim from any provider satisfied domain:, although
// only Google checks it; where users or admins map their own claims
// (Keycloak mappers, Authelia custom claims) that walked past a domain
// rule. hd counts only from Google, and only with hosted_domain set.
func TestAnHdClaimCountsOnlyFromGoogleWithHostedDomainSet(t *testing.T) {
	op := oidctest.Start(t)
	for _, tt := range []struct {
		name  string
		trust bool // the provider is Google
		hd    string
		want  string
	}{
		{"another provider's hd is ignored", false, "", ""},
		{"another provider's hd is ignored even with hosted_domain", false, "partner.example", ""},
		{"Google's hd without hosted_domain is ignored", true, "", ""},
		{"Google's hd with hosted_domain counts", true, "partner.example", "partner.example"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := op.Config()
			cfg.HostedDomain = tt.hd
			p := newProvider(t, cfg)
			p.TrustHostedDomain = tt.trust
			f := begin(t, p)
			code := callback(t, op, f, "carol@partner.example") // the test provider sends hd partner.example
			id, _, err := p.Exchange(context.Background(), code, f.verifier, redirectURL, f.nonce)
			if err != nil {
				t.Fatal(err)
			}
			if id.HostedDomain != tt.want {
				t.Fatalf("HostedDomain = %q, want %q", id.HostedDomain, tt.want)
			}
		})
	}
	if p, _ := oidc.New("google", &config.SSOProvider{Issuer: "https://accounts.google.com", ClientID: "x"}); !p.TrustHostedDomain {
		t.Error("Google's provider does not trust its hd claim")
	}
	if p, _ := oidc.New("corp", &config.SSOProvider{Issuer: "https://sso.example.com", ClientID: "x"}); p.TrustHostedDomain {
		t.Error("another provider trusts its hd claim")
	}
}
