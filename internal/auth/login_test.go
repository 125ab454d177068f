package auth

import (
	"context"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/session"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/store"
)

func TestPasswordLoginOpensTheRouteAndReturnsToThePage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	c := h.browser()

	wantRedirect(t, h.nav(c, "GET", "/app/report?q=1", nil), "/_moat/login?return_to=%2Fapp%2Freport%3Fq%3D1")
	page := readBody(t, h.nav(c, "GET", "/_moat/login?return_to=%2Fapp%2Freport%3Fq%3D1", nil))
	for _, want := range []string{"Sales dashboard", `autocomplete="current-password"`, `<label for="email">`} {
		if !strings.Contains(page, want) {
			t.Errorf("login page lacks %q", want)
		}
	}
	resp := h.login(c, "Alice@Example.com", alicePassword, "/app/report?q=1")
	wantRedirect(t, resp, "/app/report?q=1")
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == session.Cookie {
			cookie = ck
		}
	}
	if cookie == nil || !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.Domain != "" {
		t.Fatalf("session cookie = %+v, want __Host- style: Secure, HttpOnly, SameSite=Lax, Path=/, no Domain", cookie)
	}
	status, id := h.identity(c, "/app/report")
	if status != 200 || id[assertion.HeaderUserEmail] != "alice@example.com" || id[assertion.HeaderUserGroups] != "staff" || id[assertion.HeaderAssertion] == "" {
		t.Fatalf("app saw %d %v", status, id)
	}
	// The store holds the hash, not the cookie value.
	if _, err := h.store.GetSession(context.Background(), cookie.Value); err == nil {
		t.Error("the store finds a session by the raw cookie value")
	}
	if _, err := h.store.GetSession(context.Background(), session.HashID(cookie.Value)); err != nil {
		t.Errorf("session not stored under its hash: %v", err)
	}
	events, _ := h.store.ListAudit(context.Background(), store.AuditFilter{Action: "login.success"})
	if len(events) != 1 || events[0].Subject != "alice@example.com" {
		t.Errorf("audit login.success = %+v", events)
	}
	for _, e := range events {
		if strings.Contains(e.Detail, alicePassword) || strings.Contains(e.Detail, cookie.Value) {
			t.Error("audit event holds a secret")
		}
	}
}

func TestLoginFailuresShowOneGenericError(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	off := h.addUser("off@example.com", alicePassword, []string{"staff"}, false)
	off.Disabled = true
	if err := h.store.UpdateUser(context.Background(), off); err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, tc := range []struct{ name, email, pw string }{
		{"unknown user", "nobody@example.com", alicePassword},
		{"wrong password", "alice@example.com", "wrong password here"},
		{"disabled user with the right password", "off@example.com", alicePassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.login(h.browser(), tc.email, tc.pw, "/app/")
			wantStatus(t, resp, http.StatusUnauthorized)
			body := readBody(t, resp)
			if !strings.Contains(body, "The email address or password is not correct") {
				t.Fatalf("no generic error in %q", body)
			}
			bodies = append(bodies, strings.ReplaceAll(body, tc.email, "EMAIL"))
		})
	}
	msg := func(b string) string {
		i := strings.Index(b, `role="alert"`)
		return b[i : i+200]
	}
	for _, b := range bodies[1:] {
		if msg(b) != msg(bodies[0]) {
			t.Errorf("error messages differ:\n%s\n%s", msg(b), msg(bodies[0]))
		}
	}
	events, _ := h.store.ListAudit(context.Background(), store.AuditFilter{Action: "login.failure"})
	if len(events) != 3 {
		t.Errorf("%d login.failure events, want 3", len(events))
	}
}

func TestLoginPageIsJapaneseForJapaneseBrowsers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	req, _ := http.NewRequest("GET", h.srv.URL+"/_moat/login", nil)
	req.Header.Set("Accept-Language", "ja,en;q=0.5")
	resp, err := h.browser().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body := readBody(t, resp); !strings.Contains(body, "メールアドレス") || !strings.Contains(body, `lang="ja"`) {
		t.Errorf("login page is not Japanese: %.300s", body)
	}
}

func TestPostsWithoutCSRFProofAreRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	c := h.browser()
	tok := h.csrf(c, "/_moat/login")
	form := func(tok string) url.Values {
		return url.Values{"csrf": {tok}, "email": {"alice@example.com"}, "password": {alicePassword}}
	}
	post := func(f url.Values, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest("POST", h.srv.URL+"/_moat/login", strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for _, tc := range []struct {
		name string
		form url.Values
		hdr  map[string]string
	}{
		{"no token", form(""), nil},
		{"a token for another cookie", form(h.csrf(h.browser(), "/_moat/login")), nil},
		{"a cross-site browser request", form(tok), map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"another origin", form(tok), map[string]string{"Origin": "https://evil.example"}},
		{"an opaque origin", form(tok), map[string]string{"Origin": "null"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantStatus(t, post(tc.form, tc.hdr), http.StatusForbidden)
			if h.sessionCookie(c) != "" {
				t.Fatal("signed in without CSRF proof")
			}
		})
	}
	t.Run("the real form from the same origin signs in", func(t *testing.T) {
		wantStatus(t, post(form(tok), map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": h.srv.URL}), http.StatusSeeOther)
	})
	t.Run("logout without a token keeps the session", func(t *testing.T) {
		wantStatus(t, post(url.Values{}, nil), http.StatusForbidden) // login again without token
		req, _ := http.NewRequest("POST", h.srv.URL+"/_moat/logout", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		wantStatus(t, resp, http.StatusForbidden)
		if status, _ := h.identity(c, "/app/"); status != 200 {
			t.Fatalf("session ended by a CSRF-less logout: %d", status)
		}
	})
}

func TestLoginRotatesTheSessionID(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	h.addUser("mallory@example.com", bobPassword, []string{"staff"}, false)
	srvURL, _ := url.Parse(h.srv.URL)

	t.Run("a planted cookie value is never promoted", func(t *testing.T) {
		c := h.browser()
		planted := strings.Repeat("A", session.IDLen)
		c.Jar.SetCookies(srvURL, []*http.Cookie{{Name: session.Cookie, Value: planted, Path: "/"}})
		wantRedirect(t, h.login(c, "alice@example.com", alicePassword, "/app/"), "/app/")
		if got := h.sessionCookie(c); got == planted || got == "" {
			t.Fatalf("session cookie after login = %q", got)
		}
		attacker := h.browser()
		attacker.Jar.SetCookies(srvURL, []*http.Cookie{{Name: session.Cookie, Value: planted, Path: "/"}})
		if status, _ := h.identity(attacker, "/app/"); status != http.StatusUnauthorized {
			t.Fatalf("planted cookie opens the app: %d", status)
		}
	})
	t.Run("an attacker's own session in the victim's browser is replaced and revoked", func(t *testing.T) {
		attacker := h.browser()
		wantRedirect(t, h.login(attacker, "mallory@example.com", bobPassword, "/app/"), "/app/")
		planted := h.sessionCookie(attacker)
		victim := h.browser()
		tok := h.csrf(victim, "/_moat/login")
		victim.Jar.SetCookies(srvURL, []*http.Cookie{{Name: session.Cookie, Value: planted, Path: "/"}})
		wantRedirect(t, h.nav(victim, "POST", "/_moat/login", url.Values{"csrf": {tok}, "email": {"alice@example.com"}, "password": {alicePassword}, "return_to": {"/app/"}}), "/app/")
		if h.sessionCookie(victim) == planted {
			t.Fatal("login kept the pre-existing session id")
		}
		if status, _ := h.identity(attacker, "/app/"); status != http.StatusUnauthorized {
			t.Fatalf("the replaced session still works: %d", status)
		}
		_, id := h.identity(victim, "/app/")
		if id[assertion.HeaderUserEmail] != "alice@example.com" {
			t.Fatalf("victim is %q", id[assertion.HeaderUserEmail])
		}
	})
}

func TestLogoutEndsTheSessionEverywhere(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	c := h.browser()
	wantRedirect(t, h.login(c, "alice@example.com", alicePassword, "/app/"), "/app/")
	stolen := h.sessionCookie(c)
	var revoked []string
	h.svc.p.OnRevoke = func(hash string) { revoked = append(revoked, hash) }

	page := readBody(t, h.nav(c, "GET", "/_moat/logout", nil))
	if !strings.Contains(page, "alice@example.com") {
		t.Error("the logout page does not say who is signed in")
	}
	tok := csrfPattern.FindStringSubmatch(page)[1]
	wantRedirect(t, h.nav(c, "POST", "/_moat/logout", url.Values{"csrf": {tok}}), "/_moat/login")
	if h.sessionCookie(c) != "" {
		t.Error("the browser kept the session cookie")
	}
	if len(revoked) != 1 || revoked[0] != session.HashID(stolen) {
		t.Errorf("OnRevoke got %v", revoked)
	}
	replay := h.browser()
	u, _ := url.Parse(h.srv.URL)
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: session.Cookie, Value: stolen, Path: "/"}})
	if status, _ := h.identity(replay, "/app/"); status != http.StatusUnauthorized {
		t.Fatalf("a copy of the cookie still works after logout: %d", status)
	}
	events, _ := h.store.ListAudit(context.Background(), store.AuditFilter{Action: "logout"})
	if len(events) != 1 {
		t.Errorf("%d logout events", len(events))
	}
}
