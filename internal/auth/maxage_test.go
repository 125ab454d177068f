package auth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/authtest"
	"github.com/moat-dev/moat/internal/config"
)

func TestRouteMaxAgeSendsAnOlderSignInThroughTheLoginPageAgain(t *testing.T) {
	h := authtest.New(t, func(cfg *config.Config) {
		cfg.Routes[0].MaxAge = config.Duration(time.Second) // /app/
	})
	h.AddUser("ann@example.com", authtest.AlicePassword, []string{"staff"}, false)
	c := h.Browser()
	h.Login(c, "ann@example.com", authtest.AlicePassword, "/app/")
	if code, _ := h.Identity(c, "/app/x"); code != http.StatusOK {
		t.Fatalf("fresh sign-in on a max_age route: %d, want 200", code)
	}
	time.Sleep(1200 * time.Millisecond)
	if code, _ := h.Identity(c, "/corp/x"); code == http.StatusUnauthorized {
		t.Fatalf("a route without max_age refused the older sign-in")
	}
	resp := h.Nav(c, "GET", "/app/x", nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/_moat/login?reauth=1&") {
		t.Fatalf("older sign-in on the max_age route: %d %q, want a redirect to the login page asking for a fresh sign-in", resp.StatusCode, loc)
	}
	tok := h.CSRF(c, loc) // the form shows although a session exists
	h.Nav(c, "POST", "/_moat/login", url.Values{"csrf": {tok}, "email": {"ann@example.com"}, "password": {authtest.AlicePassword}, "return_to": {"/app/"}})
	if code, _ := h.Identity(c, "/app/x"); code != http.StatusOK {
		t.Fatalf("after signing in again: %d, want 200", code)
	}
}
