package login_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/auth/authtest"
)

func TestForcedPasswordChangeComesFirst(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	h.AddUser("new@example.com", "one-time-pass-123", []string{"staff"}, true)
	c := h.Browser()
	authtest.WantRedirect(t, h.Login(c, "new@example.com", "one-time-pass-123", "/app/x"), "/_moat/password?return_to=%2Fapp%2Fx")
	authtest.WantRedirect(t, h.Nav(c, "GET", "/app/x", nil), "/_moat/password?return_to=%2Fapp%2Fx")
	if status, _ := h.Identity(c, "/app/x"); status != http.StatusForbidden {
		t.Fatalf("fetch before the change: %d, want 403", status)
	}
	page := authtest.ReadBody(t, h.Nav(c, "GET", "/_moat/password?return_to=%2Fapp%2Fx", nil))
	if !strings.Contains(page, "You must choose a new password") {
		t.Error("the page does not say the change is required")
	}
	tok := authtest.CSRFPattern.FindStringSubmatch(page)[1]
	change := func(current, next, confirm string) *http.Response {
		return h.Nav(c, "POST", "/_moat/password", url.Values{"csrf": {tok}, "current": {current}, "new": {next}, "confirm": {confirm}, "return_to": {"/app/x"}})
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
			authtest.WantStatus(t, resp, http.StatusBadRequest)
			if body := authtest.ReadBody(t, resp); !strings.Contains(body, tc.msg) {
				t.Errorf("no %q in the page", tc.msg)
			}
		})
	}
	other := h.Browser() // the same user signed in elsewhere
	authtest.WantRedirect(t, h.Login(other, "new@example.com", "one-time-pass-123", "/"), "/_moat/password?return_to=%2F")
	before := h.SessionCookie(c)
	authtest.WantRedirect(t, change("one-time-pass-123", "a brand new passphrase", "a brand new passphrase"), "/app/x")
	authtest.WantRedirect(t, h.Nav(other, "GET", "/app/x", nil), "/_moat/login?return_to=%2Fapp%2Fx")
	if h.SessionCookie(c) == before {
		t.Error("the session id was not renewed after the change")
	}
	if status, _ := h.Identity(c, "/app/x"); status != 200 {
		t.Fatalf("after the change: %d", status)
	}
	authtest.WantStatus(t, h.Login(h.Browser(), "new@example.com", "one-time-pass-123", "/"), http.StatusUnauthorized)
	authtest.WantRedirect(t, h.Login(h.Browser(), "new@example.com", "a brand new passphrase", "/"), "/")
}
