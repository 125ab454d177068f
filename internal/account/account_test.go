package account

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/moat-dev/moat/internal/auth/pat"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/moat-dev/moat/internal/admin"
	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

const (
	pw      = "correct horse battery staple"
	email   = "alice@example.com"
	newPass = "a much better passphrase 42"
)

type harness struct {
	t       *testing.T
	cfg     *config.Config
	svc     *auth.Service
	proc    *auth.Process
	dash    *dashboard
	st      store.Store
	acct    *Account
	srv     *httptest.Server
	user    *store.User
	adminTk string

	mu      sync.Mutex
	changed []string
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t, nil) }

// newHarnessWith is moat's /_moat/ pages (sign-in, account, admin) and a
// dashboard at /app/ behind the sign-in, on a real TLS socket; tweak may
// change the configuration first.
func newHarnessWith(t *testing.T, tweak func(*config.Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{DataDir: dir}
	cfg.Identity.Session = config.Session{MaxAge: config.Duration(12 * time.Hour), IdleTimeout: config.Duration(time.Hour)}
	cfg.Identity.Passwords.MinLength = 12
	cfg.Identity.AdminGroup = "moat-admins"
	cfg.Identity.AdminReauth = config.Duration(15 * time.Minute)
	cfg.Routes = []*config.Route{{Host: "127.0.0.1", PathPrefix: "/app/", Backend: "b", Title: "Sales dashboard", Login: []string{"password"}, Allow: config.Members("domain:example.com")}}
	if tweak != nil {
		tweak(cfg)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ik, err := auth.InstanceKey(context.Background(), cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	proc, err := auth.NewProcess(st, ik, quiet)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := auth.New(cfg, proc)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, cfg: cfg, svc: svc, proc: proc, st: st, dash: newDashboard()}
	proc.OnRevoke = h.dash.cut
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = proc.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	h.acct, err = New(cfg, st, Options{CSRF: proc.CSRF, Limiter: proc.Limiter, Logger: quiet, MFA: proc.MFA, Passkeys: proc.Passkeys, Ended: proc.Ended, SessionChanged: func(hash string) {
		h.mu.Lock()
		h.changed = append(h.changed, hash)
		h.mu.Unlock()
		proc.ReloadSession(hash)
	}})
	if err != nil {
		t.Fatal(err)
	}
	console, err := admin.New(cfg, st, admin.Options{CSRF: proc.CSRF, Limiter: proc.Limiter, Logger: quiet, MFA: proc.MFA, Throttle: proc.Throttle, TokenUser: proc.TokenUser, Ended: proc.Ended})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/_moat/", svc.Identify(svc.Handler()))
	mux.Handle(web.StaticPrefix, web.Static())
	mux.Handle(Prefix, svc.Identify(h.acct))
	mux.Handle(Prefix+"/", svc.Identify(h.acct))
	mux.Handle(admin.Prefix, svc.Identify(console))
	mux.Handle("/app/", svc.Identify(svc.Require(cfg.Routes[0], h.dash)))
	h.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := &request.Info{ID: request.NewID(), Start: time.Now(), Scheme: "https"}
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			info.ClientIP, _ = netip.ParseAddr(host)
		}
		mux.ServeHTTP(w, request.With(r, info))
	}))
	t.Cleanup(h.srv.Close)
	h.user = h.addUser(email, nil)
	root := h.addUser("root@example.com", []string{"moat-admins"})
	h.adminTk = "moat_pat_" + strings.Repeat("a", 43)
	if err := st.CreateToken(context.Background(), &store.Token{Hash: pat.Hash(h.adminTk), UserID: root.ID, Name: "t"}); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) addUser(e string, groups []string) *store.User {
	hash, err := password.Hash(pw, password.DefaultParams)
	if err != nil {
		h.t.Fatal(err)
	}
	u := &store.User{Email: e, Groups: groups, PasswordHash: hash}
	if err := h.st.CreateUser(context.Background(), u); err != nil {
		h.t.Fatal(err)
	}
	return u
}

func (h *harness) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Transport: h.srv.Client().Transport, Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (h *harness) do(c *http.Client, method, path string, form url.Values) (*http.Response, string) {
	h.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, h.srv.URL+path, body)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Accept", "text/html")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (h *harness) csrf(c *http.Client, path string) string {
	h.t.Helper()
	resp, body := h.do(c, "GET", path, nil)
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		h.t.Fatalf("GET %s (%d): no csrf", path, resp.StatusCode)
	}
	return m[1]
}

func (h *harness) login(e, p string) *http.Client {
	h.t.Helper()
	c := h.browser()
	tok := h.csrf(c, "/_moat/login")
	resp, _ := h.do(c, "POST", "/_moat/login", url.Values{"csrf": {tok}, "email": {e}, "password": {p}, "return_to": {"/"}})
	if resp.StatusCode != http.StatusSeeOther {
		h.t.Fatalf("login %s: %d", e, resp.StatusCode)
	}
	return c
}

var secretRE = regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`)
var codeRE = regexp.MustCompile(`<li><code>([a-z0-9-]+)</code></li>`)

func code(t *testing.T, secret string, at time.Time) string {
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func want(t *testing.T, resp *http.Response, body string, status int, contains ...string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: %d, want %d: %.300s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, body)
	}
	for _, s := range contains {
		if !strings.Contains(body, s) {
			t.Fatalf("%s %s: page lacks %q", resp.Request.Method, resp.Request.URL.Path, s)
		}
	}
}

// enrol runs the enrolment on the account page and returns the secret and
// recovery codes.
func (h *harness) enrol(c *http.Client) (string, []string) {
	t := h.t
	t.Helper()
	resp, body := h.do(c, "GET", "/_moat/account/mfa", nil)
	want(t, resp, body, 200, `src="data:image/png;base64,`, "totp-secret")
	secret := secretRE.FindStringSubmatch(body)[1]
	tok := csrfRE.FindStringSubmatch(body)[1]
	resp, body = h.do(c, "POST", "/_moat/account/mfa", url.Values{"csrf": {tok}, "code": {"12345x"}, "return_to": {"/_moat/account"}})
	want(t, resp, body, http.StatusBadRequest, "not valid", secret)
	resp, body = h.do(c, "POST", "/_moat/account/mfa", url.Values{"csrf": {tok}, "code": {code(t, secret, time.Now())}, "return_to": {"/_moat/account"}})
	want(t, resp, body, 200, "recovery-codes")
	var codes []string
	for _, m := range codeRE.FindAllStringSubmatch(body, -1) {
		codes = append(codes, m[1])
	}
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes shown, want 10", len(codes))
	}
	return secret, codes
}

func TestTheAccountPageNeedsASignIn(t *testing.T) {
	h := newHarness(t)
	resp, _ := h.do(h.browser(), "GET", "/_moat/account", nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/_moat/login?return_to=") {
		t.Fatalf("%d to %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestEnrolVerifyRegenerateAndRemoveTwoFactor(t *testing.T) {
	h := newHarness(t)
	c := h.login(email, pw)
	c2 := h.login(email, pw) // signed in before the enrolment
	resp, body := h.do(c, "GET", "/_moat/account", nil)
	want(t, resp, body, 200, "Two-factor sign-in is off", "this session")
	secret, codes := h.enrol(c)
	list, _ := h.st.ListSessions(context.Background(), h.user.ID)
	marked := 0
	for _, s := range list {
		if s.MFA {
			marked++
		}
	}
	if len(list) != 2 || marked != 1 || len(h.changed) != 1 {
		t.Fatalf("the enrolling session was not marked as past the second factor: %+v, changed %v", list, h.changed)
	}
	resp, body = h.do(c, "GET", "/_moat/account", nil)
	want(t, resp, body, 200, "Two-factor sign-in is on. 10 unused")

	// The other browser verifies its session with a recovery code.
	resp, body = h.do(c2, "GET", "/_moat/account/mfa?return_to=/app/", nil)
	want(t, resp, body, 200, "Enter the code your authenticator app shows")
	tok := csrfRE.FindStringSubmatch(body)[1]
	resp, _ = h.do(c2, "POST", "/_moat/account/mfa", url.Values{"csrf": {tok}, "code": {codes[0]}, "return_to": {"/app/"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/app/" {
		t.Fatalf("verify with a recovery code: %d to %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A new sign-in asks for the second factor; the used code fails there.
	c3 := h.browser()
	tok3 := h.csrf(c3, "/_moat/login")
	resp, _ = h.do(c3, "POST", "/_moat/login", url.Values{"csrf": {tok3}, "email": {email}, "password": {pw}, "return_to": {"/app/"}})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/_moat/mfa") {
		t.Fatalf("sign-in of an enrolled user: %d to %s, want the second step", resp.StatusCode, resp.Header.Get("Location"))
	}
	tok3 = h.csrf(c3, "/_moat/mfa")
	resp, body = h.do(c3, "POST", "/_moat/mfa", url.Values{"csrf": {tok3}, "code": {codes[0]}, "return_to": {"/app/"}})
	want(t, resp, body, http.StatusUnauthorized, "not valid")

	// New recovery codes need a current code.
	tok = h.csrf(c, "/_moat/account")
	resp, body = h.do(c, "POST", "/_moat/account/recovery-codes", url.Values{"csrf": {tok}, "code": {"000000"}})
	want(t, resp, body, http.StatusBadRequest, "not valid")
	resp, body = h.do(c, "POST", "/_moat/account/recovery-codes", url.Values{"csrf": {tok}, "code": {codes[1]}})
	want(t, resp, body, 200, "recovery-codes")
	if n := len(codeRE.FindAllStringSubmatch(body, -1)); n != 10 {
		t.Fatalf("%d new codes", n)
	}
	// Removing needs a current code too.
	resp, _ = h.do(c, "POST", "/_moat/account/mfa/remove", url.Values{"csrf": {tok}, "code": {code(t, secret, time.Now().Add(30*time.Second))}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("remove: %d", resp.StatusCode)
	}
	resp, body = h.do(c, "GET", "/_moat/account?done=mfa_removed", nil)
	want(t, resp, body, 200, "Two-factor sign-in is off.")
}

func TestAUserEndsTheirOwnSessionsOnly(t *testing.T) {
	h := newHarness(t)
	c := h.login(email, pw)
	h.login(email, pw)
	other := h.addUser("bob@example.com", nil)
	h.login(other.Email, pw)
	ctx := context.Background()
	mine, _ := h.st.ListSessions(ctx, h.user.ID)
	theirs, _ := h.st.ListSessions(ctx, other.ID)
	tok := h.csrf(c, "/_moat/account")
	resp, _ := h.do(c, "POST", "/_moat/account/sessions/"+theirs[0].IDHash+"/revoke", url.Values{"csrf": {tok}})
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("revoking another user's session: %d, want 404", resp.StatusCode)
	}
	newest := mine[0].IDHash
	resp, _ = h.do(c, "POST", "/_moat/account/sessions/"+newest+"/revoke", url.Values{"csrf": {tok}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke own: %d", resp.StatusCode)
	}
	if left, _ := h.st.ListSessions(ctx, h.user.ID); len(left) != 1 {
		t.Fatalf("%d sessions left, want 1", len(left))
	}
	if left, _ := h.st.ListSessions(ctx, other.ID); len(left) != 1 {
		t.Fatal("another user's session was ended")
	}
	// Without the CSRF token nothing happens.
	resp, _ = h.do(c, "POST", "/_moat/account/sessions/"+newest+"/revoke", url.Values{})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("no csrf: %d", resp.StatusCode)
	}
}

func TestASetPasswordLinkWorksOnce(t *testing.T) {
	h := newHarness(t)
	old := h.login(email, pw)
	req, _ := http.NewRequest("POST", h.srv.URL+admin.APIPrefix+"users/"+h.user.ID+"/reset-password", bytes.NewReader([]byte(`{"mode":"link"}`)))
	req.Header.Set("Authorization", "Bearer "+h.adminTk)
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Credential struct {
			Link string `json:"set_password_url"`
		} `json:"credential"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	u, _ := url.Parse(out.Credential.Link)
	if u == nil || !strings.HasPrefix(u.Path, "/_moat/account/set-password/") {
		t.Fatalf("link %q", out.Credential.Link)
	}
	c := h.browser()
	resp2, body := h.do(c, "GET", u.Path, nil)
	want(t, resp2, body, 200, "Choose a password for "+email)
	tok := csrfRE.FindStringSubmatch(body)[1]
	resp2, body = h.do(c, "POST", u.Path, url.Values{"csrf": {tok}, "new": {newPass}, "confirm": {newPass + "x"}})
	want(t, resp2, body, http.StatusBadRequest, "differ")
	resp2, body = h.do(c, "POST", u.Path, url.Values{"csrf": {tok}, "new": {"password1234"}, "confirm": {"password1234"}})
	want(t, resp2, body, http.StatusBadRequest, "commonly used passwords") // the password page's message
	resp2, _ = h.do(c, "POST", u.Path, url.Values{"csrf": {tok}, "new": {newPass}, "confirm": {newPass}})
	if resp2.StatusCode != http.StatusSeeOther {
		t.Fatalf("set password: %d", resp2.StatusCode)
	}
	resp2, _ = h.do(c, "GET", u.Path, nil)
	if resp2.StatusCode != http.StatusNotFound {
		t.Fatalf("the link after use: %d, want 404", resp2.StatusCode)
	}
	if resp2, _ = h.do(old, "GET", "/_moat/account", nil); resp2.StatusCode != http.StatusSeeOther {
		t.Fatalf("an old session after the reset: %d, want a redirect to sign in", resp2.StatusCode)
	}
	h.login(email, newPass)
	if got, _ := h.st.GetUser(context.Background(), h.user.ID); got.MustChangePassword {
		t.Fatal("a password chosen through the link must not need changing")
	}
}

// Issue 11: the account page had its own safeReturnTo, which kept
// percent-encoded and tab-split forms the sign-in refuses; there is one
// rule now (access.SafeReturnTo).
func TestTheAccountPageAndTheSignInShareOneReturnToRule(t *testing.T) {
	for in, out := range map[string]string{"/app/?x=1": "/app/?x=1", "//evil.example": "/", "https://evil.example/": "/", "/\\evil": "/", "": "/", "app": "/",
		"/%2F%2Fevil.example": "/", "/%5Cevil.example": "/", "/%09/evil.example": "/", "/_moat/login?return_to=//evil": "/"} {
		if got := access.SafeReturnTo(in); got != out {
			t.Errorf("SafeReturnTo(%q) = %q, want %q", in, got, out)
		}
	}
}

// Issue 11: the set-password page checked the policy itself, with an
// untranslated message, and hashed outside the process's hashing limiter
// (a flood of link submissions could take every core). It goes through
// directory.Passwords and web.PasswordRefusal like the password page.
func TestSetPasswordLinkUsesTheHashingLimiterAndTheLocalizedPolicyMessage(t *testing.T) {
	h := newHarness(t)
	link, hash := directory.NewSetPasswordLink()
	if err := h.st.CreateToken(context.Background(), &store.Token{Hash: hash, UserID: h.user.ID, Kind: store.TokenSetPassword,
		ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	path := "/_moat/account/set-password/" + link
	c := h.browser()
	u, _ := url.Parse(h.srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: web.LangCookie, Value: "ja"}})
	tok := h.csrf(c, path)
	resp, body := h.do(c, "POST", path, url.Values{"csrf": {tok}, "new": {"short"}, "confirm": {"short"}})
	if want := web.T("ja", "auth.password.too_short", 12); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, want) {
		t.Fatalf("a short password: %d, want 400 with %q:\n%s", resp.StatusCode, want, body)
	}
	// Every hashing slot taken: the page answers "busy", it does not hash
	// past the bound.
	release := make(chan struct{})
	var held sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		held.Add(1)
		go func() {
			defer held.Done()
			_ = h.proc.Limiter.Do(context.Background(), func() { <-release })
		}()
	}
	for h.proc.Limiter.InUse() < max(1, runtime.GOMAXPROCS(0)/2) {
		runtime.Gosched()
	}
	resp, _ = h.do(c, "POST", path, url.Values{"csrf": {tok}, "new": {newPass}, "confirm": {newPass}})
	close(release)
	held.Wait()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("with every hashing slot taken: %d, want 503", resp.StatusCode)
	}
	if resp, _ = h.do(c, "POST", path, url.Values{"csrf": {tok}, "new": {newPass}, "confirm": {newPass}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("with the slots free again: %d, want 303", resp.StatusCode)
	}
}

// Issue 11: the sign-in, the account page and the console each parsed
// forms and checked CSRF with their own copy (and bounds). There is one
// reader (csrf.Guard.ReadForm) under one guard: a token of one page works
// on the others, and every page refuses the same way (the console reads
// its forms the same way, after its access rule).
func TestEveryPageReadsFormsWithTheOneFormReaderAndCSRFGuard(t *testing.T) {
	h := newHarness(t)
	c := h.login(email, pw)
	tok := h.csrf(c, "/_moat/login?reauth=1") // the sign-in page's token
	if resp, body := h.do(c, "POST", "/_moat/account/tokens", url.Values{"csrf": {tok}, "name": {"ci"}, "days": {"30"}}); resp.StatusCode != http.StatusCreated {
		t.Fatalf("the account page refused the sign-in page's token: %d\n%.300s", resp.StatusCode, body)
	}
	for _, path := range []string{"/_moat/logout", "/_moat/password", "/_moat/account/tokens"} {
		for name, form := range map[string]url.Values{
			"a wrong token":     {"csrf": {"x"}},
			"an oversized form": {"csrf": {tok}, "pad": {strings.Repeat("a", 70<<10)}},
		} {
			resp, body := h.do(c, "POST", path, form)
			want := map[string]int{"a wrong token": http.StatusForbidden, "an oversized form": http.StatusRequestEntityTooLarge}[name]
			if resp.StatusCode != want {
				t.Errorf("POST %s with %s: %d, want %d\n%.200s", path, name, resp.StatusCode, want, body)
			}
		}
	}
}
