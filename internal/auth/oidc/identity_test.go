package oidc

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/moat-dev/moat/internal/config"
)

// oauth2-proxy CVE-2026-40574: an email claim with two @ passed an
// email_domain check that read the text after the last one. moat takes
// one plain addr-spec from a provider and refuses the sign-in otherwise.
func TestAnEmailClaimMustBeOnePlainAddress(t *testing.T) {
	p := &Provider{name: "t", cfg: config.SSOProvider{}}
	for _, tt := range []struct {
		email string
		ok    bool
	}{
		{"alice@example.com", true},
		{"Alice.Smith+dash@Sub.Example.com", true},
		{"mallory%example.com@evil.example", true}, // plain: its domain is evil.example
		{"mallory@evil.example@example.com", false},
		{"mallory@evil.example.com@example.com", false},
		{`"mallory@evil.example"@example.com`, false},
		{"Mallory <mallory@example.com>", false},
		{"mallory@example.com (x)", false},
		{"mallory@[192.0.2.1]", false},
		{"mallory", false},
		{"@example.com", false},
		{"mallory@", false},
		{"mal lory@example.com", false},
	} {
		t.Run(tt.email, func(t *testing.T) {
			raw, _ := json.Marshal(map[string]any{"sub": "1", "email": tt.email, "email_verified": true})
			id, err := p.parseIdentity(raw, timeZero)
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if id.Email == "" {
					t.Fatal("no email")
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error = %v, want ErrInvalidToken", err)
			}
		})
	}
}
