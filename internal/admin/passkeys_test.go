package admin

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/moat-dev/moat/internal/store"
)

func TestAnAdminSeesAndResetsAUsersPasskeysInTheConsoleAndTheAPI(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	add := func(cred, host string) {
		t.Helper()
		if err := h.st.AddPasskey(ctx, &store.Passkey{UserID: h.user.ID, CredentialID: cred, RPID: host, Name: "Key " + cred, Record: []byte("sealed")}); err != nil {
			t.Fatal(err)
		}
	}
	add("c1", "dash.example.com")
	add("c2", "reports.example.com")

	// The console lists them, each with its host, and resets them.
	c := h.login(adminEmail, adminPassword)
	base := "/_moat/admin/users/" + h.user.ID
	resp, body := h.do(c, "GET", base, nil, true, nil)
	wantPage(t, resp, body, 200, `id="user-passkeys">2<`, "<td>Key c1</td><td>dash.example.com</td>", "<td>Key c2</td><td>reports.example.com</td>", "/reset-passkeys")
	csrf := csrfPattern.FindStringSubmatch(h.csrfPage(c))[1]
	resp, _ = h.post(c, base+"/reset-passkeys", url.Values{"csrf": {csrf}})
	wantSeeOther(t, resp, base+"?done=passkeys_reset")
	resp, body = h.do(c, "GET", base+"?done=passkeys_reset", nil, true, nil)
	wantPage(t, resp, body, 200, "passkeys were removed.", `id="user-passkeys">0<`, "No passkeys yet.")
	if !h.audited("passkey.reset", adminEmail, userEmail) {
		t.Error("the console's reset is not audited")
	}

	// The API: the count on the user, the list, the reset.
	add("c3", "dash.example.com")
	tok := h.token(h.admin)
	var one UserJSON
	if code := h.api(tok, "GET", "users/"+h.user.ID, nil, &one); code != 200 || one.Passkeys != 1 {
		t.Fatalf("user: %d, passkeys %d; want 1", code, one.Passkeys)
	}
	var list struct{ Passkeys []PasskeyJSON }
	if code := h.api(tok, "GET", "users/"+h.user.ID+"/passkeys", nil, &list); code != 200 || len(list.Passkeys) != 1 || list.Passkeys[0].Host != "dash.example.com" || list.Passkeys[0].Name != "Key c3" {
		t.Fatalf("passkeys: %d %+v", code, list)
	}
	var reset struct {
		User            UserJSON
		PasskeysRemoved int `json:"passkeys_removed"`
	}
	if code := h.api(tok, "POST", "users/"+h.user.ID+"/reset-passkeys", nil, &reset); code != 200 || reset.PasskeysRemoved != 1 || reset.User.Passkeys != 0 {
		t.Fatalf("reset-passkeys: %d %+v", code, reset)
	}
	if code := h.api(tok, "POST", "users/nope/reset-passkeys", nil, nil); code != http.StatusNotFound {
		t.Errorf("reset-passkeys of an unknown user: %d, want 404", code)
	}
	// Only admins: the user's own token cannot.
	if code := h.api(h.token(h.user), "POST", "users/"+h.user.ID+"/reset-passkeys", nil, nil); code != http.StatusForbidden {
		t.Errorf("a non-admin's reset-passkeys: %d, want 403", code)
	}
}
