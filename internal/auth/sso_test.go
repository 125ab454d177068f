package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/moat-dev/moat/internal/auth/oidc"
	"github.com/moat-dev/moat/internal/auth/oidc/oidctest"
	"github.com/moat-dev/moat/internal/auth/pat"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

const ssoPassword = "correct horse battery" // every oidctest.Users() password

// ssoHarness is the harness with routes that sign in with a real OpenID
// Provider (oidctest, zitadel's op) named "test":
//
//	/sso/  allow domain:example.com
//	/grp/  allow group:customer-a, group:moat-ops (moat's own group)
//	/usr/  allow user:bob@example.com (password or SSO)
//	/api/  allow domain:example.com, bearer: true
//
// Its backend reports the X-Moat-* and X-Goog-* headers the app receives.
type ssoHarness struct {
	*harness
	op      *oidctest.Provider
	mu      sync.Mutex
	revoked []string // OnRevoke calls
}

func newSSOHarness(t *testing.T, tweak func(*config.Config)) *ssoHarness {
	t.Helper()
	op := oidctest.Start(t)
	dir := t.TempDir()
	cfg := &config.Config{DataDir: dir}
	cfg.Identity.Session = config.Session{MaxAge: config.Duration(12 * time.Hour), IdleTimeout: config.Duration(time.Hour)}
	cfg.Identity.Passwords.MinLength = 12
	cfg.Identity.SSO = map[string]*config.SSOProvider{"test": op.Config()}
	cfg.Routes = []*config.Route{
		{Host: "127.0.0.1", PathPrefix: "/sso/", Backend: "b", Login: []string{"test"}, Allow: config.Members("domain:example.com")},
		{Host: "127.0.0.1", PathPrefix: "/grp/", Backend: "b", Login: []string{"test"}, Allow: config.Members("group:customer-a", "group:moat-ops")},
		{Host: "127.0.0.1", PathPrefix: "/usr/", Backend: "b", Login: []string{"test", "password"}, Allow: config.Members("user:bob@example.com")},
		{Host: "127.0.0.1", PathPrefix: "/api/", Backend: "b", Login: []string{"test"}, Bearer: true, Allow: config.Members("domain:example.com")},
	}
	if tweak != nil {
		tweak(cfg)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "moat.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	svc := newTestService(t, cfg, st)
	h := &ssoHarness{harness: &harness{t: t, cfg: cfg, store: st, svc: svc, routes: map[string]*config.Route{}}, op: op}
	svc.p.OnRevoke = func(hash string) {
		h.mu.Lock()
		h.revoked = append(h.revoked, hash)
		h.mu.Unlock()
	}
	mux := http.NewServeMux()
	mux.Handle("/_moat/", svc.Identify(svc.Handler()))
	for _, rt := range cfg.Routes {
		h.routes[rt.PathPrefix] = rt
		mux.Handle(rt.PathPrefix, withRoute(rt, svc.Identify(svc.Require(rt, h.appBackend()))))
	}
	h.srv = httptest.NewTLSServer(withInfo(mux))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *ssoHarness) appBackend() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := r.Clone(r.Context())
		for k := range out.Header {
			if l := strings.ToLower(k); strings.HasPrefix(l, "x-moat") || strings.HasPrefix(l, "x-goog") {
				out.Header.Del(k)
			}
		}
		h.svc.SetIdentity(out, r)
		if web.WantsHTML(r) {
			// The dashboard, for the browser test.
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, "<!doctype html><title>Dashboard</title><h1 id=dashboard>Dashboard</h1><p id=who>Signed in as %s</p>", html.EscapeString(out.Header.Get(assertion.HeaderUserEmail)))
			return
		}
		got := map[string]string{}
		for k := range out.Header {
			if l := strings.ToLower(k); strings.HasPrefix(l, "x-moat") || strings.HasPrefix(l, "x-goog") || l == "authorization" {
				got[k] = out.Header.Get(k)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(got)
	})
}

// location follows one redirect's Location relative to the harness.
func location(t *testing.T, resp *http.Response) string {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound {
		t.Fatalf("%s %s: status %d, want a redirect", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// toProvider opens path in browser c and follows moat's redirects to the
// provider, returning the provider's authorization URL.
func (h *ssoHarness) toProvider(c *http.Client, path string) string {
	t := h.t.(*testing.T)
	t.Helper()
	loc := location(t, h.nav(c, "GET", path, nil))
	if !strings.HasPrefix(loc, "/_moat/login?") {
		t.Fatalf("%s redirected to %s, want the login page", path, loc)
	}
	loc = location(t, h.nav(c, "GET", loc, nil))
	if !strings.HasPrefix(loc, "/_moat/sso/test/start?") {
		t.Fatalf("login page redirected to %s, want straight to the provider's start", loc)
	}
	loc = location(t, h.nav(c, "GET", loc, nil))
	if !strings.HasPrefix(loc, h.op.Issuer+"/") {
		t.Fatalf("start redirected to %s, want the provider at %s", loc, h.op.Issuer)
	}
	return loc
}

// ssoSignIn signs c in at the provider as email from path and returns
// moat's answer to the callback.
func (h *ssoHarness) ssoSignIn(c *http.Client, path, email string) *http.Response {
	t := h.t.(*testing.T)
	t.Helper()
	cb, err := h.op.Login(context.Background(), h.toProvider(c, path), email, ssoPassword)
	if err != nil {
		t.Fatalf("sign in at the provider as %s: %v", email, err)
	}
	if cb.Path != CallbackPath {
		t.Fatalf("provider sent the browser to %s, want %s", cb, CallbackPath)
	}
	return h.nav(c, "GET", cb.RequestURI(), nil)
}

func TestSSOAllowsAndRefusesByAllowList(t *testing.T) {
	h := newSSOHarness(t, nil)
	// bob is also in moat's directory, in moat's own group moat-ops.
	if err := h.store.CreateUser(context.Background(), &store.User{Email: "bob@example.com", Groups: []string{"moat-ops"}}); err != nil {
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
			c := h.browser()
			if tt.path == "/usr/" {
				// Password and SSO: the login page shows both.
				resp := h.nav(c, "GET", "/_moat/login?return_to=/usr/", nil)
				body := readBody(t, resp)
				if resp.StatusCode != 200 || !strings.Contains(body, "/_moat/sso/test/start?return_to=%2fusr%2f") && !strings.Contains(body, "/_moat/sso/test/start?return_to=%2Fusr%2F") {
					t.Fatalf("login page (%d) has no SSO button:\n%s", resp.StatusCode, body)
				}
				loc := location(t, h.nav(c, "GET", "/_moat/sso/test/start?return_to=%2Fusr%2F", nil))
				cb, err := h.op.Login(context.Background(), loc, tt.email, ssoPassword)
				if err != nil {
					t.Fatal(err)
				}
				wantRedirect(t, h.nav(c, "GET", cb.RequestURI(), nil), "/usr/")
			} else {
				wantRedirect(t, h.ssoSignIn(c, tt.path, tt.email), tt.path)
			}
			status, got := h.identity(c, tt.path)
			if status != tt.want {
				t.Fatalf("GET %s as %s: %d, want %d", tt.path, tt.email, status, tt.want)
			}
			if status == 200 && got[assertion.HeaderUserEmail] != tt.email {
				t.Errorf("app saw %q, want %s", got[assertion.HeaderUserEmail], tt.email)
			}
		})
	}
	t.Run("groups from the provider and from moat are merged", func(t *testing.T) {
		c := h.browser()
		h.ssoSignIn(c, "/sso/", "bob@example.com")
		_, got := h.identity(c, "/sso/")
		if g := got[assertion.HeaderUserGroups]; g != "moat-ops,staff" {
			t.Errorf("groups = %q, want moat-ops,staff", g)
		}
	})
	t.Run("a first SSO sign-in creates a user without a password", func(t *testing.T) {
		u, err := h.store.GetUserByEmail(context.Background(), "alice@example.com")
		if err != nil || u.PasswordHash != "" || u.Name != "Alice" {
			t.Fatalf("user = %+v, %v", u, err)
		}
	})
}

func TestSSORefusalsShowAPageThatSaysWhy(t *testing.T) {
	h := newSSOHarness(t, nil)
	t.Run("an unverified email is refused", func(t *testing.T) {
		resp := h.ssoSignIn(h.browser(), "/sso/", "dave@example.com")
		wantStatus(t, resp, http.StatusForbidden)
		if body := readBody(t, resp); !strings.Contains(body, "Email address not verified") {
			t.Errorf("page does not say why:\n%s", body)
		}
	})
	t.Run("a user disabled in moat is refused", func(t *testing.T) {
		u := &store.User{Email: "bob@example.com", Disabled: true}
		if err := h.store.CreateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		resp := h.ssoSignIn(h.browser(), "/sso/", "bob@example.com")
		wantStatus(t, resp, http.StatusForbidden)
	})
	t.Run("a callback replayed is refused", func(t *testing.T) {
		c := h.browser()
		cb, err := h.op.Login(context.Background(), h.toProvider(c, "/sso/"), "alice@example.com", ssoPassword)
		if err != nil {
			t.Fatal(err)
		}
		// Someone who copied the callback and this browser's cookies.
		u, _ := url.Parse(h.srv.URL)
		thief := h.browser()
		thief.Jar.SetCookies(u, c.Jar.Cookies(u))
		wantRedirect(t, h.nav(c, "GET", cb.RequestURI(), nil), "/sso/")
		resp := h.nav(thief, "GET", cb.RequestURI(), nil)
		wantStatus(t, resp, http.StatusBadRequest)
		if body := readBody(t, resp); !strings.Contains(body, "This sign-in has expired") {
			t.Errorf("page does not say why:\n%s", body)
		}
		// The same callback again in the signed-in browser only leads on.
		wantRedirect(t, h.nav(c, "GET", cb.RequestURI(), nil), "/sso/")
	})
	t.Run("a callback in another browser is refused", func(t *testing.T) {
		cb, err := h.op.Login(context.Background(), h.toProvider(h.browser(), "/sso/"), "alice@example.com", ssoPassword)
		if err != nil {
			t.Fatal(err)
		}
		attacker := h.browser()
		wantStatus(t, h.nav(attacker, "GET", cb.RequestURI(), nil), http.StatusBadRequest)
		if status, _ := h.identity(attacker, "/sso/"); status != http.StatusUnauthorized {
			t.Errorf("the other browser got %d, want 401", status)
		}
	})
	t.Run("a callback with another state is refused", func(t *testing.T) {
		c := h.browser()
		cb, err := h.op.Login(context.Background(), h.toProvider(c, "/sso/"), "alice@example.com", ssoPassword)
		if err != nil {
			t.Fatal(err)
		}
		q := cb.Query()
		q.Set("state", oidc.RandomToken())
		wantStatus(t, h.nav(c, "GET", CallbackPath+"?"+q.Encode(), nil), http.StatusBadRequest)
	})
	t.Run("a provider error is a page, not a crash", func(t *testing.T) {
		c := h.browser()
		h.toProvider(c, "/sso/")
		u, _ := url.Parse(h.srv.URL)
		var state string
		for _, ck := range c.Jar.Cookies(u) {
			if strings.HasPrefix(ck.Name, OIDCCookie) {
				f, err := h.svc.p.openFlow(ck.Value)
				if err != nil {
					t.Fatal(err)
				}
				state = f.State
			}
		}
		resp := h.nav(c, "GET", CallbackPath+"?error=access_denied&state="+url.QueryEscape(state), nil)
		wantStatus(t, resp, http.StatusForbidden)
	})
	t.Run("a provider that is down gives a page to try later", func(t *testing.T) {
		h2 := newSSOHarness(t, nil)
		h2.op.SetDown(true)
		c := h2.browser()
		loc := location(t, h2.nav(c, "GET", "/_moat/login?return_to=/sso/", nil))
		resp := h2.nav(c, "GET", loc, nil)
		wantStatus(t, resp, http.StatusServiceUnavailable)
		if body := readBody(t, resp); !strings.Contains(body, "The sign-in service is unavailable") {
			t.Errorf("page does not say why:\n%s", body)
		}
	})
	t.Run("the login page without return_to shows the button instead of redirecting", func(t *testing.T) {
		// Where sign-out lands: redirecting would sign the person straight
		// back in with the provider's own session.
		resp := h.nav(h.browser(), "GET", "/_moat/login", nil)
		wantStatus(t, resp, http.StatusOK)
		if body := readBody(t, resp); !strings.Contains(body, "/_moat/sso/test/start") {
			t.Errorf("no SSO button:\n%s", body)
		}
	})
	t.Run("a provider not offered on the route cannot be started", func(t *testing.T) {
		wantStatus(t, h.nav(h.browser(), "GET", "/_moat/sso/other/start?return_to=/sso/", nil), http.StatusNotFound)
	})
	events, _ := h.store.ListAudit(context.Background(), store.AuditFilter{Action: "login.failure"})
	if len(events) < 4 {
		t.Errorf("%d login.failure audit events, want one per refusal", len(events))
	}
}

func TestSSORecheckEndsTheSessionWhenTheProviderRefuses(t *testing.T) {
	h := newSSOHarness(t, func(cfg *config.Config) {
		cfg.Identity.SSO["test"].RefreshInterval = config.Duration(time.Minute)
	})
	alice, bob := h.browser(), h.browser()
	h.ssoSignIn(alice, "/sso/", "alice@example.com")
	h.ssoSignIn(bob, "/sso/", "bob@example.com")
	ctx := context.Background()

	h.svc.recheckSessions(ctx, time.Now()) // not due yet
	if n := h.op.Refreshes(); n != 0 {
		t.Fatalf("%d refreshes before the interval", n)
	}
	h.svc.recheckSessions(ctx, time.Now().Add(61*time.Second))
	if n := h.op.Refreshes(); n != 2 {
		t.Fatalf("%d refreshes after the interval, want 2", n)
	}
	for _, c := range []*http.Client{alice, bob} {
		if status, _ := h.identity(c, "/sso/"); status != 200 {
			t.Fatalf("after a good re-check: %d", status)
		}
	}

	h.op.RevokeUser("alice@example.com")
	h.svc.recheckSessions(ctx, time.Now().Add(3*time.Minute))
	if status, _ := h.identity(alice, "/sso/"); status != http.StatusUnauthorized {
		t.Errorf("alice, revoked at the provider: %d, want 401", status)
	}
	if status, _ := h.identity(bob, "/sso/"); status != 200 {
		t.Errorf("bob: %d, want 200", status)
	}
	h.mu.Lock()
	n := len(h.revoked)
	h.mu.Unlock()
	if n != 1 {
		t.Errorf("OnRevoke called %d times, want once (to close alice's WebSockets)", n)
	}

	h.op.FailNextRefresh(1)
	h.svc.recheckSessions(ctx, time.Now().Add(5*time.Minute))
	if status, _ := h.identity(bob, "/sso/"); status != http.StatusUnauthorized {
		t.Errorf("bob after a failed refresh: %d, want 401", status)
	}
	events, _ := h.store.ListAudit(ctx, store.AuditFilter{Action: "session.revoke"})
	if len(events) != 2 {
		t.Errorf("%d session.revoke audit events, want 2", len(events))
	}
}

func TestSSORecheckToleratesABriefOutage(t *testing.T) {
	h := newSSOHarness(t, func(cfg *config.Config) {
		cfg.Identity.SSO["test"].RefreshInterval = config.Duration(time.Minute)
	})
	c := h.browser()
	h.ssoSignIn(c, "/sso/", "alice@example.com")
	h.op.SetDown(true)
	h.svc.recheckSessions(context.Background(), time.Now().Add(90*time.Second))
	if status, _ := h.identity(c, "/sso/"); status != 200 {
		t.Fatalf("after one missed re-check: %d, want 200", status)
	}
	h.svc.recheckSessions(context.Background(), time.Now().Add(3*time.Minute))
	if status, _ := h.identity(c, "/sso/"); status != http.StatusUnauthorized {
		t.Fatalf("after two intervals without the provider: %d, want 401", status)
	}
}

func TestBearerTokens(t *testing.T) {
	h := newSSOHarness(t, nil)
	ctx := context.Background()
	// An ID token as a script would get it from the provider.
	p := h.svc.Provider("test")
	f := struct{ state, nonce, verifier string }{oidc.RandomToken(), oidc.RandomToken(), oauth2.GenerateVerifier()}
	authURL, err := p.AuthCodeURL(ctx, f.state, f.nonce, f.verifier, "http://127.0.0.1:9/cb")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := h.op.Login(ctx, authURL, "alice@example.com", ssoPassword)
	if err != nil {
		t.Fatal(err)
	}
	_, tok, err := p.Exchange(ctx, cb.Query().Get("code"), f.verifier, "http://127.0.0.1:9/cb", f.nonce)
	if err != nil {
		t.Fatal(err)
	}
	idToken := tok.Extra("id_token").(string)

	// Personal access tokens of carol (moat user, partner.example: not
	// allowed on /api/) and dave (example.com).
	mk := func(email string, expires time.Time) (string, *store.Token) {
		u := &store.User{Email: email}
		if err := h.store.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		raw, hash := pat.New()
		st := &store.Token{Hash: hash, UserID: u.ID, Name: "t", ExpiresAt: expires}
		if err := h.store.CreateToken(ctx, st); err != nil {
			t.Fatal(err)
		}
		return raw, st
	}
	good, goodTok := mk("erin@example.com", time.Now().Add(time.Hour))
	expired, _ := mk("frank@example.com", time.Now().Add(-time.Minute))
	partner, _ := mk("gina@partner.example", time.Now().Add(time.Hour))

	tests := []struct {
		name, path, auth string
		want             int
		email            string
	}{
		{"an ID token for moat's client is accepted", "/api/", "Bearer " + idToken, 200, "alice@example.com"},
		{"a personal access token is accepted", "/api/", "Bearer " + good, 200, "erin@example.com"},
		{"the scheme is case-insensitive", "/api/", "bearer " + good, 200, "erin@example.com"},
		{"an expired personal access token is refused", "/api/", "Bearer " + expired, 401, ""},
		{"an unknown personal access token is refused", "/api/", "Bearer " + pat.Prefix + strings.Repeat("A", 43), 401, ""},
		{"a user outside the allow list is refused", "/api/", "Bearer " + partner, 403, ""},
		{"a tampered ID token is refused", "/api/", "Bearer " + idToken[:len(idToken)-3] + "AAA", 401, ""},
		{"garbage is refused", "/api/", "Bearer hello", 401, ""},
		{"basic auth is not a bearer token", "/api/", "Basic YWxpY2U6cHc=", 401, ""},
		{"a route without bearer: true ignores the token", "/sso/", "Bearer " + good, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", h.srv.URL+tt.path, nil)
			req.Header.Set("Authorization", tt.auth)
			req.Header.Set("Accept", "application/json")
			resp, err := h.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, resp)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
			if tt.want == 401 && tt.path == "/api/" && resp.Header.Get("WWW-Authenticate") == "" && !strings.HasPrefix(tt.auth, "Basic") {
				t.Error("401 without WWW-Authenticate")
			}
			if tt.email != "" {
				var got map[string]string
				_ = json.Unmarshal([]byte(body), &got)
				if got[assertion.HeaderUserEmail] != tt.email || got[assertion.HeaderAssertion] == "" {
					t.Errorf("app saw %v", got)
				}
			}
		})
	}
	bearer := func(token string) (int, map[string]string) {
		t.Helper()
		req, _ := http.NewRequest("GET", h.srv.URL+"/api/", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]string
		_ = json.Unmarshal([]byte(readBody(t, resp)), &got)
		resp.Body.Close()
		return resp.StatusCode, got
	}
	t.Run("issue 12 #9: the bearer token moat consumed never reaches the app", func(t *testing.T) {
		for name, token := range map[string]string{"ID token": idToken, "personal access token": good} {
			status, got := bearer(token)
			if status != 200 || got[assertion.HeaderUserEmail] == "" {
				t.Fatalf("%s: %d %v", name, status, got)
			}
			if a, ok := got["Authorization"]; ok {
				t.Errorf("%s: the app received Authorization %q", name, a)
			}
		}
	})
	t.Run("issue 12 #11: a personal access token revoked through this instance stops at once", func(t *testing.T) {
		raw, tok := mk("hana@example.com", time.Now().Add(time.Hour))
		if status, _ := bearer(raw); status != 200 {
			t.Fatalf("before revocation: %d", status)
		}
		if err := h.store.RevokeToken(ctx, tok.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		h.svc.p.Ended(directory.Ended{Tokens: []string{tok.Hash}})
		if status, _ := bearer(raw); status != http.StatusUnauthorized { // within tokenVerifyEvery of the last use
			t.Fatalf("right after revocation: %d, want 401", status)
		}
	})
	t.Run("a revoked personal access token is refused within seconds", func(t *testing.T) {
		h.svc.p.tokens.ttl = 300 * time.Millisecond // instead of tokenVerifyEvery
		if err := h.store.RevokeToken(ctx, goodTok.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(h.svc.p.tokens.ttl + 2*time.Second)
		for {
			req, _ := http.NewRequest("GET", h.srv.URL+"/api/", nil)
			req.Header.Set("Authorization", "Bearer "+good)
			resp, err := h.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == 401 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("still %d after revocation", resp.StatusCode)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("an ID token for another audience is refused", func(t *testing.T) {
		// A moat whose client at the same provider is another-app: the
		// token was issued to moat-test, so its aud does not match.
		h2 := newSSOHarness(t, func(cfg *config.Config) {
			cfg.Identity.SSO["test"] = &config.SSOProvider{Issuer: h.op.Issuer, ClientID: "another-app", ClientSecret: "x"}
		})
		req, _ := http.NewRequest("GET", h2.srv.URL+"/api/", nil)
		req.Header.Set("Authorization", "Bearer "+idToken)
		resp, err := h2.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
	})
}

// domain: matches the Workspace a trusted hd claim names, so a user with a
// secondary address gets in (as with IAP's domain:).
func TestAWorkspaceUserOfTheHostedDomainGetsInWithASecondaryAddress(t *testing.T) {
	h := newSSOHarness(t, func(cfg *config.Config) { cfg.Identity.SSO["test"].HostedDomain = "example.com" })
	h.svc.Provider("test").TrustHostedDomain = true // as for Google's issuer
	h.op.SetUser(oidctest.User{Email: "dave@example-alias.net", Password: ssoPassword, EmailVerified: true, HostedDomain: "example.com"})
	c := h.browser()
	wantRedirect(t, h.ssoSignIn(c, "/sso/", "dave@example-alias.net"), "/sso/")
	if status, _ := h.identity(c, "/sso/"); status != 200 {
		t.Fatalf("GET /sso/ as a user with hd example.com: %d, want 200", status)
	}
}

// Issue 12 #13: an hd claim from a provider other than Google satisfied
// domain: (with or without hosted_domain); it vouches for nothing there.
func TestAnHdClaimFromAProviderOtherThanGoogleDoesNotSatisfyDomain(t *testing.T) {
	h := newSSOHarness(t, nil)
	h.op.SetUser(oidctest.User{Email: "dave@example-alias.net", Password: ssoPassword, EmailVerified: true, HostedDomain: "example.com"})
	c := h.browser()
	h.ssoSignIn(c, "/sso/", "dave@example-alias.net")
	if status, got := h.identity(c, "/sso/"); status != http.StatusForbidden {
		t.Fatalf("GET /sso/ (domain:example.com) as dave@example-alias.net with a self-made hd: %d %v, want 403", status, got)
	}
}

// Issue 12 #5: a group name with a comma from the provider's groups claim
// reached the app as two groups in X-Moat-User-Groups ("a,b" and "c" read
// as a, b, c). Such names are dropped; the others arrive unchanged.
func TestAProviderGroupWithACommaNeverReachesTheAppAsTwoGroups(t *testing.T) {
	h := newSSOHarness(t, nil)
	h.op.SetUser(oidctest.User{Email: "erin@example.com", Password: ssoPassword, EmailVerified: true,
		Groups: []string{"customer-a", "moat-ops,staff", "data team"}})
	c := h.browser()
	wantRedirect(t, h.ssoSignIn(c, "/grp/", "erin@example.com"), "/grp/")
	status, got := h.identity(c, "/grp/")
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
	h := newSSOHarness(t, nil)
	c := h.browser() // one browser, two tabs
	first := h.toProvider(c, "/sso/")
	second := h.toProvider(c, "/grp/")
	cb1, err := h.op.Login(context.Background(), first, "alice@example.com", ssoPassword)
	if err != nil {
		t.Fatal(err)
	}
	cb2, err := h.op.Login(context.Background(), second, "alice@example.com", ssoPassword)
	if err != nil {
		t.Fatal(err)
	}
	wantRedirect(t, h.nav(c, "GET", cb1.RequestURI(), nil), "/sso/")
	wantRedirect(t, h.nav(c, "GET", cb2.RequestURI(), nil), "/grp/")
	if status, _ := h.identity(c, "/sso/"); status != 200 {
		t.Fatalf("GET /sso/ after both tabs signed in: %d", status)
	}
	// A stale callback while signed in leads on rather than failing.
	wantRedirect(t, h.nav(c, "GET", cb1.RequestURI(), nil), "/sso/")
}

// A browser holds at most maxFlows sign-ins under way; starting another
// drops the oldest.
func TestABrowserHoldsABoundedNumberOfSSOSignIns(t *testing.T) {
	h := newSSOHarness(t, nil)
	c := h.browser()
	for range maxFlows + 3 {
		h.toProvider(c, "/sso/")
	}
	u, _ := url.Parse(h.srv.URL)
	n := 0
	for _, ck := range c.Jar.Cookies(u) {
		if strings.HasPrefix(ck.Name, OIDCCookie) {
			n++
		}
	}
	if n != maxFlows {
		t.Fatalf("%d sign-in cookies, want at most %d", n, maxFlows)
	}
}
