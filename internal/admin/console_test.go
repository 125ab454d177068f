package admin

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/pat"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/store"
)

func wantPage(t *testing.T, resp *http.Response, body string, status int, contains ...string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d: %.300s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, body)
	}
	for _, s := range contains {
		if !strings.Contains(body, s) {
			t.Fatalf("%s %s: page lacks %q", resp.Request.Method, resp.Request.URL.Path, s)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("%s: no strict CSP (%q)", resp.Request.URL.Path, csp)
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "style=") || strings.Contains(body, "<style") {
		t.Fatalf("%s: inline script or style", resp.Request.URL.Path)
	}
}

func wantSeeOther(t *testing.T, resp *http.Response, location string) {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != location {
		t.Fatalf("%s %s: %d to %q, want 303 to %q", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, resp.Header.Get("Location"), location)
	}
}

var oneTimePattern = regexp.MustCompile(`id="one-time-password">([^<]+)<`)

func TestTheConsoleRunsEveryUserActionWithoutJavaScript(t *testing.T) {
	h := newHarness(t, nil)
	c := h.login(adminEmail, adminPassword)
	ctx := context.Background()

	resp, body := h.do(c, "GET", "/_moat/admin/", nil, true, nil)
	wantSeeOther(t, resp, "/_moat/admin/users")
	resp, body = h.do(c, "GET", "/_moat/admin/users", nil, true, nil)
	wantPage(t, resp, body, 200, userEmail, adminEmail, "2 user(s)")
	csrf := csrfPattern.FindStringSubmatch(h.csrfPage(c))[1]

	// Create with a one-time password: shown once.
	resp, body = h.post(c, "/_moat/admin/users", url.Values{"csrf": {csrf}, "email": {"frank@example.com"}, "name": {"Frank"}, "groups": {"staff, analysts"}, "mode": {"password"}})
	wantPage(t, resp, body, http.StatusCreated, "frank@example.com", "one-time-password")
	if m := oneTimePattern.FindStringSubmatch(body); m == nil || len(m[1]) < 20 {
		t.Fatal("no one-time password on the page")
	}
	frank, err := h.st.GetUserByEmail(ctx, "frank@example.com")
	if err != nil || !frank.MustChangePassword || strings.Join(frank.Groups, ",") != "analysts,staff" {
		t.Fatalf("created %+v, %v", frank, err)
	}
	// A duplicate shows the form again with the error.
	resp, body = h.post(c, "/_moat/admin/users", url.Values{"csrf": {csrf}, "email": {"frank@example.com"}, "mode": {"password"}})
	wantPage(t, resp, body, http.StatusConflict, "already exists", `value="frank@example.com"`)
	// Create with a set-password link.
	resp, body = h.post(c, "/_moat/admin/users", url.Values{"csrf": {csrf}, "email": {"gina@example.com"}, "mode": {"link"}})
	wantPage(t, resp, body, http.StatusCreated, "set-password-link", directory.SetPasswordPath+"moat_setpw_")

	base := "/_moat/admin/users/" + frank.ID
	resp, body = h.do(c, "GET", base, nil, true, nil)
	wantPage(t, resp, body, 200, "frank@example.com", "Must change password", "/reset-password", "/delete")

	resp, _ = h.post(c, base+"/update", url.Values{"csrf": {csrf}, "name": {"Frank F."}, "groups": {"staff"}})
	wantSeeOther(t, resp, base+"?done=updated")
	if u, _ := h.st.GetUser(ctx, frank.ID); u.Name != "Frank F." || strings.Join(u.Groups, ",") != "staff" {
		t.Fatalf("update: %+v", u)
	}
	resp, body = h.do(c, "GET", base+"?done=updated", nil, true, nil)
	wantPage(t, resp, body, 200, "Saved.")

	resp, _ = h.post(c, base+"/disable", url.Values{"csrf": {csrf}})
	wantSeeOther(t, resp, base+"?done=disabled")
	if u, _ := h.st.GetUser(ctx, frank.ID); !u.Disabled {
		t.Fatal("not disabled")
	}
	resp, _ = h.post(c, base+"/enable", url.Values{"csrf": {csrf}})
	wantSeeOther(t, resp, base+"?done=enabled")

	resp, _ = h.post(c, base+"/revoke-sessions", url.Values{"csrf": {csrf}})
	wantSeeOther(t, resp, base+"?done=revoked")
	resp, _ = h.post(c, base+"/reset-mfa", url.Values{"csrf": {csrf}})
	wantSeeOther(t, resp, base+"?done=mfa_reset")
	resp, body = h.post(c, base+"/reset-password", url.Values{"csrf": {csrf}, "mode": {"password"}})
	wantPage(t, resp, body, 200, "one-time-password")

	// A personal access token of the user is listed and revoked.
	ftok := h.token(frank)
	ft, _ := h.st.GetTokenByHash(ctx, pat.Hash(ftok))
	resp, body = h.do(c, "GET", base, nil, true, nil)
	wantPage(t, resp, body, 200, "/tokens/"+ft.ID+"/revoke")
	resp, _ = h.post(c, base+"/tokens/"+ft.ID+"/revoke", url.Values{"csrf": {csrf}})
	wantSeeOther(t, resp, base+"?done=token_revoked")
	if ft, _ = h.st.GetTokenByHash(ctx, pat.Hash(ftok)); ft.RevokedAt.IsZero() {
		t.Fatal("token not revoked")
	}

	// The admin cannot disable themselves.
	resp, body = h.post(c, "/_moat/admin/users/"+h.admin.ID+"/disable", url.Values{"csrf": {csrf}})
	wantPage(t, resp, body, http.StatusConflict, "own account")

	// Sessions: the admin's own is listed and marked; revoke the user's.
	h.login(userEmail, userPassword)
	resp, body = h.do(c, "GET", "/_moat/admin/sessions", nil, true, nil)
	wantPage(t, resp, body, 200, adminEmail, userEmail, "this session", "127.0.0.1")
	list, _ := h.st.ListSessions(ctx, h.user.ID)
	resp, _ = h.post(c, "/_moat/admin/sessions/"+list[0].IDHash+"/revoke", url.Values{"csrf": {csrf}})
	wantSeeOther(t, resp, "/_moat/admin/sessions?done=session_revoked")
	if h.sessionsOf(h.user) != 0 {
		t.Fatal("session not revoked")
	}

	// Groups: members and the routes that allow each.
	resp, body = h.do(c, "GET", "/_moat/admin/groups", nil, true, nil)
	wantPage(t, resp, body, 200, "moat-admins", "staff", "127.0.0.1/app/", userEmail)

	// Delete: a confirmation step; a wrong confirmation deletes nothing.
	resp, body = h.do(c, "GET", base+"/delete", nil, true, nil)
	wantPage(t, resp, body, 200, "Type frank@example.com to confirm")
	resp, body = h.post(c, base+"/delete", url.Values{"csrf": {csrf}, "confirm": {"someone@example.com"}})
	wantPage(t, resp, body, http.StatusBadRequest, "does not match")
	if _, err := h.st.GetUser(ctx, frank.ID); err != nil {
		t.Fatal("a wrong confirmation deleted the user")
	}
	resp, _ = h.post(c, base+"/delete", url.Values{"csrf": {csrf}, "confirm": {"Frank@Example.com"}})
	wantSeeOther(t, resp, "/_moat/admin/users?done=deleted")
	if _, err := h.st.GetUser(ctx, frank.ID); err == nil {
		t.Fatal("not deleted")
	}

	// Audit log: every change above by the admin, filterable.
	resp, body = h.do(c, "GET", "/_moat/admin/audit?user=frank@example.com", nil, true, nil)
	wantPage(t, resp, body, 200, "user.create", "user.groups", "user.disable", "user.enable", "session.revoke_all", "mfa.remove", "user.reset_password", "user.delete")
	resp, body = h.do(c, "GET", "/_moat/admin/audit?action=user.delete", nil, true, nil)
	wantPage(t, resp, body, 200, "frank@example.com")
	if strings.Contains(body, "user.create") {
		t.Fatal("action filter let other actions through")
	}
	resp, body = h.do(c, "GET", "/_moat/admin/audit?since=nonsense", nil, true, nil)
	wantPage(t, resp, body, http.StatusBadRequest, "invalid time")

	// Search and paging.
	resp, body = h.do(c, "GET", "/_moat/admin/users?q=gina", nil, true, nil)
	wantPage(t, resp, body, 200, "gina@example.com", "1 user(s)")
}

func (h *harness) csrfPage(c *http.Client) string {
	h.t.Helper()
	_, body := h.do(c, "GET", "/_moat/admin/users/new", nil, true, nil)
	return body
}

func TestTheConsoleSpeaksJapaneseAndRemembersTheChoice(t *testing.T) {
	h := newHarness(t, nil)
	c := h.login(adminEmail, adminPassword)
	resp, body := h.do(c, "GET", "/_moat/admin/users?lang=ja", nil, true, nil)
	wantPage(t, resp, body, 200, `lang="ja"`, "ユーザーを追加", "監査ログ")
	resp, body = h.do(c, "GET", "/_moat/admin/groups", nil, true, nil)
	wantPage(t, resp, body, 200, "許可しているルート")
	resp, body = h.do(c, "GET", "/_moat/admin/groups?lang=en", nil, true, map[string]string{"Accept-Language": "ja"})
	wantPage(t, resp, body, 200, "Routes that allow it")
}

func TestANonAdminSeesAForbiddenPageThatSaysWhoTheyAre(t *testing.T) {
	h := newHarness(t, nil)
	c := h.login(userEmail, userPassword)
	resp, body := h.do(c, "GET", "/_moat/admin/users", nil, true, nil)
	wantPage(t, resp, body, http.StatusForbidden, "Administrators only", userEmail)
}

// lockSignIn makes a distributed attack lock u's sign-in from unknown
// devices: failures from four clients past a small lock threshold.
func (h *harness) lockSignIn(u *store.User) {
	h.t.Helper()
	th := h.proc.Throttle
	l := th.Limits[throttle.Password]
	l.Lock = throttle.Lock{Failures: 4, Clients: 4, For: time.Hour}
	th.Limits[throttle.Password] = l
	for i := range 4 {
		at := throttle.Attempt{Factor: throttle.Password, Account: u.Email, Source: throttle.Source{Client: netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)})}}
		if _, err := th.Begin(context.Background(), at); err != nil {
			h.t.Fatal(err)
		}
		if _, err := th.Failed(context.Background(), at); err != nil {
			h.t.Fatal(err)
		}
	}
	if left, err := th.Locked(context.Background(), u.Email); err != nil || left == 0 {
		h.t.Fatalf("the attack did not lock %s: %v %v", u.Email, left, err)
	}
}

// Issue 12 #2: a distributed attack's lock on a user's sign-in shows on the
// user's page, and an admin lifts it there or through the API, each an
// audit event.
func TestAnAdminSeesAndLiftsASignInLock(t *testing.T) {
	h := newHarness(t, nil)
	c := h.login(adminEmail, adminPassword)
	csrf := csrfPattern.FindStringSubmatch(h.csrfPage(c))[1]
	base := "/_moat/admin/users/" + h.user.ID
	resp, body := h.do(c, "GET", base, nil, true, nil)
	wantPage(t, resp, body, 200, userEmail)
	if strings.Contains(body, "/unlock") {
		t.Fatal("an unlocked user's page offers an unlock")
	}

	h.lockSignIn(h.user)
	resp, body = h.do(c, "GET", base, nil, true, nil)
	wantPage(t, resp, body, 200, "Locked for new devices for about 60 more minutes", base+"/unlock")
	resp, _ = h.post(c, base+"/unlock", url.Values{"csrf": {csrf}})
	wantSeeOther(t, resp, base+"?done=unlocked")
	if left, _ := h.proc.Throttle.Locked(context.Background(), userEmail); left != 0 {
		t.Fatalf("still locked for %v after the console's unlock", left)
	}
	if !h.audited("login.unlock", adminEmail, userEmail) {
		t.Fatal("the unlock was not audited")
	}
	resp, body = h.do(c, "GET", base+"?done=unlocked", nil, true, nil)
	wantPage(t, resp, body, 200, "Sign-in is unlocked")

	// The API: GET shows when the lock ends, POST unlock lifts it.
	h.lockSignIn(h.user)
	tok := h.token(h.admin)
	var one UserJSON
	if code := h.api(tok, "GET", "users/"+h.user.ID, nil, &one); code != 200 || one.SignInLockedUntil == "" {
		t.Fatalf("GET a locked user: %d %+v", code, one)
	}
	var unlocked struct {
		User      UserJSON `json:"user"`
		WasLocked bool     `json:"was_locked"`
	}
	if code := h.api(tok, "POST", "users/"+h.user.ID+"/unlock", nil, &unlocked); code != 200 || !unlocked.WasLocked || unlocked.User.Email != userEmail {
		t.Fatalf("POST unlock: %d %+v", code, unlocked)
	}
	one = UserJSON{}
	if code := h.api(tok, "GET", "users/"+h.user.ID, nil, &one); code != 200 || one.SignInLockedUntil != "" {
		t.Fatalf("GET after the unlock: %d %+v", code, one)
	}
	evs, _ := h.st.ListAudit(context.Background(), store.AuditFilter{Action: "login.unlock", Subject: userEmail})
	if len(evs) != 2 || !strings.Contains(evs[0].Detail, "personal access token") {
		t.Fatalf("login.unlock events: %+v", evs)
	}
	if code := h.api(tok, "POST", "users/no-such-user/unlock", nil, nil); code != http.StatusNotFound {
		t.Fatalf("unlock an unknown user: %d, want 404", code)
	}
}
