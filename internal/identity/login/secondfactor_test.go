package login_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/authtest"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/login"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/store"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// enrolTOTP gives u a confirmed TOTP and returns its secret and recovery
// codes.
func enrolTOTP(h *authtest.Harness, u *store.User) (string, []string) {
	h.T.Helper()
	ctx := context.Background()
	e, err := h.Proc.MFA.Begin(ctx, u.ID, u.Email)
	if err != nil {
		h.T.Fatal(err)
	}
	codes, err := h.Proc.MFA.Confirm(ctx, u.ID, u.Email, totpCode(h.T, e.Secret, time.Now().Add(-30*time.Second)), throttle.Source{})
	if err != nil {
		h.T.Fatal(err)
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

// secondStep posts code on the /_moat/mfa page.
func secondStep(h *authtest.Harness, c *http.Client, code, returnTo string) *http.Response {
	h.T.Helper()
	resp := h.Nav(c, "GET", login.MFAPath+"?return_to="+url.QueryEscape(returnTo), nil)
	body := authtest.ReadBody(h.T, resp)
	m := authtest.CSRFPattern.FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		h.T.Fatalf("GET %s: %d, no form", login.MFAPath, resp.StatusCode)
	}
	return h.Nav(c, "POST", login.MFAPath, url.Values{"csrf": {m[1]}, "code": {code}, "return_to": {returnTo}})
}

func TestASecondFactorIsAskedAfterThePasswordAndEachCodeWorksOnce(t *testing.T) {
	h := authtest.New(t, nil)
	u := h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	secret, codes := enrolTOTP(h, u)

	c := h.Browser()
	resp := h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/")
	authtest.WantRedirect(t, resp, login.MFAPath+"?return_to="+url.QueryEscape("/app/"))
	if h.SessionCookie(c) != "" {
		t.Fatal("a session started before the second factor")
	}
	if code, _ := h.Identity(c, "/app/"); code != http.StatusUnauthorized {
		t.Fatalf("the app before the second factor: %d, want 401", code)
	}
	authtest.WantStatus(t, secondStep(h, c, "000000", "/app/"), http.StatusUnauthorized)
	good := totpCode(t, secret, time.Now())
	authtest.WantRedirect(t, secondStep(h, c, good, "/app/"), "/app/")
	if code, got := h.Identity(c, "/app/"); code != 200 || got[assertion.HeaderUserEmail] != "alice@example.com" {
		t.Fatalf("the app after the second factor: %d %v", code, got)
	}
	list, _ := h.Store.ListSessions(context.Background(), u.ID)
	if len(list) != 1 || !list[0].MFA {
		t.Fatalf("session not marked: %+v", list)
	}

	// The same code again, from another browser: refused.
	c2 := h.Browser()
	h.Login(c2, "alice@example.com", authtest.AlicePassword, "/app/")
	authtest.WantStatus(t, secondStep(h, c2, good, "/app/"), http.StatusUnauthorized)
	// A recovery code works once.
	authtest.WantRedirect(t, secondStep(h, c2, codes[0], "/app/"), "/app/")
	c3 := h.Browser()
	h.Login(c3, "alice@example.com", authtest.AlicePassword, "/app/")
	authtest.WantStatus(t, secondStep(h, c3, codes[0], "/app/"), http.StatusUnauthorized)
}

func TestThePendingSignInOpensNothingElseAndCannotBeForged(t *testing.T) {
	h := authtest.New(t, nil)
	u := h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	enrolTOTP(h, u)
	c := h.Browser()
	h.Login(c, "alice@example.com", authtest.AlicePassword, "/app/")
	srv, _ := url.Parse(h.Srv.URL)
	var pending string
	for _, ck := range c.Jar.Cookies(srv) {
		if ck.Name == login.PendingCookie {
			pending = ck.Value
		}
	}
	if pending == "" {
		t.Fatal("no pending cookie")
	}
	// Forged for another user: back to the login page.
	other := h.AddUser("bob@other.org", authtest.BobPassword, nil, false)
	parts := strings.Split(pending, ".")
	forged := h.Browser()
	forged.Jar.SetCookies(srv, []*http.Cookie{{Name: login.PendingCookie, Value: strings.Join([]string{base64.RawURLEncoding.EncodeToString([]byte(other.ID)), parts[1], parts[2]}, "."), Path: "/", Secure: true}})
	resp := h.Nav(forged, "GET", login.MFAPath, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/_moat/login") {
		t.Fatalf("forged pending cookie: %d to %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A password reset voids the pending sign-in.
	fresh, _ := h.Store.GetUser(context.Background(), u.ID)
	if _, err := h.Store.SetPasswordHash(context.Background(), u.ID, fresh.PasswordHash, "x", true); err != nil {
		t.Fatal(err)
	}
	resp = h.Nav(c, "GET", login.MFAPath, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pending sign-in after a password reset: %d, want 303", resp.StatusCode)
	}
}
