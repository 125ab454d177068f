package login_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/identity/login"

	"github.com/moat-dev/moat/internal/auth/authtest"
	"github.com/moat-dev/moat/internal/auth/oidc"
	"github.com/moat-dev/moat/internal/auth/oidc/oidctest"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/store"
)

func TestSSOAllowsAndRefusesByAllowList(t *testing.T) {
	h := authtest.NewSSO(t, nil)
	// bob is also in moat's directory, in moat's own group moat-ops.
	if err := h.Store.CreateUser(context.Background(), &store.User{Email: "bob@example.com", Groups: []string{"moat-ops"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, email string
		want              int
	}{
		{"a user of the allowed domain gets in", "/sso/", "alice@example.com", 200},
		{"a user of another domain is refused", "/sso/", "carol@partner.example", 403},
		{"a user in the provider's allowed group gets in", "/grp/", "carol@partner.example", 200},
		{"a user in moat's allowed group gets in", "/grp/", "bob@example.com", 200},
		{"a user in no allowed group is refused", "/grp/", "alice@example.com", 403},
		{"the allowed user gets in", "/usr/", "bob@example.com", 200},
		{"another user is refused", "/usr/", "alice@example.com", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := h.Browser()
			if tt.path == "/usr/" {
				// Password and SSO: the login page shows both.
				resp := h.Nav(c, "GET", "/_moat/login?return_to=/usr/", nil)
				body := authtest.ReadBody(t, resp)
				if resp.StatusCode != 200 || !strings.Contains(body, "/_moat/sso/test/start?return_to=%2fusr%2f") && !strings.Contains(body, "/_moat/sso/test/start?return_to=%2Fusr%2F") {
					t.Fatalf("login page (%d) has no SSO button:\n%s", resp.StatusCode, body)
				}
				loc := authtest.Location(t, h.Nav(c, "GET", "/_moat/sso/test/start?return_to=%2Fusr%2F", nil))
				cb, err := h.OP.Login(context.Background(), loc, tt.email, authtest.SSOPassword)
				if err != nil {
					t.Fatal(err)
				}
				authtest.WantRedirect(t, h.Nav(c, "GET", cb.RequestURI(), nil), "/usr/")
			} else {
				authtest.WantRedirect(t, h.SSOSignIn(c, tt.path, tt.email), tt.path)
			}
			status, got := h.Identity(c, tt.path)
			if status != tt.want {
				t.Fatalf("GET %s as %s: %d, want %d", tt.path, tt.email, status, tt.want)
			}
			if status == 200 && got[assertion.HeaderUserEmail] != tt.email {
				t.Errorf("app saw %q, want %s", got[assertion.HeaderUserEmail], tt.email)
			}
		})
	}
	t.Run("groups from the provider and from moat are merged", func(t *testing.T) {
		c := h.Browser()
		h.SSOSignIn(c, "/sso/", "bob@example.com")
		_, got := h.Identity(c, "/sso/")
		if g := got[assertion.HeaderUserGroups]; g != "moat-ops,staff" {
			t.Errorf("groups = %q, want moat-ops,staff", g)
		}
	})
	t.Run("a first SSO sign-in creates a user without a password", func(t *testing.T) {
		u, err := h.Store.GetUserByEmail(context.Background(), "alice@example.com")
		if err != nil || u.PasswordHash != "" || u.Name != "Alice" {
			t.Fatalf("user = %+v, %v", u, err)
		}
	})
}

func TestSSORefusalsShowAPageThatSaysWhy(t *testing.T) {
	h := authtest.NewSSO(t, nil)
	t.Run("an unverified email is refused", func(t *testing.T) {
		resp := h.SSOSignIn(h.Browser(), "/sso/", "dave@example.com")
		authtest.WantStatus(t, resp, http.StatusForbidden)
		if body := authtest.ReadBody(t, resp); !strings.Contains(body, "Email address not verified") {
			t.Errorf("page does not say why:\n%s", body)
		}
	})
	t.Run("a user disabled in moat is refused", func(t *testing.T) {
		u := &store.User{Email: "bob@example.com", Disabled: true}
		if err := h.Store.CreateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		resp := h.SSOSignIn(h.Browser(), "/sso/", "bob@example.com")
		authtest.WantStatus(t, resp, http.StatusForbidden)
	})
	t.Run("a callback replayed is refused", func(t *testing.T) {
		c := h.Browser()
		cb, err := h.OP.Login(context.Background(), h.ToProvider(c, "/sso/"), "alice@example.com", authtest.SSOPassword)
		if err != nil {
			t.Fatal(err)
		}
		// Someone who copied the callback and this browser's cookies.
		u, _ := url.Parse(h.Srv.URL)
		thief := h.Browser()
		thief.Jar.SetCookies(u, c.Jar.Cookies(u))
		authtest.WantRedirect(t, h.Nav(c, "GET", cb.RequestURI(), nil), "/sso/")
		resp := h.Nav(thief, "GET", cb.RequestURI(), nil)
		authtest.WantStatus(t, resp, http.StatusBadRequest)
		if body := authtest.ReadBody(t, resp); !strings.Contains(body, "This sign-in has expired") {
			t.Errorf("page does not say why:\n%s", body)
		}
		// The same callback again in the signed-in browser only leads on.
		authtest.WantRedirect(t, h.Nav(c, "GET", cb.RequestURI(), nil), "/sso/")
	})
	t.Run("a callback in another browser is refused", func(t *testing.T) {
		cb, err := h.OP.Login(context.Background(), h.ToProvider(h.Browser(), "/sso/"), "alice@example.com", authtest.SSOPassword)
		if err != nil {
			t.Fatal(err)
		}
		attacker := h.Browser()
		authtest.WantStatus(t, h.Nav(attacker, "GET", cb.RequestURI(), nil), http.StatusBadRequest)
		if status, _ := h.Identity(attacker, "/sso/"); status != http.StatusUnauthorized {
			t.Errorf("the other browser got %d, want 401", status)
		}
	})
	t.Run("a callback with another state is refused", func(t *testing.T) {
		c := h.Browser()
		cb, err := h.OP.Login(context.Background(), h.ToProvider(c, "/sso/"), "alice@example.com", authtest.SSOPassword)
		if err != nil {
			t.Fatal(err)
		}
		q := cb.Query()
		q.Set("state", oidc.RandomToken())
		authtest.WantStatus(t, h.Nav(c, "GET", login.CallbackPath+"?"+q.Encode(), nil), http.StatusBadRequest)
	})
	t.Run("a provider error is a page, not a crash", func(t *testing.T) {
		c := h.Browser()
		authURL, err := url.Parse(h.ToProvider(c, "/sso/"))
		if err != nil {
			t.Fatal(err)
		}
		state := authURL.Query().Get("state") // the state of the browser's flow cookie
		resp := h.Nav(c, "GET", login.CallbackPath+"?error=access_denied&state="+url.QueryEscape(state), nil)
		authtest.WantStatus(t, resp, http.StatusForbidden)
	})
	t.Run("a provider that is down gives a page to try later", func(t *testing.T) {
		h2 := authtest.NewSSO(t, nil)
		h2.OP.SetDown(true)
		c := h2.Browser()
		loc := authtest.Location(t, h2.Nav(c, "GET", "/_moat/login?return_to=/sso/", nil))
		resp := h2.Nav(c, "GET", loc, nil)
		authtest.WantStatus(t, resp, http.StatusServiceUnavailable)
		if body := authtest.ReadBody(t, resp); !strings.Contains(body, "The sign-in service is unavailable") {
			t.Errorf("page does not say why:\n%s", body)
		}
	})
	t.Run("the login page without return_to shows the button instead of redirecting", func(t *testing.T) {
		// Where sign-out lands: redirecting would sign the person straight
		// back in with the provider's own session.
		resp := h.Nav(h.Browser(), "GET", "/_moat/login", nil)
		authtest.WantStatus(t, resp, http.StatusOK)
		if body := authtest.ReadBody(t, resp); !strings.Contains(body, "/_moat/sso/test/start") {
			t.Errorf("no SSO button:\n%s", body)
		}
	})
	t.Run("a provider not offered on the route cannot be started", func(t *testing.T) {
		authtest.WantStatus(t, h.Nav(h.Browser(), "GET", "/_moat/sso/other/start?return_to=/sso/", nil), http.StatusNotFound)
	})
	events, _ := h.Store.ListAudit(context.Background(), store.AuditFilter{Action: "login.failure"})
	if len(events) < 4 {
		t.Errorf("%d login.failure audit events, want one per refusal", len(events))
	}
}

// domain: matches the Workspace a trusted hd claim names, so a user with a
// secondary address gets in (as with IAP's domain:).
func TestAWorkspaceUserOfTheHostedDomainGetsInWithASecondaryAddress(t *testing.T) {
	h := authtest.NewSSO(t, func(cfg *config.Config) { cfg.Identity.SSO["test"].HostedDomain = "example.com" })
	h.Svc.Provider("test").TrustHostedDomain = true // as for Google's issuer
	h.OP.SetUser(oidctest.User{Email: "dave@example-alias.net", Password: authtest.SSOPassword, EmailVerified: true, HostedDomain: "example.com"})
	c := h.Browser()
	authtest.WantRedirect(t, h.SSOSignIn(c, "/sso/", "dave@example-alias.net"), "/sso/")
	if status, _ := h.Identity(c, "/sso/"); status != 200 {
		t.Fatalf("GET /sso/ as a user with hd example.com: %d, want 200", status)
	}
}

// Issue 12 #13: an hd claim from a provider other than Google satisfied
// domain: (with or without hosted_domain); it vouches for nothing there.
func TestAnHdClaimFromAProviderOtherThanGoogleDoesNotSatisfyDomain(t *testing.T) {
	h := authtest.NewSSO(t, nil)
	h.OP.SetUser(oidctest.User{Email: "dave@example-alias.net", Password: authtest.SSOPassword, EmailVerified: true, HostedDomain: "example.com"})
	c := h.Browser()
	h.SSOSignIn(c, "/sso/", "dave@example-alias.net")
	if status, got := h.Identity(c, "/sso/"); status != http.StatusForbidden {
		t.Fatalf("GET /sso/ (domain:example.com) as dave@example-alias.net with a self-made hd: %d %v, want 403", status, got)
	}
}

// Issue 12 #5: a group name with a comma from the provider's groups claim
// reached the app as two groups in X-Moat-User-Groups ("a,b" and "c" read
// as a, b, c). Such names are dropped; the others arrive unchanged.
func TestAProviderGroupWithACommaNeverReachesTheAppAsTwoGroups(t *testing.T) {
	h := authtest.NewSSO(t, nil)
	h.OP.SetUser(oidctest.User{Email: "erin@example.com", Password: authtest.SSOPassword, EmailVerified: true,
		Groups: []string{"customer-a", "moat-ops,staff", "data team"}})
	c := h.Browser()
	authtest.WantRedirect(t, h.SSOSignIn(c, "/grp/", "erin@example.com"), "/grp/")
	status, got := h.Identity(c, "/grp/")
	if status != 200 {
		t.Fatalf("GET /grp/: %d", status)
	}
	if g := got[assertion.HeaderUserGroups]; g != "customer-a,data team" {
		t.Fatalf("X-Moat-User-Groups = %q, want customer-a,data team (moat-ops,staff dropped)", g)
	}
}

// Issue 12 #12: two tabs signing in through SSO at once both failed (one
// flow cookie per host: the second start overwrote the first, and the
// first callback deleted the second's), which is what restoring several
// tabs after a session ended does. Each sign-in has its own cookie, and a
// callback that arrives while the browser is signed in leads on.
func TestTwoTabsSigningInThroughSSOAtOnceBothLandWhereTheyWereGoing(t *testing.T) {
	h := authtest.NewSSO(t, nil)
	c := h.Browser() // one browser, two tabs
	first := h.ToProvider(c, "/sso/")
	second := h.ToProvider(c, "/grp/")
	cb1, err := h.OP.Login(context.Background(), first, "alice@example.com", authtest.SSOPassword)
	if err != nil {
		t.Fatal(err)
	}
	cb2, err := h.OP.Login(context.Background(), second, "alice@example.com", authtest.SSOPassword)
	if err != nil {
		t.Fatal(err)
	}
	authtest.WantRedirect(t, h.Nav(c, "GET", cb1.RequestURI(), nil), "/sso/")
	authtest.WantRedirect(t, h.Nav(c, "GET", cb2.RequestURI(), nil), "/grp/")
	if status, _ := h.Identity(c, "/sso/"); status != 200 {
		t.Fatalf("GET /sso/ after both tabs signed in: %d", status)
	}
	// A stale callback while signed in leads on rather than failing.
	authtest.WantRedirect(t, h.Nav(c, "GET", cb1.RequestURI(), nil), "/sso/")
}

// A browser holds at most maxFlows sign-ins under way; starting another
// drops the oldest.
func TestABrowserHoldsABoundedNumberOfSSOSignIns(t *testing.T) {
	h := authtest.NewSSO(t, nil)
	c := h.Browser()
	for range login.MaxFlows + 3 {
		h.ToProvider(c, "/sso/")
	}
	u, _ := url.Parse(h.Srv.URL)
	n := 0
	for _, ck := range c.Jar.Cookies(u) {
		if strings.HasPrefix(ck.Name, login.OIDCCookie) {
			n++
		}
	}
	if n != login.MaxFlows {
		t.Fatalf("%d sign-in cookies, want at most %d", n, login.MaxFlows)
	}
}
