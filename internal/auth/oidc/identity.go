package oidc

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/directory"
)

// Identity is who the provider says the person is, after verification.
type Identity struct {
	Provider      string // the provider's name in identity.sso
	Subject       string // the provider's stable user id (sub)
	Email         string // lower-case
	EmailVerified bool   // always true in an Identity this package returns
	Name          string
	HostedDomain  string   // the hd claim, from Google with hosted_domain set only
	Groups        []string // from groups_claim, if configured
	Expiry        time.Time
}

// Domain is the part of the email after the @, lower-case.
func (id *Identity) Domain() string {
	if i := strings.LastIndexByte(id.Email, '@'); i >= 0 {
		return id.Email[i+1:]
	}
	return ""
}

// Maximum sizes of what a provider can make moat hold per user.
const (
	maxGroups   = 1000
	maxGroupLen = 256
)

// parseIdentity reads the claims moat uses from an ID token's (or
// userinfo's) JSON and applies the provider's rules.
func (p *Provider) parseIdentity(raw json.RawMessage, expiry time.Time) (*Identity, error) {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	id := &Identity{Provider: p.name, Expiry: expiry}
	str := func(k string) string {
		var s string
		if v, ok := c[k]; ok {
			_ = json.Unmarshal(v, &s)
		}
		return s
	}
	id.Subject = str("sub")
	id.Email = strings.ToLower(strings.TrimSpace(str("email")))
	id.Name = str("name")
	// hd is Google's claim, checked by Google against the Workspace; any
	// other provider may let users or admins map their own claims (Keycloak
	// mappers, Authelia custom claims), so an hd from it vouches for
	// nothing. It counts only from Google with hosted_domain set (issue 12
	// #13), and is then the hosted domain itself.
	hd := strings.ToLower(str("hd"))
	if p.TrustHostedDomain && p.cfg.HostedDomain != "" {
		id.HostedDomain = hd
	}
	if id.Subject == "" {
		return nil, fmt.Errorf("%w: no sub claim", ErrInvalidToken)
	}
	if id.Email == "" {
		return nil, fmt.Errorf("%w: no email claim (is the email scope granted?)", ErrInvalidToken)
	}
	// One plain addr-spec and nothing else: domain: matches the text after
	// the last @, so mallory@evil.example@example.com must not reach it
	// (oauth2-proxy CVE-2026-40574).
	if !directory.PlainEmail(id.Email) {
		return nil, fmt.Errorf("%w: the email claim %.100q is not one plain address", ErrInvalidToken, id.Email)
	}
	id.EmailVerified = boolClaim(c["email_verified"])
	if !id.EmailVerified {
		return nil, fmt.Errorf("%w: %s", ErrEmailNotVerified, id.Email)
	}
	if want := p.cfg.HostedDomain; want != "" && !strings.EqualFold(hd, want) {
		return nil, fmt.Errorf("%w: want %s, token has %q", ErrDomainMismatch, want, hd)
	}
	if p.cfg.GroupsClaim != "" {
		groups, err := groupsClaim(c[p.cfg.GroupsClaim])
		if err != nil {
			return nil, fmt.Errorf("%w: claim %s: %v", ErrInvalidToken, p.cfg.GroupsClaim, err)
		}
		id.Groups = groups
	}
	return id, nil
}

// boolClaim reads a boolean claim written as true or "true" (some
// providers send a string).
func boolClaim(v json.RawMessage) bool {
	var b bool
	if json.Unmarshal(v, &b) == nil {
		return b
	}
	var s string
	return json.Unmarshal(v, &s) == nil && strings.EqualFold(s, "true")
}

// groupsClaim reads a list of strings, or one string of names separated by
// spaces or commas. A missing or null claim is no groups.
func groupsClaim(v json.RawMessage) ([]string, error) {
	if len(v) == 0 || string(v) == "null" {
		return nil, nil
	}
	var list []string
	if err := json.Unmarshal(v, &list); err != nil {
		var s string
		if json.Unmarshal(v, &s) != nil {
			return nil, fmt.Errorf("want a list of strings or a string")
		}
		list = strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
	}
	out := make([]string, 0, len(list))
	seen := make(map[string]bool, len(list))
	for _, g := range list {
		g = strings.TrimSpace(g)
		if g == "" || seen[g] {
			continue
		}
		if len(g) > maxGroupLen {
			return nil, fmt.Errorf("group name longer than %d bytes", maxGroupLen)
		}
		if len(out) == maxGroups {
			return nil, fmt.Errorf("more than %d groups", maxGroups)
		}
		seen[g] = true
		out = append(out, g)
	}
	return out, nil
}
