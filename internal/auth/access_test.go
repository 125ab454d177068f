package auth

import (
	"context"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/session"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/config"
)

func TestScriptsGet401AndPagesARedirect(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	c := h.browser()
	t.Run("a page navigation is sent to the login page", func(t *testing.T) {
		wantRedirect(t, h.nav(c, "GET", "/app/", nil), "/_moat/login?return_to=%2Fapp%2F")
	})
	t.Run("a fetch gets 401 JSON, not a redirect", func(t *testing.T) {
		resp := h.fetch(c, "/app/data.json")
		wantStatus(t, resp, http.StatusUnauthorized)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		if resp.Header.Get("Location") != "" {
			t.Error("401 carries a Location")
		}
	})
	t.Run("a public route needs no session and gets no identity", func(t *testing.T) {
		status, id := h.identity(c, "/public/x")
		if status != 200 || id[assertion.HeaderUserEmail] != "" || id[assertion.HeaderAssertion] != "" {
			t.Fatalf("public route: %d %v", status, id)
		}
	})
}

func TestSignedInButNotAllowedSeesWhoTheyAre(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.addUser("carol@other.org", alicePassword, []string{"guests"}, false)
	c := h.browser()
	wantRedirect(t, h.login(c, "carol@other.org", alicePassword, "/app/"), "/app/")
	resp := h.nav(c, "GET", "/app/", nil)
	wantStatus(t, resp, http.StatusForbidden)
	body := readBody(t, resp)
	for _, want := range []string{"carol@other.org", `href="/_moat/logout"`} {
		if !strings.Contains(body, want) {
			t.Errorf("403 page lacks %q", want)
		}
	}
	if status, _ := h.identity(c, "/app/"); status != http.StatusForbidden {
		t.Errorf("fetch: %d, want 403", status)
	}
}

func TestAllowListMembersOverHTTP(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	h.addUser("bob@other.org", bobPassword, nil, false)
	h.addUser("carol@sub.example.com", alicePassword, []string{"guests"}, false)
	signedIn := map[string]*http.Client{}
	for email, pw := range map[string]string{"alice@example.com": alicePassword, "bob@other.org": bobPassword, "carol@sub.example.com": alicePassword} {
		c := h.browser()
		wantRedirect(t, h.login(c, email, pw, "/"), "/")
		signedIn[email] = c
	}
	for _, tc := range []struct {
		name, email, path string
		want              int
	}{
		{"group:staff admits a staff member", "alice@example.com", "/app/", 200},
		{"user:bob@other.org admits bob", "bob@other.org", "/app/", 200},
		{"the app refuses a user in neither", "carol@sub.example.com", "/app/", 403},
		{"domain:example.com admits alice", "alice@example.com", "/corp/", 200},
		{"domain:example.com refuses a subdomain", "carol@sub.example.com", "/corp/", 403},
		{"domain:example.com refuses another domain", "bob@other.org", "/corp/", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, _ := h.identity(signedIn[tc.email], tc.path); status != tc.want {
				t.Fatalf("status %d, want %d", status, tc.want)
			}
		})
	}
}

func TestReturnToNeverLeavesTheHost(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	for _, attack := range []string{
		"https://evil.example/", "//evil.example", "/\\evil.example", "\\\\evil.example",
		"/%2F/evil.example", "/%2f%2fevil.example", "/%5Cevil.example", "%2F%2Fevil.example",
		"/%252F%252Fevil.example", "/\t/evil.example", "/%09/evil.example", "/\n/evil.example",
		"javascript:alert(1)", "evil.example", "", "/_moat/login?return_to=//evil", "http:/evil.example",
		"/" + strings.Repeat("a", 2048),
	} {
		t.Run(url.QueryEscape(attack), func(t *testing.T) {
			c := h.browser()
			wantRedirect(t, h.login(c, "alice@example.com", alicePassword, attack), "/")
		})
	}
	for _, ok := range []string{"/app/", "/app/report?q=a%20b&x=1", "/app/%E3%83%AC%E3%83%9D%E3%83%BC%E3%83%88"} {
		if got := access.SafeReturnTo(ok); got != ok {
			t.Errorf("SafeReturnTo(%q) = %q, want it kept", ok, got)
		}
	}
}

func TestSessionsExpire(t *testing.T) {
	t.Parallel()
	t.Run("after idle_timeout without requests", func(t *testing.T) {
		h := newHarness(t, func(c *config.Config) {
			c.Identity.Session = config.Session{MaxAge: config.Duration(time.Hour), IdleTimeout: config.Duration(700 * time.Millisecond)}
		})
		h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
		c := h.browser()
		wantRedirect(t, h.login(c, "alice@example.com", alicePassword, "/app/"), "/app/")
		for range 3 { // activity keeps it alive
			time.Sleep(300 * time.Millisecond)
			if status, _ := h.identity(c, "/app/"); status != 200 {
				t.Fatalf("active session refused: %d", status)
			}
		}
		time.Sleep(900 * time.Millisecond)
		if status, _ := h.identity(c, "/app/"); status != http.StatusUnauthorized {
			t.Fatalf("idle session still works: %d", status)
		}
	})
	t.Run("after max_age even when active", func(t *testing.T) {
		h := newHarness(t, func(c *config.Config) {
			c.Identity.Session = config.Session{MaxAge: config.Duration(2 * time.Second), IdleTimeout: config.Duration(time.Second)}
		})
		h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
		c := h.browser()
		wantRedirect(t, h.login(c, "alice@example.com", alicePassword, "/app/"), "/app/")
		start := time.Now()
		deadline := start.Add(1500 * time.Millisecond)
		for time.Now().Before(deadline) {
			if status, _ := h.identity(c, "/app/"); status != 200 {
				t.Fatalf("session refused before max_age: %d", status)
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(time.Until(start.Add(2100 * time.Millisecond)))
		if status, _ := h.identity(c, "/app/"); status != http.StatusUnauthorized {
			t.Fatalf("session past max_age still works: %d", status)
		}
	})
}

func TestRevocationElsewhereEndsTheSessionWithinSeconds(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	u := h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	c := h.browser()
	wantRedirect(t, h.login(c, "alice@example.com", alicePassword, "/app/"), "/app/")
	if status, _ := h.identity(c, "/app/"); status != 200 {
		t.Fatal("not signed in")
	}
	var mu sync.Mutex
	revoked := make(chan string, 4)
	h.svc.p.OnRevoke = func(hash string) { mu.Lock(); defer mu.Unlock(); revoked <- hash }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.svc.p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// As `moat users revoke-sessions` does, from another process.
	start := time.Now()
	hashes, err := h.store.RevokeUserSessions(context.Background(), u.ID, time.Now())
	if err != nil || len(hashes) != 1 {
		t.Fatalf("RevokeUserSessions = %v, %v", hashes, err)
	}
	select {
	case got := <-revoked:
		if got != hashes[0] || got != session.HashID(h.sessionCookie(c)) {
			t.Fatalf("OnRevoke(%q), want the session's hash", got)
		}
		t.Logf("OnRevoke after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("OnRevoke not called within 10 s")
	}
	if status, _ := h.identity(c, "/app/"); status != http.StatusUnauthorized {
		t.Fatalf("revoked session still works: %d", status)
	}
}

func TestDisabledUserIsCutOffAtTheNextCheck(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	u := h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	c := h.browser()
	wantRedirect(t, h.login(c, "alice@example.com", alicePassword, "/app/"), "/app/")
	u, _ = h.store.GetUser(context.Background(), u.ID)
	u.Disabled = true
	if err := h.store.UpdateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	time.Sleep(session.VerifyEvery + 100*time.Millisecond)
	if status, _ := h.identity(c, "/app/"); status != http.StatusUnauthorized {
		t.Fatalf("disabled user still gets in: %d", status)
	}
}

func TestForcedPasswordChangeComesFirst(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.addUser("new@example.com", "one-time-pass-123", []string{"staff"}, true)
	c := h.browser()
	wantRedirect(t, h.login(c, "new@example.com", "one-time-pass-123", "/app/x"), "/_moat/password?return_to=%2Fapp%2Fx")
	wantRedirect(t, h.nav(c, "GET", "/app/x", nil), "/_moat/password?return_to=%2Fapp%2Fx")
	if status, _ := h.identity(c, "/app/x"); status != http.StatusForbidden {
		t.Fatalf("fetch before the change: %d, want 403", status)
	}
	page := readBody(t, h.nav(c, "GET", "/_moat/password?return_to=%2Fapp%2Fx", nil))
	if !strings.Contains(page, "You must choose a new password") {
		t.Error("the page does not say the change is required")
	}
	tok := csrfPattern.FindStringSubmatch(page)[1]
	change := func(current, next, confirm string) *http.Response {
		return h.nav(c, "POST", "/_moat/password", url.Values{"csrf": {tok}, "current": {current}, "new": {next}, "confirm": {confirm}, "return_to": {"/app/x"}})
	}
	for _, tc := range []struct{ name, current, next, confirm, msg string }{
		{"a wrong current password", "nope-nope-nope", "a brand new passphrase", "a brand new passphrase", "current password is not correct"},
		{"a short password", "one-time-pass-123", "short", "short", "too short: use at least 12"},
		{"a common password", "one-time-pass-123", "password1234", "password1234", "commonly used"},
		{"two different new passwords", "one-time-pass-123", "a brand new passphrase", "a brand new passphrase!", "differ"},
		{"the same password again", "one-time-pass-123", "one-time-pass-123", "one-time-pass-123", "different from the current"},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			resp := change(tc.current, tc.next, tc.confirm)
			wantStatus(t, resp, http.StatusBadRequest)
			if body := readBody(t, resp); !strings.Contains(body, tc.msg) {
				t.Errorf("no %q in the page", tc.msg)
			}
		})
	}
	other := h.browser() // the same user signed in elsewhere
	wantRedirect(t, h.login(other, "new@example.com", "one-time-pass-123", "/"), "/_moat/password?return_to=%2F")
	before := h.sessionCookie(c)
	wantRedirect(t, change("one-time-pass-123", "a brand new passphrase", "a brand new passphrase"), "/app/x")
	wantRedirect(t, h.nav(other, "GET", "/app/x", nil), "/_moat/login?return_to=%2Fapp%2Fx")
	if h.sessionCookie(c) == before {
		t.Error("the session id was not renewed after the change")
	}
	if status, _ := h.identity(c, "/app/x"); status != 200 {
		t.Fatalf("after the change: %d", status)
	}
	wantStatus(t, h.login(h.browser(), "new@example.com", "one-time-pass-123", "/"), http.StatusUnauthorized)
	wantRedirect(t, h.login(h.browser(), "new@example.com", "a brand new passphrase", "/"), "/")
}
