package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/pat"
	"github.com/moat-dev/moat/internal/store"
)

var patRE = regexp.MustCompile(`(?m)^(moat_pat_[A-Za-z0-9_-]{43})$`)
var tokenIDRE = regexp.MustCompile(`Token (\S+) for`)

func TestTokensCreatePrintsTheTokenOnceAndStoresOnlyItsHash(t *testing.T) {
	e := newCLIEnv(t)
	e.mustMoat(t, "", "users", "add", "alice@example.com")
	out := e.mustMoat(t, "", "tokens", "create", "Alice@Example.com", "--name", "nightly export", "--ttl", "30d")
	m := patRE.FindStringSubmatch(out)
	if m == nil || !pat.Valid(m[1]) {
		t.Fatalf("no token in output:\n%s", out)
	}
	st := e.store(t)
	tok, err := st.GetTokenByHash(t.Context(), pat.Hash(m[1]))
	if err != nil {
		t.Fatalf("the printed token's hash is not stored: %v", err)
	}
	if tok.Name != "nightly export" {
		t.Errorf("name = %q", tok.Name)
	}
	if d := time.Until(tok.ExpiresAt); d < 29*24*time.Hour || d > 30*24*time.Hour {
		t.Errorf("expires in %s, want 30 days", d)
	}
	list := e.mustMoat(t, "", "tokens", "list", "alice@example.com")
	if strings.Contains(list, m[1]) || strings.Contains(list, tok.Hash) {
		t.Errorf("list shows the token or its hash:\n%s", list)
	}
	if !strings.Contains(list, tok.ID) || !strings.Contains(list, "active") || !strings.Contains(list, "nightly export") {
		t.Errorf("list does not show the token:\n%s", list)
	}
	events, err := st.ListAudit(t.Context(), store.AuditFilter{Action: "token.create"})
	if err != nil || len(events) != 1 || strings.Contains(events[0].Detail, m[1]) {
		t.Errorf("token.create audit events = %+v, %v; want one without the token", events, err)
	}
}

func TestTokensRevokeEndsTheToken(t *testing.T) {
	e := newCLIEnv(t)
	e.mustMoat(t, "", "users", "add", "bob@example.com")
	out := e.mustMoat(t, "", "tokens", "create", "bob@example.com")
	id := tokenIDRE.FindStringSubmatch(out)[1]
	e.mustMoat(t, "", "tokens", "revoke", id)
	var list []tokenJSON
	if err := json.Unmarshal([]byte(e.mustMoat(t, "", "tokens", "list", "bob@example.com", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Status != "revoked" || list[0].RevokedAt == "" {
		t.Fatalf("list = %+v, want one revoked token", list)
	}
	tok, err := e.store(t).GetTokenByHash(t.Context(), pat.Hash(patRE.FindStringSubmatch(out)[1]))
	if err != nil || tok.RevokedAt.IsZero() {
		t.Fatalf("stored token = %+v, %v; want revoked", tok, err)
	}
}

func TestTokensErrorsAreClear(t *testing.T) {
	e := newCLIEnv(t)
	e.mustMoat(t, "", "users", "add", "carol@example.com")
	e.mustMoat(t, "", "users", "disable", "carol@example.com")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"an unknown user", []string{"tokens", "create", "nobody@example.com"}, "no user nobody@example.com"},
		{"a disabled user", []string{"tokens", "create", "carol@example.com"}, "is disabled"},
		{"a zero ttl", []string{"tokens", "create", "carol@example.com", "--ttl", "0s"}, "invalid --ttl"},
		{"a ttl over a year", []string{"tokens", "create", "carol@example.com", "--ttl", "400d"}, "invalid --ttl"},
		{"a ttl that is not a duration", []string{"tokens", "create", "carol@example.com", "--ttl", "soon"}, "invalid --ttl"},
		{"an unknown token id", []string{"tokens", "revoke", "no-such-id"}, "no token no-such-id"},
		{"a name on two lines", []string{"tokens", "create", "carol@example.com", "--name", "ci\nprod"}, "token name"},
		{"list for an unknown user", []string{"tokens", "list", "nobody@example.com"}, "no user nobody@example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := e.moat(t, "", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q\n%s", err, tc.want, out)
			}
		})
	}
}
