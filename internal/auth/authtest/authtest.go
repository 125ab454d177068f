// Package authtest is a moat front door in miniature for the tests of the
// sign-in (internal/auth and its pages, internal/identity/login): the
// Service's Handler at /_moat/, and Identify, Require and SetIdentity
// around an app that reports the identity it receives, on a real TLS
// socket over a real store, with browsers that keep their cookies and show
// every redirect. Reload and Restart swap what serves, as the server does.
package authtest

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/auth/oidc/oidctest"
	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/device"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// Passwords of the test users; each meets the 12-character policy.
const (
	AlicePassword = "correct horse battery staple"
	BobPassword   = "tr0ub4dor&3-and-more"
	// SSOPassword is every oidctest.Users() password at the provider.
	SSOPassword = "correct horse battery"
)

// Harness is moat's sign-in on a real TLS socket. New serves three routes
// on host 127.0.0.1:
//
//	/app/    allow group:staff, user:bob@other.org
//	/corp/   allow domain:example.com
//	/public/ public
//
// NewSSO serves four that sign in with a real OpenID Provider (oidctest)
// named "test".
type Harness struct {
	T   testing.TB
	Cfg *config.Config
	// Store is the store; Counted wraps it and counts the session and user
	// reads the sign-in makes.
	Store   store.Store
	Counted *CountingStore
	// Proc is the process state; Svc is the configuration's Service that
	// serves now (Reload and Restart replace it).
	Proc   *auth.Process
	Svc    *auth.Service
	Srv    *httptest.Server
	Routes map[string]*config.Route
	// OP is the provider of NewSSO.
	OP *oidctest.Provider

	front   atomic.Pointer[http.Handler]
	mu      sync.Mutex
	revoked []string
}

// New starts a harness with the password routes; tweak may change the
// configuration first.
func New(t testing.TB, tweak func(*config.Config)) *Harness {
	t.Helper()
	cfg := &config.Config{DataDir: t.TempDir()}
	cfg.Routes = []*config.Route{
		{Host: "127.0.0.1", PathPrefix: "/app/", Backend: "b", Title: "Sales dashboard", Login: []string{"password"}, Allow: config.Members("group:staff", "user:bob@other.org")},
		{Host: "127.0.0.1", PathPrefix: "/corp/", Backend: "b", Login: []string{"password"}, Allow: config.Members("domain:example.com")},
		{Host: "127.0.0.1", PathPrefix: "/public/", Backend: "b", Public: true},
	}
	return start(t, cfg, tweak)
}

// NewSSO starts a harness whose routes sign in with a real OpenID
// Provider named "test":
//
//	/sso/  allow domain:example.com
//	/grp/  allow group:customer-a, group:moat-ops (moat's own group)
//	/usr/  allow user:bob@example.com (password or SSO)
//	/api/  allow domain:example.com, bearer: true
//
// Every session the process revokes is recorded (Revoked).
func NewSSO(t testing.TB, tweak func(*config.Config)) *Harness {
	t.Helper()
	op := oidctest.Start(t)
	cfg := &config.Config{DataDir: t.TempDir()}
	cfg.Identity.SSO = map[string]*config.SSOProvider{"test": op.Config()}
	cfg.Routes = []*config.Route{
		{Host: "127.0.0.1", PathPrefix: "/sso/", Backend: "b", Login: []string{"test"}, Allow: config.Members("domain:example.com")},
		{Host: "127.0.0.1", PathPrefix: "/grp/", Backend: "b", Login: []string{"test"}, Allow: config.Members("group:customer-a", "group:moat-ops")},
		{Host: "127.0.0.1", PathPrefix: "/usr/", Backend: "b", Login: []string{"test", "password"}, Allow: config.Members("user:bob@example.com")},
		{Host: "127.0.0.1", PathPrefix: "/api/", Backend: "b", Login: []string{"test"}, Bearer: true, Allow: config.Members("domain:example.com")},
	}
	h := start(t, cfg, tweak)
	h.OP = op
	h.Proc.OnRevoke = func(hash string) {
		h.mu.Lock()
		h.revoked = append(h.revoked, hash)
		h.mu.Unlock()
	}
	return h
}

func start(t testing.TB, cfg *config.Config, tweak func(*config.Config)) *Harness {
	t.Helper()
	cfg.Identity.Session = config.Session{MaxAge: config.Duration(12 * time.Hour), IdleTimeout: config.Duration(time.Hour)}
	cfg.Identity.Passwords.MinLength = 12
	if tweak != nil {
		tweak(cfg)
	}
	st, err := store.Open(context.Background(), filepath.Join(cfg.DataDir, "moat.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	h := &Harness{T: t, Cfg: cfg, Store: st, Counted: &CountingStore{Store: st}, Routes: map[string]*config.Route{}}
	for _, rt := range cfg.Routes {
		h.Routes[rt.PathPrefix] = rt
	}
	h.Proc = NewProcess(t, cfg, h.Counted)
	h.serve(cfg)
	h.Srv = httptest.NewTLSServer(withInfo(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*h.front.Load()).ServeHTTP(w, r)
	})))
	t.Cleanup(h.Srv.Close)
	return h
}

// NewProcess builds a Process on st with the instance key of cfg.DataDir,
// as the server does once per moat process.
func NewProcess(t testing.TB, cfg *config.Config, st store.Store) *auth.Process {
	t.Helper()
	ik, err := auth.InstanceKey(context.Background(), cfg, st)
	if err != nil {
		t.Fatalf("instance key: %v", err)
	}
	proc, err := auth.NewProcess(st, ik, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("auth.NewProcess: %v", err)
	}
	return proc
}

// serve builds the Service of cfg on h.Proc and serves h's routes from
// it: the sign-in pages at /_moat/, and each route behind Identify and
// Require.
func (h *Harness) serve(cfg *config.Config) {
	h.T.Helper()
	svc, err := auth.New(cfg, h.Proc)
	if err != nil {
		h.T.Fatalf("auth.New: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/_moat/", svc.Identify(svc.Handler()))
	for _, rt := range cfg.Routes {
		mux.Handle(rt.PathPrefix, withRoute(rt, svc.Identify(svc.Require(rt, app(svc)))))
	}
	var front http.Handler = mux
	h.Svc = svc
	h.front.Store(&front)
}

// Reload serves a new configuration on the same process, as the server
// does on SIGHUP: a copy of h.Cfg that tweak may change.
func (h *Harness) Reload(tweak func(*config.Config)) {
	h.T.Helper()
	next := *h.Cfg
	if tweak != nil {
		tweak(&next)
	}
	h.serve(&next)
}

// Restart serves h's configuration from a new process on the same store
// and instance key, as a moat restarted (or another instance) would.
func (h *Harness) Restart() {
	h.T.Helper()
	h.Proc = NewProcess(h.T, h.Cfg, h.Counted)
	h.serve(h.Cfg)
}

// Revoked returns the sessions the process revoked (NewSSO).
func (h *Harness) Revoked() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.revoked...)
}

// withInfo does what the server's front stage does: a request.Info with
// the client's address, or X-Test-Client-IP's (as the server reads a
// trusted proxy's X-Forwarded-For).
func withInfo(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := &request.Info{ID: request.NewID(), Start: time.Now(), Scheme: "https"}
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			info.ClientIP, _ = netip.ParseAddr(host)
		}
		if ip := r.Header.Get("X-Test-Client-IP"); ip != "" {
			info.ClientIP = netip.MustParseAddr(ip)
		}
		next.ServeHTTP(w, request.With(r, info))
	})
}

func withRoute(rt *config.Route, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		request.From(r).Route = rt
		next.ServeHTTP(w, r)
	})
}

// app plays the proxy and the app: it builds the outgoing request, lets
// SetIdentity fill it, and answers with the X-Moat-*, X-Goog-* and
// Authorization headers the app would see (JSON), or, to a browser's page
// navigation, a dashboard saying who is signed in.
func app(svc *auth.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := r.Clone(r.Context())
		for k := range out.Header {
			if l := strings.ToLower(k); strings.HasPrefix(l, "x-moat") || strings.HasPrefix(l, "x-goog") {
				out.Header.Del(k)
			}
		}
		svc.SetIdentity(out, r)
		if web.WantsHTML(r) {
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

// AddUser creates a password user in the directory.
func (h *Harness) AddUser(email, pw string, groups []string, mustChange bool) *store.User {
	h.T.Helper()
	hash, err := password.Hash(pw, password.DefaultParams)
	if err != nil {
		h.T.Fatal(err)
	}
	u := &store.User{Email: email, Name: strings.Split(email, "@")[0], Groups: groups, PasswordHash: hash, MustChangePassword: mustChange}
	if err := h.Store.CreateUser(context.Background(), u); err != nil {
		h.T.Fatal(err)
	}
	return u
}

// Browser returns a client with its own cookie jar that does not follow
// redirects, so tests see each one.
func (h *Harness) Browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Transport:     h.Srv.Client().Transport,
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
}

// Nav is a page navigation as a browser sends it (a POST of form when
// form is not nil).
func (h *Harness) Nav(c *http.Client, method, path string, form url.Values) *http.Response {
	h.T.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, h.Srv.URL+path, body)
	if err != nil {
		h.T.Fatal(err)
	}
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Accept", "text/html")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		h.T.Fatal(err)
	}
	h.T.Cleanup(func() { resp.Body.Close() })
	return resp
}

// Fetch is a script's call (fetch/XHR).
func (h *Harness) Fetch(c *http.Client, path string) *http.Response {
	h.T.Helper()
	req, _ := http.NewRequest("GET", h.Srv.URL+path, nil)
	req.Header.Set("Sec-Fetch-Mode", "cors")
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		h.T.Fatal(err)
	}
	h.T.Cleanup(func() { resp.Body.Close() })
	return resp
}

// CSRFPattern finds the CSRF token of a page's form.
var CSRFPattern = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// CSRF opens a page with a form and returns its CSRF token.
func (h *Harness) CSRF(c *http.Client, path string) string {
	h.T.Helper()
	resp := h.Nav(c, "GET", path, nil)
	m := CSRFPattern.FindStringSubmatch(ReadBody(h.T, resp))
	if m == nil {
		h.T.Fatalf("GET %s (%d): no CSRF token in the page", path, resp.StatusCode)
	}
	return m[1]
}

// Login signs c in through the form and returns the POST's response.
func (h *Harness) Login(c *http.Client, email, pw, returnTo string) *http.Response {
	h.T.Helper()
	tok := h.CSRF(c, "/_moat/login?return_to="+url.QueryEscape(returnTo))
	return h.Nav(c, "POST", "/_moat/login", url.Values{"csrf": {tok}, "email": {email}, "password": {pw}, "return_to": {returnTo}})
}

// Identity reads what the app saw on path, as a script's call.
func (h *Harness) Identity(c *http.Client, path string) (int, map[string]string) {
	h.T.Helper()
	resp := h.Fetch(c, path)
	body := ReadBody(h.T, resp)
	got := map[string]string{}
	if resp.StatusCode == 200 {
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			h.T.Fatalf("backend answer %q: %v", body, err)
		}
	}
	return resp.StatusCode, got
}

// Cookie returns the value of c's cookie name, or "".
func (h *Harness) Cookie(c *http.Client, name string) string {
	u, _ := url.Parse(h.Srv.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// SessionCookie returns c's session cookie, or "".
func (h *Harness) SessionCookie(c *http.Client) string { return h.Cookie(c, session.Cookie) }

// HasDeviceCookie reports whether c holds a device cookie.
func (h *Harness) HasDeviceCookie(c *http.Client) bool { return h.Cookie(c, device.Cookie) != "" }

// ForgetSession drops c's session cookie, as a browser does when the
// session ends, keeping every other cookie (the device cookie).
func (h *Harness) ForgetSession(c *http.Client) {
	u, _ := url.Parse(h.Srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: session.Cookie, Value: "", Path: "/", MaxAge: -1}})
}

// Throttled sets the password limits l and answers refusals without the
// hold.
func (h *Harness) Throttled(l throttle.Limits) {
	h.Proc.Throttle.Limits[throttle.Password] = l
	h.Proc.Hold.Max = 0
}

// QuickLimits are password limits a test runs through in well under a
// second: 3 tries per client at an account, a slow-down of 0.2–0.4 s past
// 3 failures, and a lock only from 50 failures of 10 clients.
func QuickLimits() throttle.Limits {
	return throttle.Limits{
		Client:  throttle.Budget{N: 100, Window: time.Minute},
		Pair:    throttle.Budget{N: 3, Window: time.Minute},
		Device:  throttle.Budget{N: 3, Window: time.Minute},
		Account: throttle.SlowDown{Free: 3, Base: 200 * time.Millisecond, Max: 400 * time.Millisecond, Window: time.Minute},
		Lock:    throttle.Lock{Failures: 50, Clients: 10, For: time.Hour},
	}
}

// FromAddress makes every request of c come from ip (the harness's front
// stage reads X-Test-Client-IP as the server's reads a trusted proxy's
// X-Forwarded-For).
func FromAddress(c *http.Client, ip string) *http.Client {
	c.Transport = addressed{next: c.Transport, ip: ip}
	return c
}

type addressed struct {
	next http.RoundTripper
	ip   string
}

func (a addressed) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Test-Client-IP", a.ip)
	return a.next.RoundTrip(r)
}

// ToProvider opens path in browser c and follows moat's redirects to the
// provider (NewSSO), returning the provider's authorization URL.
func (h *Harness) ToProvider(c *http.Client, path string) string {
	h.T.Helper()
	loc := Location(h.T, h.Nav(c, "GET", path, nil))
	if !strings.HasPrefix(loc, "/_moat/login?") {
		h.T.Fatalf("%s redirected to %s, want the login page", path, loc)
	}
	loc = Location(h.T, h.Nav(c, "GET", loc, nil))
	if !strings.HasPrefix(loc, "/_moat/sso/test/start?") {
		h.T.Fatalf("login page redirected to %s, want straight to the provider's start", loc)
	}
	loc = Location(h.T, h.Nav(c, "GET", loc, nil))
	if !strings.HasPrefix(loc, h.OP.Issuer+"/") {
		h.T.Fatalf("start redirected to %s, want the provider at %s", loc, h.OP.Issuer)
	}
	return loc
}

// Callback signs in at the provider as email from path in browser c and
// returns where the provider sends the browser back (moat's callback).
func (h *Harness) Callback(c *http.Client, path, email string) *url.URL {
	h.T.Helper()
	cb, err := h.OP.Login(context.Background(), h.ToProvider(c, path), email, SSOPassword)
	if err != nil {
		h.T.Fatalf("sign in at the provider as %s: %v", email, err)
	}
	return cb
}

// SSOSignIn signs c in at the provider as email from path and returns
// moat's answer to the callback.
func (h *Harness) SSOSignIn(c *http.Client, path, email string) *http.Response {
	h.T.Helper()
	return h.Nav(c, "GET", h.Callback(c, path, email).RequestURI(), nil)
}

// Location is where a redirect leads.
func Location(t testing.TB, resp *http.Response) string {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound {
		t.Fatalf("%s %s: status %d, want a redirect", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// ReadBody reads up to 1 MiB of resp's body.
func ReadBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// WantStatus fails t unless resp has the status want.
func WantStatus(t testing.TB, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want)
	}
}

// WantRedirect fails t unless resp is a 303 to location.
func WantRedirect(t testing.TB, resp *http.Response, location string) {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("%s %s: status %d, want 303 to %s", resp.Request.Method, resp.Request.URL, resp.StatusCode, location)
	}
	if got := resp.Header.Get("Location"); got != location {
		t.Fatalf("%s %s: redirect to %q, want %q", resp.Request.Method, resp.Request.URL, got, location)
	}
}

// RetryAfter reads a 429's Retry-After.
func RetryAfter(t testing.TB, resp *http.Response) time.Duration {
	t.Helper()
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || secs <= 0 {
		t.Fatalf("429 with Retry-After %q", resp.Header.Get("Retry-After"))
	}
	return time.Duration(secs) * time.Second
}

// CountingStore counts the session and user reads that reach the store.
type CountingStore struct {
	store.Store
	Sessions, Users atomic.Int64
}

// GetSession counts and reads.
func (c *CountingStore) GetSession(ctx context.Context, hash string) (*store.Session, error) {
	c.Sessions.Add(1)
	return c.Store.GetSession(ctx, hash)
}

// GetUser counts and reads.
func (c *CountingStore) GetUser(ctx context.Context, id string) (*store.User, error) {
	c.Users.Add(1)
	return c.Store.GetUser(ctx, id)
}
