package auth_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/authtest"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/session"
)

func TestScriptsGet401AndPagesARedirect(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	c := h.Browser()
	t.Run("a page navigation is sent to the login page", func(t *testing.T) {
		authtest.WantRedirect(t, h.Nav(c, "GET", "/app/", nil), "/_moat/login?return_to=%2Fapp%2F")
	})
	t.Run("a fetch gets 401 JSON, not a redirect", func(t *testing.T) {
		resp := h.Fetch(c, "/app/data.json")
		authtest.WantStatus(t, resp, http.StatusUnauthorized)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		if resp.Header.Get("Location") != "" {
			t.Error("401 carries a Location")
		}
	})
	t.Run("a public route needs no session and gets no identity", func(t *testing.T) {
		status, id := h.Identity(c, "/public/x")
		if status != 200 || id[assertion.HeaderUserEmail] != "" || id[assertion.HeaderAssertion] != "" {
			t.Fatalf("public route: %d %v", status, id)
		}
	})
}

func TestSignedInButNotAllowedSeesWhoTheyAre(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	h.AddUser("carol@other.org", authtest.AlicePassword, []string{"guests"}, false)
	c := h.Browser()
	authtest.WantRedirect(t, h.Login(c, "carol@other.org", authtest.AlicePassword, "/app/"), "/app/")
	resp := h.Nav(c, "GET", "/app/", nil)
	authtest.WantStatus(t, resp, http.StatusForbidden)
	body := authtest.ReadBody(t, resp)
	for _, want := range []string{"carol@other.org", `href="/_moat/logout"`} {
		if !strings.Contains(body, want) {
			t.Errorf("403 page lacks %q", want)
		}
	}
	if status, _ := h.Identity(c, "/app/"); status != http.StatusForbidden {
		t.Errorf("fetch: %d, want 403", status)
	}
}

func TestAllowListMembersOverHTTP(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	h.AddUser("bob@other.org", authtest.BobPassword, nil, false)
	h.AddUser("carol@sub.example.com", authtest.AlicePassword, []string{"guests"}, false)
	signedIn := map[string]*http.Client{}
	for email, pw := range map[string]string{"alice@example.com": authtest.AlicePassword, "bob@other.org": authtest.BobPassword, "carol@sub.example.com": authtest.AlicePassword} {
		c := h.Browser()
		authtest.WantRedirect(t, h.Login(c, email, pw, "/"), "/")
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
			if status, _ := h.Identity(signedIn[tc.email], tc.path); status != tc.want {
				t.Fatalf("status %d, want %d", status, tc.want)
			}
		})
	}
}

func TestSessionsExpire(t *testing.T) {
	t.Parallel()
	t.Run("after idle_timeout without requests", func(t *testing.T) {
		h := authtest.New(t, func(c *config.Config) {
			c.Identity.Session = config.Session{MaxAge: config.Duration(time.Hour), IdleTimeout: config.Duration(700 * time.Millisecond)}
		})
		h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
		c := h.Browser()
		authtest.WantRedirect(t, h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/"), "/app/")
		for range 3 { // activity keeps it alive
			time.Sleep(300 * time.Millisecond)
			if status, _ := h.Identity(c, "/app/"); status != 200 {
				t.Fatalf("active session refused: %d", status)
			}
		}
		time.Sleep(900 * time.Millisecond)
		if status, _ := h.Identity(c, "/app/"); status != http.StatusUnauthorized {
			t.Fatalf("idle session still works: %d", status)
		}
	})
	t.Run("after max_age even when active", func(t *testing.T) {
		h := authtest.New(t, func(c *config.Config) {
			c.Identity.Session = config.Session{MaxAge: config.Duration(2 * time.Second), IdleTimeout: config.Duration(time.Second)}
		})
		h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
		c := h.Browser()
		authtest.WantRedirect(t, h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/"), "/app/")
		start := time.Now()
		deadline := start.Add(1500 * time.Millisecond)
		for time.Now().Before(deadline) {
			if status, _ := h.Identity(c, "/app/"); status != 200 {
				t.Fatalf("session refused before max_age: %d", status)
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(time.Until(start.Add(2100 * time.Millisecond)))
		if status, _ := h.Identity(c, "/app/"); status != http.StatusUnauthorized {
			t.Fatalf("session past max_age still works: %d", status)
		}
	})
}

func TestRevocationElsewhereEndsTheSessionWithinSeconds(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	u := h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	c := h.Browser()
	authtest.WantRedirect(t, h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/"), "/app/")
	if status, _ := h.Identity(c, "/app/"); status != 200 {
		t.Fatal("not signed in")
	}
	var mu sync.Mutex
	revoked := make(chan string, 4)
	h.Proc.OnRevoke = func(hash string) { mu.Lock(); defer mu.Unlock(); revoked <- hash }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Proc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// As `moat users revoke-sessions` does, from another process.
	start := time.Now()
	hashes, err := h.Store.RevokeUserSessions(context.Background(), u.ID, time.Now())
	if err != nil || len(hashes) != 1 {
		t.Fatalf("RevokeUserSessions = %v, %v", hashes, err)
	}
	select {
	case got := <-revoked:
		if got != hashes[0] || got != session.HashID(h.SessionCookie(c)) {
			t.Fatalf("OnRevoke(%q), want the session's hash", got)
		}
		t.Logf("OnRevoke after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("OnRevoke not called within 10 s")
	}
	if status, _ := h.Identity(c, "/app/"); status != http.StatusUnauthorized {
		t.Fatalf("revoked session still works: %d", status)
	}
}

func TestDisabledUserIsCutOffAtTheNextCheck(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	u := h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	c := h.Browser()
	authtest.WantRedirect(t, h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/"), "/app/")
	u, _ = h.Store.GetUser(context.Background(), u.ID)
	u.Disabled = true
	if err := h.Store.UpdateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	time.Sleep(session.VerifyEvery + 100*time.Millisecond)
	if status, _ := h.Identity(c, "/app/"); status != http.StatusUnauthorized {
		t.Fatalf("disabled user still gets in: %d", status)
	}
}

func TestARouteRequiringTwoFactorSendsAPasswordUserToEnrol(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*config.Config)
	}{
		{"routes[].mfa: required", func(c *config.Config) { c.Routes[0].MFA = "required" }},
		{"identity.passwords.mfa: required", func(c *config.Config) { c.Identity.Passwords.MFA = "required" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := authtest.New(t, tc.tweak)
			h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
			c := h.Browser()
			authtest.WantRedirect(t, h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/"), "/app/")
			resp := h.Nav(c, "GET", "/app/x", nil)
			authtest.WantRedirect(t, resp, access.EnrolPath+"?return_to="+url.QueryEscape("/app/x"))
			if code, _ := h.Identity(c, "/app/"); code != http.StatusForbidden {
				t.Fatalf("a script's call: %d, want 403", code)
			}
			// Once the session is marked (the account page does it), the route opens.
			hash := session.HashID(h.SessionCookie(c))
			s, _ := h.Store.GetSession(context.Background(), hash)
			s.MFA = true
			if err := h.Store.UpdateSession(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			h.Proc.ReloadSession(hash)
			if code, _ := h.Identity(c, "/app/"); code != 200 {
				t.Fatalf("after the second factor: %d", code)
			}
		})
	}
}
