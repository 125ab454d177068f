package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/store"
)

func TestUsersResetPasskeysRemovesThemAndIsAudited(t *testing.T) {
	e := newCLIEnv(t)
	e.mustMoat(t, "", "users", "add", "alice@example.com")
	st := e.store(t)
	u, err := st.GetUserByEmail(t.Context(), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, cred := range []string{"c1", "c2"} {
		if err := st.AddPasskey(t.Context(), &store.Passkey{UserID: u.ID, CredentialID: cred, RPID: "dash.example.com", Name: "key " + cred, Record: []byte("sealed")}); err != nil {
			t.Fatal(err)
		}
	}
	out := e.mustMoat(t, "", "users", "show", "alice@example.com")
	if !strings.Contains(out, `passkeys:`) || !strings.Contains(out, `"key c1" for dash.example.com`) {
		t.Errorf("show does not list the passkeys:\n%s", out)
	}
	var j struct {
		Passkeys *int `json:"passkeys"`
	}
	if err := json.Unmarshal([]byte(e.mustMoat(t, "", "users", "show", "alice@example.com", "--json")), &j); err != nil || j.Passkeys == nil || *j.Passkeys != 2 {
		t.Errorf("show --json passkeys = %v, %v; want 2", j.Passkeys, err)
	}
	if out := e.mustMoat(t, "", "users", "reset-passkeys", "alice@example.com"); !strings.Contains(out, "2 passkey(s) of alice@example.com removed") {
		t.Errorf("reset-passkeys said %q", out)
	}
	if list, _ := st.ListPasskeys(t.Context(), u.ID); len(list) != 0 {
		t.Errorf("%d passkeys left", len(list))
	}
	ev, _ := st.ListAudit(t.Context(), store.AuditFilter{Action: "passkey.reset"})
	if len(ev) != 1 || ev[0].Actor != "cli" || ev[0].Subject != "alice@example.com" {
		t.Errorf("audit %+v, want one passkey.reset by cli", ev)
	}
	if _, err := e.moat(t, "", "users", "reset-passkeys", "nobody@example.com"); err == nil || !strings.Contains(err.Error(), "moat users list") {
		t.Errorf("an unknown user: %v", err)
	}
}
