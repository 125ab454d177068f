package login_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/auth/authtest"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/store"
)

func TestPasswordLoginOpensTheRouteAndReturnsToThePage(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	c := h.Browser()

	authtest.WantRedirect(t, h.Nav(c, "GET", "/app/report?q=1", nil), "/_moat/login?return_to=%2Fapp%2Freport%3Fq%3D1")
	page := authtest.ReadBody(t, h.Nav(c, "GET", "/_moat/login?return_to=%2Fapp%2Freport%3Fq%3D1", nil))
	for _, want := range []string{"Sales dashboard", `autocomplete="current-password"`, `<label for="email">`} {
		if !strings.Contains(page, want) {
			t.Errorf("login page lacks %q", want)
		}
	}
	resp := h.Login(c, "Alice@Example.com", authtest.AlicePassword, "/app/report?q=1")
	authtest.WantRedirect(t, resp, "/app/report?q=1")
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == session.Cookie {
			cookie = ck
		}
	}
	if cookie == nil || !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.Domain != "" {
		t.Fatalf("session cookie = %+v, want __Host- style: Secure, HttpOnly, SameSite=Lax, Path=/, no Domain", cookie)
	}
	status, id := h.Identity(c, "/app/report")
	if status != 200 || id[assertion.HeaderUserEmail] != "alice@example.com" || id[assertion.HeaderUserGroups] != "staff" || id[assertion.HeaderAssertion] == "" {
		t.Fatalf("app saw %d %v", status, id)
	}
	// The store holds the hash, not the cookie value.
	if _, err := h.Store.GetSession(context.Background(), cookie.Value); err == nil {
		t.Error("the store finds a session by the raw cookie value")
	}
	if _, err := h.Store.GetSession(context.Background(), session.HashID(cookie.Value)); err != nil {
		t.Errorf("session not stored under its hash: %v", err)
	}
	events, _ := h.Store.ListAudit(context.Background(), store.AuditFilter{Action: "login.success"})
	if len(events) != 1 || events[0].Subject != "alice@example.com" {
		t.Errorf("audit login.success = %+v", events)
	}
	for _, e := range events {
		if strings.Contains(e.Detail, authtest.AlicePassword) || strings.Contains(e.Detail, cookie.Value) {
			t.Error("audit event holds a secret")
		}
	}
}

func TestLoginFailuresShowOneGenericError(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	off := h.AddUser("off@example.com", authtest.AlicePassword, []string{"staff"}, false)
	off.Disabled = true
	if err := h.Store.UpdateUser(context.Background(), off); err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, tc := range []struct{ name, email, pw string }{
		{"unknown user", "nobody@example.com", authtest.AlicePassword},
		{"wrong password", "alice@example.com", "wrong password here"},
		{"disabled user with the right password", "off@example.com", authtest.AlicePassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.Login(h.Browser(), tc.email, tc.pw, "/app/")
			authtest.WantStatus(t, resp, http.StatusUnauthorized)
			body := authtest.ReadBody(t, resp)
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
	events, _ := h.Store.ListAudit(context.Background(), store.AuditFilter{Action: "login.failure"})
	if len(events) != 3 {
		t.Errorf("%d login.failure events, want 3", len(events))
	}
}

func TestLoginPageIsJapaneseForJapaneseBrowsers(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	req, _ := http.NewRequest("GET", h.Srv.URL+"/_moat/login", nil)
	req.Header.Set("Accept-Language", "ja,en;q=0.5")
	resp, err := h.Browser().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body := authtest.ReadBody(t, resp); !strings.Contains(body, "メールアドレス") || !strings.Contains(body, `lang="ja"`) {
		t.Errorf("login page is not Japanese: %.300s", body)
	}
}

func TestPostsWithoutCSRFProofAreRefused(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	c := h.Browser()
	tok := h.CSRF(c, "/_moat/login")
	form := func(tok string) url.Values {
		return url.Values{"csrf": {tok}, "email": {"alice@example.com"}, "password": {authtest.AlicePassword}}
	}
	post := func(f url.Values, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest("POST", h.Srv.URL+"/_moat/login", strings.NewReader(f.Encode()))
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
		{"a token for another cookie", form(h.CSRF(h.Browser(), "/_moat/login")), nil},
		{"a cross-site browser request", form(tok), map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"another origin", form(tok), map[string]string{"Origin": "https://evil.example"}},
		{"an opaque origin", form(tok), map[string]string{"Origin": "null"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			authtest.WantStatus(t, post(tc.form, tc.hdr), http.StatusForbidden)
			if h.SessionCookie(c) != "" {
				t.Fatal("signed in without CSRF proof")
			}
		})
	}
	t.Run("the real form from the same origin signs in", func(t *testing.T) {
		authtest.WantStatus(t, post(form(tok), map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": h.Srv.URL}), http.StatusSeeOther)
	})
	t.Run("logout without a token keeps the session", func(t *testing.T) {
		authtest.WantStatus(t, post(url.Values{}, nil), http.StatusForbidden) // login again without token
		req, _ := http.NewRequest("POST", h.Srv.URL+"/_moat/logout", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		authtest.WantStatus(t, resp, http.StatusForbidden)
		if status, _ := h.Identity(c, "/app/"); status != 200 {
			t.Fatalf("session ended by a CSRF-less logout: %d", status)
		}
	})
}

func TestLoginRotatesTheSessionID(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	h.AddUser("mallory@example.com", authtest.BobPassword, []string{"staff"}, false)
	srvURL, _ := url.Parse(h.Srv.URL)

	t.Run("a planted cookie value is never promoted", func(t *testing.T) {
		c := h.Browser()
		planted := strings.Repeat("A", session.IDLen)
		c.Jar.SetCookies(srvURL, []*http.Cookie{{Name: session.Cookie, Value: planted, Path: "/"}})
		authtest.WantRedirect(t, h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/"), "/app/")
		if got := h.SessionCookie(c); got == planted || got == "" {
			t.Fatalf("session cookie after login = %q", got)
		}
		attacker := h.Browser()
		attacker.Jar.SetCookies(srvURL, []*http.Cookie{{Name: session.Cookie, Value: planted, Path: "/"}})
		if status, _ := h.Identity(attacker, "/app/"); status != http.StatusUnauthorized {
			t.Fatalf("planted cookie opens the app: %d", status)
		}
	})
	t.Run("an attacker's own session in the victim's browser is replaced and revoked", func(t *testing.T) {
		attacker := h.Browser()
		authtest.WantRedirect(t, h.Login(attacker, "mallory@example.com", authtest.BobPassword, "/app/"), "/app/")
		planted := h.SessionCookie(attacker)
		victim := h.Browser()
		tok := h.CSRF(victim, "/_moat/login")
		victim.Jar.SetCookies(srvURL, []*http.Cookie{{Name: session.Cookie, Value: planted, Path: "/"}})
		authtest.WantRedirect(t, h.Nav(victim, "POST", "/_moat/login", url.Values{"csrf": {tok}, "email": {"alice@example.com"}, "password": {authtest.AlicePassword}, "return_to": {"/app/"}}), "/app/")
		if h.SessionCookie(victim) == planted {
			t.Fatal("login kept the pre-existing session id")
		}
		if status, _ := h.Identity(attacker, "/app/"); status != http.StatusUnauthorized {
			t.Fatalf("the replaced session still works: %d", status)
		}
		_, id := h.Identity(victim, "/app/")
		if id[assertion.HeaderUserEmail] != "alice@example.com" {
			t.Fatalf("victim is %q", id[assertion.HeaderUserEmail])
		}
	})
}

func TestLogoutEndsTheSessionEverywhere(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	c := h.Browser()
	authtest.WantRedirect(t, h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/"), "/app/")
	stolen := h.SessionCookie(c)
	var revoked []string
	h.Proc.OnRevoke = func(hash string) { revoked = append(revoked, hash) }

	page := authtest.ReadBody(t, h.Nav(c, "GET", "/_moat/logout", nil))
	if !strings.Contains(page, "alice@example.com") {
		t.Error("the logout page does not say who is signed in")
	}
	tok := authtest.CSRFPattern.FindStringSubmatch(page)[1]
	authtest.WantRedirect(t, h.Nav(c, "POST", "/_moat/logout", url.Values{"csrf": {tok}}), "/_moat/login")
	if h.SessionCookie(c) != "" {
		t.Error("the browser kept the session cookie")
	}
	if len(revoked) != 1 || revoked[0] != session.HashID(stolen) {
		t.Errorf("OnRevoke got %v", revoked)
	}
	replay := h.Browser()
	u, _ := url.Parse(h.Srv.URL)
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: session.Cookie, Value: stolen, Path: "/"}})
	if status, _ := h.Identity(replay, "/app/"); status != http.StatusUnauthorized {
		t.Fatalf("a copy of the cookie still works after logout: %d", status)
	}
	events, _ := h.Store.ListAudit(context.Background(), store.AuditFilter{Action: "logout"})
	if len(events) != 1 {
		t.Errorf("%d logout events", len(events))
	}
}

func TestReturnToNeverLeavesTheHost(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	for _, attack := range []string{
		"https://evil.example/", "//evil.example", "/\\evil.example", "\\\\evil.example",
		"/%2F/evil.example", "/%2f%2fevil.example", "/%5Cevil.example", "%2F%2Fevil.example",
		"/%252F%252Fevil.example", "/\t/evil.example", "/%09/evil.example", "/\n/evil.example",
		"javascript:alert(1)", "evil.example", "", "/_moat/login?return_to=//evil", "http:/evil.example",
		"/" + strings.Repeat("a", 2048),
	} {
		t.Run(url.QueryEscape(attack), func(t *testing.T) {
			c := h.Browser()
			authtest.WantRedirect(t, h.Login(c, "alice@example.com", authtest.AlicePassword, attack), "/")
		})
	}
	for _, ok := range []string{"/app/", "/app/report?q=a%20b&x=1", "/app/%E3%83%AC%E3%83%9D%E3%83%BC%E3%83%88"} {
		if got := access.SafeReturnTo(ok); got != ok {
			t.Errorf("SafeReturnTo(%q) = %q, want it kept", ok, got)
		}
	}
}

func TestReauthShowsTheLoginFormToASignedInUser(t *testing.T) {
	h := authtest.New(t, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	c := h.Browser()
	h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/")
	resp := h.Nav(c, "GET", "/_moat/login?return_to=/app/", nil)
	authtest.WantStatus(t, resp, http.StatusSeeOther)
	resp = h.Nav(c, "GET", "/_moat/login?reauth=1&return_to=/app/", nil)
	authtest.WantStatus(t, resp, http.StatusOK)
}
