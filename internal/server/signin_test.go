package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/auth/pat"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/store"
)

const signInConfig = baseConfig + `  - {host: app.example.com, backend: app, login: [password], allow: ["group:staff"]}
`

const testPassword = "correct horse battery staple"

// signIn creates a staff user and signs a cookie-keeping client in through
// moat's login form, as a browser would.
func signIn(t *testing.T, m *testMoat) (*http.Client, *store.User) {
	t.Helper()
	ctx := context.Background()
	hash, err := password.Hash(testPassword, password.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	u := &store.User{Email: "carol@example.com", Groups: []string{"staff"}, PasswordHash: hash}
	if err := m.server.store.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	c := m.client()
	c.Jar, _ = cookiejar.New(nil)
	_, page := get(t, c, "https://app.example.com/_moat/login?return_to=/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	token := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if token == nil {
		t.Fatalf("login page has no CSRF token:\n%s", page)
	}
	form := url.Values{"csrf": {token[1]}, "email": {u.Email}, "password": {testPassword}, "return_to": {"/"}}
	req, _ := http.NewRequest(http.MethodPost, "https://app.example.com/_moat/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://app.example.com")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login answered %d Location %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	return c, u
}

func TestSignedInRequestReachesTheAppWithItsIdentityAndAnonymousOneDoesNot(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, signInConfig)
	resp, _ := get(t, m.client(), "https://app.example.com/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/_moat/login") {
		t.Fatalf("anonymous navigation got %d %q, want a redirect to the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = get(t, m.client(), "https://app.example.com/api", "Sec-Fetch-Mode", "cors")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous fetch got %d, want 401", resp.StatusCode)
	}
	c, _ := signIn(t, m)
	resp, body := get(t, c, "https://app.example.com/dashboard", "X-Moat-User-Email", "spoofed@evil.test")
	if resp.StatusCode != 200 || body != "path=/dashboard" {
		t.Fatalf("signed-in request got %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Seen-Moat-Email"); got != "carol@example.com" {
		t.Errorf("app saw X-Moat-User-Email %q, want moat's carol@example.com, not the client's", got)
	}
	if got := resp.Header.Get("X-Seen-Cookie"); strings.Contains(got, "moat") {
		t.Errorf("app saw moat's cookies: %q", got)
	}
	if !strings.Contains(m.logs.String(), `"user":"carol@example.com"`) {
		t.Error("access log does not name the signed-in user")
	}
}

func TestRevokedSessionLosesItsOpenWebSocketWithinTenSeconds(t *testing.T) {
	m := startMoat(t, wsEchoBackend(t).URL, signInConfig)
	c, u := signIn(t, m)
	hc := m.client()
	hc.Jar = c.Jar
	hc.Timeout = 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://app.example.com/_stcore/stream", &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("dial as a signed-in user: %v", err)
	}
	defer ws.CloseNow()
	echo(t, ws, "before")
	// Revoke as the CLI or another instance does: in the store only.
	revokedAt := time.Now()
	if _, err := m.server.store.RevokeUserSessions(context.Background(), u.ID, revokedAt); err != nil {
		t.Fatal(err)
	}
	readCtx, cancelRead := context.WithTimeout(context.Background(), 12*time.Second)
	defer cancelRead()
	_, _, err = ws.Read(readCtx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("socket of a revoked session: read gave %v, want a close frame", err)
	}
	if waited := time.Since(revokedAt); waited > 10*time.Second {
		t.Errorf("socket closed %s after the revocation, want within 10s", waited)
	}
	if ce.Code != websocketPolicyViolation {
		t.Errorf("close code %d, want %d", ce.Code, websocketPolicyViolation)
	}
}

func TestSessionInUseOverItsWebSocketDoesNotIdleOutButAnIdleOneLosesItsSocket(t *testing.T) {
	cfg := signInConfig + "identity:\n  session: {idle_timeout: 3s, max_age: 1h}\n"
	m := startMoat(t, wsEchoBackend(t).URL, cfg)
	c, _ := signIn(t, m)
	hc := m.client()
	hc.Jar, hc.Timeout = c.Jar, 0
	dial := func() *websocket.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, "wss://app.example.com/_stcore/stream", &websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { ws.CloseNow() })
		return ws
	}
	busy := dial()
	// Six seconds of use over the socket alone: twice the idle timeout.
	for i := 0; i < 12; i++ {
		echo(t, busy, "still here")
		time.Sleep(500 * time.Millisecond)
	}
	// Now leave it idle: within idle_timeout plus a check interval or two,
	// the session ends and takes its socket with it.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second+3*socketCheckInterval)
	defer cancel()
	_, _, err := busy.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocketPolicyViolation {
		t.Fatalf("idle session's socket: %v, want close %d", err, websocketPolicyViolation)
	}
}

func TestAdminConsoleAndAccountPageAreMountedOnEveryRoutedHost(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, signInConfig)
	c, _ := signIn(t, m)
	resp, _ := get(t, c, "https://app.example.com/_moat/account", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("account page for a signed-in user: %d, want 200", resp.StatusCode)
	}
	resp, _ = get(t, c, "https://app.example.com/_moat/admin/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("admin console for a user outside moat-admins: %d, want 403", resp.StatusCode)
	}
	resp, _ = get(t, m.client(), "https://dash.example.com/_moat/admin/api/users")
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
		t.Errorf("admin API without credentials: %d, want 401 or 403", resp.StatusCode)
	}
}

func TestRouteThatRequiresASecondFactorDoesNotOpenOnAPasswordAlone(t *testing.T) {
	cfg := signInConfig + `  - {host: app.example.com, path_prefix: /partner/, backend: app, login: [password], allow: ["group:staff"], mfa: required}
`
	m := startMoat(t, echoBackend(t).URL, cfg)
	c, _ := signIn(t, m)
	if resp, _ := get(t, c, "https://app.example.com/open"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the same sign-in on a route without mfa: %d, want 200", resp.StatusCode)
	}
	resp, _ := get(t, c, "https://app.example.com/partner/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/_moat/account/mfa") {
		t.Fatalf("mfa route on a password alone: %d %q, want a redirect to enrol a second factor", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = get(t, c, "https://app.example.com/partner/api", "Sec-Fetch-Mode", "cors")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a script on the mfa route with a password alone: %d, want 403", resp.StatusCode)
	}
}

// Issue 11: a reload rebuilt sign-in and so forgot the failed passwords
// counted against an account; they belong to the process (and the store)
// now.
func TestReloadKeepsTheFailedSignInsCountedAgainstAnAccount(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, signInConfig)
	_, u := signIn(t, m)
	c := m.client()
	c.Jar, _ = cookiejar.New(nil)
	try := func(pw string) int {
		_, page := get(t, c, "https://app.example.com/_moat/login?return_to=/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
		token := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
		if token == nil {
			t.Fatalf("login page has no CSRF token:\n%s", page)
		}
		form := url.Values{"csrf": {token[1]}, "email": {u.Email}, "password": {pw}, "return_to": {"/"}}
		req, _ := http.NewRequest(http.MethodPost, "https://app.example.com/_moat/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://app.example.com")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// The client's budget at the account alone: four tries.
	lim := m.server.identity.Throttle.Limits[throttle.Password]
	lim.Pair.N, lim.Account.Free = 4, 100
	m.server.identity.Throttle.Limits[throttle.Password] = lim
	for range lim.Pair.N {
		try("not the password at all")
	}
	before := m.server.world.Load()
	if err := m.server.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	if m.server.world.Load() == before || m.server.world.Load().auth == before.auth {
		t.Fatal("the reload did not build a new world")
	}
	if got := try(testPassword); got != http.StatusTooManyRequests {
		t.Fatalf("right after a reload the right password answered %d, want 429: the failures were forgotten", got)
	}
}

// Issue 12 #6: a WebSocket opened with a personal access token on a
// bearer: true route was closed within seconds as "session ended" (the
// socket check looked for a browser session). It lives while the token
// does, and a revocation through this instance (issue 12 #11) closes it at
// once.
func TestAWebSocketOpenedWithAPersonalAccessTokenLivesUntilTheTokenIsRevoked(t *testing.T) {
	old := socketCheckInterval
	socketCheckInterval = 100 * time.Millisecond
	t.Cleanup(func() { socketCheckInterval = old })
	m := startMoat(t, wsEchoBackend(t).URL, baseConfig+`  - {host: api.example.com, backend: app, login: [password], allow: ["group:staff"], bearer: true}
`)
	ctx := context.Background()
	u := &store.User{Email: "robot@example.com", Groups: []string{"staff"}}
	if err := m.server.store.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	raw, hash := pat.New()
	tok := &store.Token{Hash: hash, UserID: u.ID, Name: "ci"}
	if err := m.server.store.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	hc := m.client()
	hc.Timeout = 0
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, "wss://api.example.com/stream", &websocket.DialOptions{HTTPClient: hc,
		HTTPHeader: http.Header{"Authorization": {"Bearer " + raw}}})
	if err != nil {
		t.Fatalf("dial with a personal access token: %v", err)
	}
	defer ws.CloseNow()
	// Many socket checks later, the socket still works.
	for range 20 {
		echo(t, ws, "still here")
		time.Sleep(50 * time.Millisecond)
	}
	revokedAt := time.Now()
	if err := m.server.store.RevokeToken(ctx, tok.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	m.server.identity.Ended(directory.Ended{Tokens: []string{tok.Hash}})
	readCtx, cancelRead := context.WithTimeout(ctx, 5*time.Second)
	defer cancelRead()
	_, _, err = ws.Read(readCtx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocketPolicyViolation {
		t.Fatalf("after the revocation: %v, want close %d", err, websocketPolicyViolation)
	}
	t.Logf("closed %s after the revocation", time.Since(revokedAt).Round(time.Millisecond))
}
