package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/forwardauth"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/store"
)

// ingressAddr is the address the ingress stand-in connects from; moat
// trusts it and nothing else (tests connect from 127.0.0.1 otherwise).
const ingressAddr = "127.0.0.2"

// forwardAuthConfig protects app.example.com for an ingress: a signed-in
// route for staff under a policy hiding /secret, a public forward_auth
// route, and a route moat proxies itself.
const forwardAuthConfig = `
server:
  https_addr: "127.0.0.1:0"
  http_addr: "127.0.0.1:0"
  internal_addr: "127.0.0.1:0"
  shutdown_grace: 5s
  trusted_proxies: ["` + ingressAddr + `"]
data_dir: %q
tls: {self_signed: true}
backends:
  app: {url: %q, health_path: /health}
security_policies:
  guard:
    rules:
      - {priority: 100, expr: "request.path.startsWith('/secret')", action: "deny(404)"}
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: allow}
routes:
  - {host: app.example.com, forward_auth: true, login: [password], allow: ["group:staff"], security_policy: guard}
  - {host: app.example.com, path_prefix: /open/, forward_auth: true, public: true}
  - {host: app.example.com, path_prefix: /proxied/, backend: app, public: true}
`

// ask sends an auth request to path about method uri on app.example.com,
// with the client's headers (name, value pairs).
func ask(t *testing.T, c *http.Client, path, method, uri string, header ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "https://moat.internal"+path, nil)
	req.Header.Set(forwardauth.HeaderMethod, method)
	req.Header.Set(forwardauth.HeaderProto, "https")
	req.Header.Set(forwardauth.HeaderHost, "app.example.com")
	req.Header.Set(forwardauth.HeaderURI, uri)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("auth request about %s %s: %v", method, uri, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// sessionCookie is the Cookie header of a client signIn signed in.
func sessionCookie(t *testing.T, c *http.Client) string {
	t.Helper()
	u, _ := url.Parse("https://app.example.com/")
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == session.Cookie {
			return ck.Name + "=" + ck.Value
		}
	}
	t.Fatal("signed-in client holds no session cookie")
	return ""
}

func TestForwardAuthSendsAPersonToSignInAndThenGrantsTheirIdentity(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, forwardAuthConfig)
	in := m.clientFrom(ingressAddr)
	nav := []string{"Sec-Fetch-Mode", "navigate", "Accept", "text/html"}
	const login = "/_moat/login?return_to=%2Freports%3Fq%3D1"

	resp := ask(t, in, forwardauth.Path, "GET", "/reports?q=1", nav...)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != login {
		t.Errorf("anonymous navigation: %d Location %q, want 303 to %s (relayed to the browser)", resp.StatusCode, resp.Header.Get("Location"), login)
	}
	resp = ask(t, in, forwardauth.NginxPath, "GET", "/reports?q=1", nav...)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Location") != login {
		t.Errorf("anonymous navigation for nginx: %d Location %q, want 401 with Location %s", resp.StatusCode, resp.Header.Get("Location"), login)
	}
	for _, path := range []string{forwardauth.Path, forwardauth.NginxPath} {
		resp = ask(t, in, path, "GET", "/api/data", "Sec-Fetch-Mode", "cors")
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Location") != "" {
			t.Errorf("%s: anonymous fetch got %d Location %q, want a bare 401", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}

	c, u := signIn(t, m)
	cookie := sessionCookie(t, c) + "; theme=dark; moat_lang=en"
	for _, path := range []string{forwardauth.Path, forwardauth.NginxPath} {
		resp = ask(t, in, path, "POST", "/reports?q=1", "Cookie", cookie, "X-Moat-User-Email", "spoofed@evil.test")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: signed-in staff got %d, want 200", path, resp.StatusCode)
		}
		if got := resp.Header.Get(assertion.HeaderUserEmail); got != u.Email {
			t.Errorf("%s: answer names %q, want %s", path, got, u.Email)
		}
		if got := resp.Header.Get(assertion.HeaderUserGroups); got != "staff" {
			t.Errorf("%s: answer's groups %q", path, got)
		}
		if got := resp.Header.Get(forwardauth.HeaderCookie); got != "theme=dark" {
			t.Errorf("%s: cookies for the app %q, want theme=dark (none of moat's)", path, got)
		}
		claims := verifyAssertion(t, m, resp.Header.Get(assertion.HeaderAssertion), "app.example.com")
		if claims.Email != u.Email || claims.Subject != u.ID {
			t.Errorf("%s: assertion says %+v", path, claims)
		}
	}
	waitLog(t, m, `"forward_auth":"POST app.example.com/reports"`)
	waitLog(t, m, `"user":"carol@example.com"`)
}

func TestForwardAuthRunsTheRoutesPolicyAndAllowList(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, forwardAuthConfig)
	in := m.clientFrom(ingressAddr)
	c, _ := signIn(t, m)
	staff := sessionCookie(t, c)
	hash, err := password.Hash(testPassword, password.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.server.store.CreateUser(context.Background(), &store.User{Email: "dave@example.com", Groups: []string{"sales"}, PasswordHash: hash}); err != nil {
		t.Fatal(err)
	}
	outsider := signInAs(t, m, "dave@example.com")

	for _, tc := range []struct {
		name, method, uri, cookie string
		relay, nginx              int
		identity                  bool
	}{
		{"staff", "GET", "/reports", staff, 200, 200, true},
		{"someone the allow list refuses", "GET", "/reports", outsider, 403, 403, false},
		{"a path the policy hides", "GET", "/secret/plans", staff, 404, 403, false},
		{"a public forward_auth route, anonymous", "GET", "/open/status", "", 200, 200, false},
		{"a public forward_auth route, signed in: no identity", "GET", "/open/status", staff, 200, 200, false},
		{"a route moat proxies itself", "GET", "/proxied/x", staff, 404, 403, false},
		{"moat's own pages", "GET", "/_moat/login", staff, 404, 403, false},
		{"a path that is not clean, read", "GET", "/open/../reports", "", 308, 401, false},
		{"a path that is not clean, written", "POST", "/open/../reports", staff, 400, 403, false},
		{"an encoded path that is not clean", "GET", "/open/%2e%2e/reports", "", 308, 401, false},
		{"a path the app may read otherwise (encoded twice)", "GET", "/open/%252e%252e/reports", staff, 400, 403, false},
		{"a path with a backslash", "GET", "/open/..%5creports", staff, 400, 403, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for path, want := range map[string]int{forwardauth.Path: tc.relay, forwardauth.NginxPath: tc.nginx} {
				var header []string
				if tc.cookie != "" {
					header = []string{"Cookie", tc.cookie}
				}
				resp := ask(t, in, path, tc.method, tc.uri, header...)
				if resp.StatusCode != want {
					t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
				}
				if got := resp.Header.Get(assertion.HeaderUserEmail) != ""; got != tc.identity {
					t.Errorf("%s: identity headers present: %v, want %v", path, got, tc.identity)
				}
				if loc := resp.Header.Get("Location"); resp.StatusCode == 308 && loc != "/reports" {
					t.Errorf("%s: sent to %q, want the clean /reports", path, loc)
				}
			}
		})
	}
}

func TestForwardAuthBelievesOnlyTrustedPeersAndANamedRequest(t *testing.T) {
	var hits atomic.Int32
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			hits.Add(1)
			fmt.Fprintf(w, "path=%s", r.URL.Path)
		}
	}))
	t.Cleanup(backend.Close)
	m := startMoat(t, backend.URL, forwardAuthConfig)
	c, _ := signIn(t, m)
	staff := sessionCookie(t, c)

	// From a peer moat does not trust, X-Forwarded-* cannot name a request:
	// not a public route's, not with a session.
	direct := m.clientFrom("127.0.0.1")
	for _, path := range []string{forwardauth.Path, forwardauth.NginxPath} {
		for _, cookie := range []string{"", staff} {
			resp := ask(t, direct, path, "GET", "/open/status", "Cookie", cookie)
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get(assertion.HeaderUserEmail) != "" {
				t.Errorf("%s from an untrusted peer: %d %v, want 403 and no identity", path, resp.StatusCode, resp.Header)
			}
		}
	}
	waitLog(t, m, "not in server.trusted_proxies")

	// A trusted peer must name one request: a second X-Forwarded-Uri (a
	// client's, passed on beside the ingress's) is refused, not chosen from.
	in := m.clientFrom(ingressAddr)
	resp := ask(t, in, forwardauth.Path, "GET", "/reports", "Cookie", staff, forwardauth.HeaderURI, "/open/status")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("two X-Forwarded-Uri: %d, want 403", resp.StatusCode)
	}
	resp = ask(t, in, forwardauth.Path, "GET", "/reports", "Cookie", staff, forwardauth.HeaderHost, "other.example.com")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("two X-Forwarded-Host: %d, want 403", resp.StatusCode)
	}

	// A forward_auth route has no backend in moat: a request that reaches
	// moat directly is moat's 404, never a proxied one.
	resp, _ = get(t, c, "https://app.example.com/reports", "Accept", "text/html")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a direct request for a forward_auth route got %d, want 404", resp.StatusCode)
	}
	resp, body := get(t, c, "https://app.example.com/proxied/x")
	if resp.StatusCode != 200 || body != "path=/proxied/x" {
		t.Errorf("the proxied route beside them: %d %q", resp.StatusCode, body)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the backend saw %d requests, want only the proxied route's one", n)
	}
}

// signInAs signs email (created with testPassword) in through the login
// form and returns its session's Cookie header.
func signInAs(t *testing.T, m *testMoat, email string) string {
	t.Helper()
	c := m.client()
	c.Jar, _ = cookiejar.New(nil)
	_, page := get(t, c, "https://app.example.com/_moat/login?return_to=/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	token := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if token == nil {
		t.Fatalf("login page has no CSRF token:\n%s", page)
	}
	form := url.Values{"csrf": {token[1]}, "email": {email}, "password": {testPassword}, "return_to": {"/"}}
	req, _ := http.NewRequest(http.MethodPost, "https://app.example.com/_moat/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://app.example.com")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login as %s answered %d", email, resp.StatusCode)
	}
	return sessionCookie(t, c)
}

// waitLog waits for moat's log to hold s.
func waitLog(t *testing.T, m *testMoat, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(m.logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("moat's log never held %s:\n%s", s, m.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertionClaims is what an app reads from X-Moat-Assertion.
type assertionClaims struct {
	jwt.Claims
	Email string `json:"email"`
}

// verifyAssertion checks token as an app would, with moat's JWKS only.
func verifyAssertion(t *testing.T, m *testMoat, token, audience string) assertionClaims {
	t.Helper()
	resp, err := m.client().Get("https://app.example.com/_moat/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		t.Fatalf("decode JWKS: %v", err)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("parse assertion %q: %v", token, err)
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q is not in the JWKS", tok.Headers[0].KeyID)
	}
	var c assertionClaims
	if err := tok.Claims(keys[0].Key, &c); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{AnyAudience: jwt.Audience{audience}, Time: time.Now()}, 30*time.Second); err != nil {
		t.Fatalf("claims: %v", err)
	}
	return c
}
