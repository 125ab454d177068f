package auth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/authtest"
	"github.com/moat-dev/moat/internal/auth/oidc"
	"github.com/moat-dev/moat/internal/auth/pat"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/store"
	"golang.org/x/oauth2"
)

func TestBearerTokens(t *testing.T) {
	h := authtest.NewSSO(t, nil)
	ctx := context.Background()
	// An ID token as a script would get it from the provider.
	p := h.Svc.Provider("test")
	f := struct{ state, nonce, verifier string }{oidc.RandomToken(), oidc.RandomToken(), oauth2.GenerateVerifier()}
	authURL, err := p.AuthCodeURL(ctx, f.state, f.nonce, f.verifier, "http://127.0.0.1:9/cb")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := h.OP.Login(ctx, authURL, "alice@example.com", authtest.SSOPassword)
	if err != nil {
		t.Fatal(err)
	}
	_, tok, err := p.Exchange(ctx, cb.Query().Get("code"), f.verifier, "http://127.0.0.1:9/cb", f.nonce)
	if err != nil {
		t.Fatal(err)
	}
	idToken := tok.Extra("id_token").(string)

	// Personal access tokens of carol (moat user, partner.example: not
	// allowed on /api/) and dave (example.com).
	mk := func(email string, expires time.Time) (string, *store.Token) {
		u := &store.User{Email: email}
		if err := h.Store.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		raw, hash := pat.New()
		st := &store.Token{Hash: hash, UserID: u.ID, Name: "t", ExpiresAt: expires}
		if err := h.Store.CreateToken(ctx, st); err != nil {
			t.Fatal(err)
		}
		return raw, st
	}
	good, goodTok := mk("erin@example.com", time.Now().Add(time.Hour))
	expired, _ := mk("frank@example.com", time.Now().Add(-time.Minute))
	partner, _ := mk("gina@partner.example", time.Now().Add(time.Hour))

	tests := []struct {
		name, path, auth string
		want             int
		email            string
	}{
		{"an ID token for moat's client is accepted", "/api/", "Bearer " + idToken, 200, "alice@example.com"},
		{"a personal access token is accepted", "/api/", "Bearer " + good, 200, "erin@example.com"},
		{"the scheme is case-insensitive", "/api/", "bearer " + good, 200, "erin@example.com"},
		{"an expired personal access token is refused", "/api/", "Bearer " + expired, 401, ""},
		{"an unknown personal access token is refused", "/api/", "Bearer " + pat.Prefix + strings.Repeat("A", 43), 401, ""},
		{"a user outside the allow list is refused", "/api/", "Bearer " + partner, 403, ""},
		{"a tampered ID token is refused", "/api/", "Bearer " + idToken[:len(idToken)-3] + "AAA", 401, ""},
		{"garbage is refused", "/api/", "Bearer hello", 401, ""},
		{"basic auth is not a bearer token", "/api/", "Basic YWxpY2U6cHc=", 401, ""},
		{"a route without bearer: true ignores the token", "/sso/", "Bearer " + good, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", h.Srv.URL+tt.path, nil)
			req.Header.Set("Authorization", tt.auth)
			req.Header.Set("Accept", "application/json")
			resp, err := h.Srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := authtest.ReadBody(t, resp)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
			if tt.want == 401 && tt.path == "/api/" && resp.Header.Get("WWW-Authenticate") == "" && !strings.HasPrefix(tt.auth, "Basic") {
				t.Error("401 without WWW-Authenticate")
			}
			if tt.email != "" {
				var got map[string]string
				_ = json.Unmarshal([]byte(body), &got)
				if got[assertion.HeaderUserEmail] != tt.email || got[assertion.HeaderAssertion] == "" {
					t.Errorf("app saw %v", got)
				}
			}
		})
	}
	bearer := func(token string) (int, map[string]string) {
		t.Helper()
		req, _ := http.NewRequest("GET", h.Srv.URL+"/api/", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := h.Srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]string
		_ = json.Unmarshal([]byte(authtest.ReadBody(t, resp)), &got)
		resp.Body.Close()
		return resp.StatusCode, got
	}
	t.Run("issue 12 #9: the bearer token moat consumed never reaches the app", func(t *testing.T) {
		for name, token := range map[string]string{"ID token": idToken, "personal access token": good} {
			status, got := bearer(token)
			if status != 200 || got[assertion.HeaderUserEmail] == "" {
				t.Fatalf("%s: %d %v", name, status, got)
			}
			if a, ok := got["Authorization"]; ok {
				t.Errorf("%s: the app received Authorization %q", name, a)
			}
		}
	})
	t.Run("issue 12 #11: a personal access token revoked through this instance stops at once", func(t *testing.T) {
		raw, tok := mk("hana@example.com", time.Now().Add(time.Hour))
		if status, _ := bearer(raw); status != 200 {
			t.Fatalf("before revocation: %d", status)
		}
		if err := h.Store.RevokeToken(ctx, tok.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		h.Proc.Ended(directory.Ended{Tokens: []string{tok.Hash}})
		if status, _ := bearer(raw); status != http.StatusUnauthorized { // within tokenVerifyEvery of the last use
			t.Fatalf("right after revocation: %d, want 401", status)
		}
	})
	t.Run("a revoked personal access token is refused within seconds", func(t *testing.T) {
		const ttl = 300 * time.Millisecond
		h.Proc.SetTokenTTL(ttl) // instead of tokenVerifyEvery
		if err := h.Store.RevokeToken(ctx, goodTok.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(ttl + 2*time.Second)
		for {
			req, _ := http.NewRequest("GET", h.Srv.URL+"/api/", nil)
			req.Header.Set("Authorization", "Bearer "+good)
			resp, err := h.Srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == 401 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("still %d after revocation", resp.StatusCode)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("an ID token for another audience is refused", func(t *testing.T) {
		// A moat whose client at the same provider is another-app: the
		// token was issued to moat-test, so its aud does not match.
		h2 := authtest.NewSSO(t, func(cfg *config.Config) {
			cfg.Identity.SSO["test"] = &config.SSOProvider{Issuer: h.OP.Issuer, ClientID: "another-app", ClientSecret: "x"}
		})
		req, _ := http.NewRequest("GET", h2.Srv.URL+"/api/", nil)
		req.Header.Set("Authorization", "Bearer "+idToken)
		resp, err := h2.Srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
	})
}
