package auth

import (
	"context"
	"encoding/base64"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/store"
)

// enrolTOTP gives u a confirmed TOTP and returns its secret and recovery
// codes.
func (h *harness) enrolTOTP(u *store.User) (string, []string) {
	h.t.Helper()
	ctx := context.Background()
	e, err := h.svc.p.MFA.Begin(ctx, u.ID, u.Email)
	if err != nil {
		h.t.Fatal(err)
	}
	codes, err := h.svc.p.MFA.Confirm(ctx, u.ID, u.Email, totpCode(h.t, e.Secret, time.Now().Add(-30*time.Second)), throttle.Source{})
	if err != nil {
		h.t.Fatal(err)
	}
	return e.Secret, codes
}

func totpCode(t testing.TB, secret string, at time.Time) string {
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var mfaCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// secondStep posts code on the /_moat/mfa page.
func (h *harness) secondStep(c *http.Client, code, returnTo string) *http.Response {
	h.t.Helper()
	resp := h.nav(c, "GET", MFAPath+"?return_to="+url.QueryEscape(returnTo), nil)
	body := readBody(h.t, resp)
	m := mfaCSRF.FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		h.t.Fatalf("GET %s: %d, no form", MFAPath, resp.StatusCode)
	}
	return h.nav(c, "POST", MFAPath, url.Values{"csrf": {m[1]}, "code": {code}, "return_to": {returnTo}})
}

func TestASecondFactorIsAskedAfterThePasswordAndEachCodeWorksOnce(t *testing.T) {
	h := newHarness(t, nil)
	u := h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	secret, codes := h.enrolTOTP(u)

	c := h.browser()
	resp := h.login(c, "alice@example.com", alicePassword, "/app/")
	wantRedirect(t, resp, MFAPath+"?return_to="+url.QueryEscape("/app/"))
	if h.sessionCookie(c) != "" {
		t.Fatal("a session started before the second factor")
	}
	if code, _ := h.identity(c, "/app/"); code != http.StatusUnauthorized {
		t.Fatalf("the app before the second factor: %d, want 401", code)
	}
	wantStatus(t, h.secondStep(c, "000000", "/app/"), http.StatusUnauthorized)
	good := totpCode(t, secret, time.Now())
	wantRedirect(t, h.secondStep(c, good, "/app/"), "/app/")
	if code, got := h.identity(c, "/app/"); code != 200 || got[assertion.HeaderUserEmail] != "alice@example.com" {
		t.Fatalf("the app after the second factor: %d %v", code, got)
	}
	list, _ := h.store.ListSessions(context.Background(), u.ID)
	if len(list) != 1 || !list[0].MFA {
		t.Fatalf("session not marked: %+v", list)
	}

	// The same code again, from another browser: refused.
	c2 := h.browser()
	h.login(c2, "alice@example.com", alicePassword, "/app/")
	wantStatus(t, h.secondStep(c2, good, "/app/"), http.StatusUnauthorized)
	// A recovery code works once.
	wantRedirect(t, h.secondStep(c2, codes[0], "/app/"), "/app/")
	c3 := h.browser()
	h.login(c3, "alice@example.com", alicePassword, "/app/")
	wantStatus(t, h.secondStep(c3, codes[0], "/app/"), http.StatusUnauthorized)
}

func TestThePendingSignInOpensNothingElseAndCannotBeForged(t *testing.T) {
	h := newHarness(t, nil)
	u := h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	h.enrolTOTP(u)
	c := h.browser()
	h.login(c, "alice@example.com", alicePassword, "/app/")
	srv, _ := url.Parse(h.srv.URL)
	var pending string
	for _, ck := range c.Jar.Cookies(srv) {
		if ck.Name == PendingCookie {
			pending = ck.Value
		}
	}
	if pending == "" {
		t.Fatal("no pending cookie")
	}
	// Forged for another user: back to the login page.
	other := h.addUser("bob@other.org", bobPassword, nil, false)
	parts := strings.Split(pending, ".")
	forged := h.browser()
	forged.Jar.SetCookies(srv, []*http.Cookie{{Name: PendingCookie, Value: strings.Join([]string{base64.RawURLEncoding.EncodeToString([]byte(other.ID)), parts[1], parts[2]}, "."), Path: "/", Secure: true}})
	resp := h.nav(forged, "GET", MFAPath, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/_moat/login") {
		t.Fatalf("forged pending cookie: %d to %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A password reset voids the pending sign-in.
	fresh, _ := h.store.GetUser(context.Background(), u.ID)
	if _, err := h.store.SetPasswordHash(context.Background(), u.ID, fresh.PasswordHash, "x", true); err != nil {
		t.Fatal(err)
	}
	resp = h.nav(c, "GET", MFAPath, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pending sign-in after a password reset: %d, want 303", resp.StatusCode)
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
			h := newHarness(t, tc.tweak)
			h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
			c := h.browser()
			wantRedirect(t, h.login(c, "alice@example.com", alicePassword, "/app/"), "/app/")
			resp := h.nav(c, "GET", "/app/x", nil)
			wantRedirect(t, resp, access.EnrolPath+"?return_to="+url.QueryEscape("/app/x"))
			if code, _ := h.identity(c, "/app/"); code != http.StatusForbidden {
				t.Fatalf("a script's call: %d, want 403", code)
			}
			// Once the session is marked (the account page does it), the route opens.
			hash := session.HashID(h.sessionCookie(c))
			s, _ := h.store.GetSession(context.Background(), hash)
			s.MFA = true
			if err := h.store.UpdateSession(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			h.svc.p.ReloadSession(hash)
			if code, _ := h.identity(c, "/app/"); code != 200 {
				t.Fatalf("after the second factor: %d", code)
			}
		})
	}
}

func TestReauthShowsTheLoginFormToASignedInUser(t *testing.T) {
	h := newHarness(t, nil)
	h.addUser("alice@example.com", alicePassword, []string{"staff"}, false)
	c := h.browser()
	h.login(c, "alice@example.com", alicePassword, "/app/")
	resp := h.nav(c, "GET", "/_moat/login?return_to=/app/", nil)
	wantStatus(t, resp, http.StatusSeeOther)
	resp = h.nav(c, "GET", "/_moat/login?reauth=1&return_to=/app/", nil)
	wantStatus(t, resp, http.StatusOK)
}
