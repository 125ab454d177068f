package oidc_test

import (
	"context"
	"fmt"
	"net/http"

	"golang.org/x/oauth2"

	"github.com/moat-dev/moat/internal/auth/oidc"
	"github.com/moat-dev/moat/internal/config"
)

// Example shows the two halves of a sign-in as moat's login handler drives
// them: the redirect to the provider, and the callback.
func Example() {
	p, err := oidc.New("google", &config.SSOProvider{
		Issuer:       "https://accounts.google.com",
		ClientID:     "123.apps.googleusercontent.com",
		ClientSecret: "secret",
		HostedDomain: "example.com", // adds hd= and checks the hd claim
	})
	if err != nil {
		panic(err)
	}
	redirect := "https://dash.example.com/_moat/oidc/callback"

	// Start: keep state, nonce and verifier for this browser (moat seals
	// them in a cookie), then redirect.
	start := func(w http.ResponseWriter, r *http.Request) {
		state, nonce, verifier := oidc.RandomToken(), oidc.RandomToken(), oauth2.GenerateVerifier()
		u, err := p.AuthCodeURL(r.Context(), state, nonce, verifier, redirect)
		if err != nil { // errors.Is(err, oidc.ErrProviderDown): a page to try later
			http.Error(w, "sign-in unavailable", http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, u, http.StatusSeeOther)
	}

	// Callback: check state against the browser's, then redeem the code.
	callback := func(ctx context.Context, code, verifier, nonce string) {
		id, tok, err := p.Exchange(ctx, code, verifier, redirect, nonce)
		if err != nil { // ErrBadState, ErrEmailNotVerified, ErrDomainMismatch, ...
			return
		}
		fmt.Println(id.Email, id.Groups, tok.RefreshToken != "")
	}
	_, _ = start, callback
}
