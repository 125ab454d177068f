package oidctest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/auth/oidc/oidctest"
)

func authURL(p *oidctest.Provider, redirect string) string {
	q := url.Values{
		"client_id": {oidctest.ClientID}, "response_type": {"code"}, "scope": {"openid email"},
		"redirect_uri": {redirect}, "state": {"s"}, "nonce": {"n"},
	}
	return p.Issuer + "/authorize?" + q.Encode()
}

func TestDiscoveryAdvertisesWhatMoatNeeds(t *testing.T) {
	p := oidctest.Start(t)
	resp, err := http.Get(p.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var meta struct {
		Issuer     string   `json:"issuer"`
		Challenges []string `json:"code_challenge_methods_supported"`
		Grants     []string `json:"grant_types_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&meta); err != nil {
		t.Fatal(err)
	}
	if meta.Issuer != p.Issuer || !strings.Contains(strings.Join(meta.Challenges, " "), "S256") || !strings.Contains(strings.Join(meta.Grants, " "), "refresh_token") {
		t.Fatalf("discovery = %+v", meta)
	}
}

func TestLoginRefusals(t *testing.T) {
	p := oidctest.Start(t)
	ctx := context.Background()
	tests := []struct {
		name, email, password, want string
		setup                       func()
	}{
		{"a wrong password is refused", "alice@example.com", "nope", "wrong email or password", nil},
		{"an unknown user is refused", "zed@example.com", "correct horse battery", "wrong email or password", nil},
		{"a revoked user is refused", "bob@example.com", "correct horse battery", "disabled", func() { p.RevokeUser("bob@example.com") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			_, err := p.Login(ctx, authURL(p, "http://127.0.0.1:9/cb"), tt.email, tt.password)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
	t.Run("the right password reaches the redirect URI with a code", func(t *testing.T) {
		cb, err := p.Login(ctx, authURL(p, "http://127.0.0.1:9/cb"), "alice@example.com", "correct horse battery")
		if err != nil || cb.Query().Get("code") == "" || cb.Query().Get("state") != "s" {
			t.Fatalf("callback %v, %v", cb, err)
		}
	})
}

func TestRedirectURIsSetByTheTestAreEnforced(t *testing.T) {
	p := oidctest.Start(t)
	p.SetRedirectURIs("https://dash.example.com/_moat/oidc/callback")
	ctx := context.Background()
	if _, err := p.Login(ctx, authURL(p, "https://dash.example.com/_moat/oidc/callback"), "alice@example.com", "correct horse battery"); err != nil {
		t.Fatalf("registered redirect URI: %v", err)
	}
	if cb, err := p.Login(ctx, authURL(p, "https://evil.example.com/_moat/oidc/callback"), "alice@example.com", "correct horse battery"); err == nil {
		t.Fatalf("an unregistered redirect URI got a callback: %v", cb)
	}
}
