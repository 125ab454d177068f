package account

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/admin"
)

var tokenRE = regexp.MustCompile(`id="access-token">(moat_pat_[A-Za-z0-9_-]{43})<`)

// apiStatus calls the admin API's user list with a bearer token.
func (h *harness) apiStatus(tok string) int {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.srv.URL+admin.APIPrefix+"users", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestAUserCreatesShowsOnceAndRevokesAnAccessToken(t *testing.T) {
	h := newHarness(t)
	c := h.login(email, pw)
	tok := h.csrf(c, "/_moat/account")

	resp, body := h.do(c, "POST", "/_moat/account/tokens", url.Values{"csrf": {tok}, "name": {""}, "days": {"30"}})
	want(t, resp, body, http.StatusBadRequest, "Give the token a name")
	resp, body = h.do(c, "POST", "/_moat/account/tokens", url.Values{"csrf": {tok}, "name": {"ci"}, "days": {"7"}})
	want(t, resp, body, http.StatusBadRequest, "Give the token a name")

	resp, body = h.do(c, "POST", "/_moat/account/tokens", url.Values{"csrf": {tok}, "name": {"ci"}, "days": {"30"}})
	want(t, resp, body, http.StatusCreated, "moat_pat_")
	secret := tokenRE.FindStringSubmatch(body)[1]
	// The user is not an admin: the token is known (403), not unknown (401).
	if code := h.apiStatus(secret); code != http.StatusForbidden {
		t.Fatalf("a non-admin's token on the admin API: %d, want 403", code)
	}
	resp, body = h.do(c, "GET", "/_moat/account", nil)
	want(t, resp, body, 200, "<td>ci</td>")
	if strings.Contains(body, secret) {
		t.Fatal("the token is shown again")
	}
	list, _ := h.st.ListTokens(context.Background(), h.user.ID)
	if len(list) != 1 || list[0].ExpiresAt.Before(time.Now().Add(29*24*time.Hour)) {
		t.Fatalf("stored tokens %+v", list)
	}
	// Another user cannot revoke it.
	h.addUser("bob@example.com", nil)
	c2 := h.login("bob@example.com", pw)
	tok2 := h.csrf(c2, "/_moat/account")
	if resp, _ := h.do(c2, "POST", "/_moat/account/tokens/"+list[0].ID+"/revoke", url.Values{"csrf": {tok2}}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("another user's revoke: %d, want 404", resp.StatusCode)
	}
	resp, _ = h.do(c, "POST", "/_moat/account/tokens/"+list[0].ID+"/revoke", url.Values{"csrf": {tok}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if code := h.apiStatus(secret); code != http.StatusUnauthorized {
		t.Fatalf("a revoked token: %d, want 401", code)
	}
	// The admin's own token opens the API.
	if code := h.apiStatus(h.adminTk); code != http.StatusOK {
		t.Fatalf("an admin's token: %d", code)
	}
}

func TestCreatingATokenNeedsARecentSignIn(t *testing.T) {
	h := newHarness(t)
	c := h.login(email, pw)
	tok := h.csrf(c, "/_moat/account")
	ctx := context.Background()
	list, _ := h.st.ListSessions(ctx, h.user.ID)
	list[0].AuthTime = time.Now().Add(-time.Hour)
	if err := h.st.UpdateSession(ctx, list[0]); err != nil {
		t.Fatal(err)
	}
	h.proc.ReloadSession(list[0].IDHash) // as every change moat itself makes to a session does
	resp, _ := h.do(c, "POST", "/_moat/account/tokens", url.Values{"csrf": {tok}, "name": {"ci"}, "days": {"30"}})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/_moat/login?reauth=1") {
		t.Fatalf("stale sign-in: %d to %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if toks, _ := h.st.ListTokens(ctx, h.user.ID); len(toks) != 0 {
		t.Fatal("a token was created")
	}
}

func TestEnrollingNeedsARecentSignIn(t *testing.T) {
	h := newHarness(t)
	c := h.login(email, pw)
	ctx := context.Background()
	list, _ := h.st.ListSessions(ctx, h.user.ID)
	list[0].AuthTime = time.Now().Add(-time.Hour)
	if err := h.st.UpdateSession(ctx, list[0]); err != nil {
		t.Fatal(err)
	}
	h.proc.ReloadSession(list[0].IDHash) // as every change moat itself makes to a session does
	resp, _ := h.do(c, "GET", "/_moat/account/mfa", nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/_moat/login?reauth=1") {
		t.Fatalf("stale sign-in: %d to %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, err := h.st.GetTOTP(ctx, h.user.ID); err == nil {
		t.Fatal("an enrolment began")
	}
}
