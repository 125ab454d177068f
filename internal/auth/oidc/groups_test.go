package oidc

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/config"
)

func TestGroupsClaimForms(t *testing.T) {
	tests := []struct {
		name    string
		claim   string
		want    []string
		wantErr bool
	}{
		{"a list of strings is read as is", `["staff","admins"]`, []string{"staff", "admins"}, false},
		{"a space separated string is split", `"staff admins"`, []string{"staff", "admins"}, false},
		{"a comma separated string is split", `"staff, admins,,"`, []string{"staff", "admins"}, false},
		{"duplicates are dropped", `["a","a","b"]`, []string{"a", "b"}, false},
		{"a missing claim is no groups", ``, nil, false},
		{"a null claim is no groups", `null`, nil, false},
		{"a number is refused", `42`, nil, true},
		{"a list with a number is refused", `["a", 1]`, nil, true},
		{"an overlong name is refused", `["` + strings.Repeat("g", 300) + `"]`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := groupsClaim(json.RawMessage(tt.claim))
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if len(got) != len(tt.want) || !slices.Equal(got, tt.want) && len(tt.want) > 0 {
				t.Errorf("groups = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEmailVerifiedForms(t *testing.T) {
	p := &Provider{name: "t", cfg: config.SSOProvider{}}
	tests := []struct {
		name, verified string
		want           error
	}{
		{"true is verified", `true`, nil},
		{"the string true is verified", `"true"`, nil},
		{"false is not verified", `false`, ErrEmailNotVerified},
		{"a missing claim is not verified", ``, ErrEmailNotVerified},
		{"the string yes is not verified", `"yes"`, ErrEmailNotVerified},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims := `{"sub":"1","email":"A@Example.com"`
			if tt.verified != "" {
				claims += `,"email_verified":` + tt.verified
			}
			id, err := p.parseIdentity(json.RawMessage(claims+"}"), timeZero)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if err == nil && id.Email != "a@example.com" {
				t.Errorf("email = %q, want it lower-cased", id.Email)
			}
		})
	}
}
