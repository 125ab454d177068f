package auth

import (
	"context"
	"encoding/json"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/identity/session"
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
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
)

// Test users; every password meets the 12-character policy.
const (
	alicePassword = "correct horse battery staple"
	bobPassword   = "tr0ub4dor&3-and-more"
)

// harness is a moat front door in miniature on a real TLS socket: Handler
// at /_moat/, and Identify + Require + SetIdentity around a backend that
// echoes the identity headers it receives, for three routes:
//
//	/app/    allow group:staff, user:bob@other.org
//	/corp/   allow domain:example.com
//	/public/ public
type harness struct {
	t      testing.TB
	cfg    *config.Config
	store  store.Store
	svc    *Service
	srv    *httptest.Server
	routes map[string]*config.Route
	// counted counts the session and user reads sign-in makes of the store.
	counted *countingStore
}

func newHarness(t testing.TB, tweak func(*config.Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{DataDir: dir}
	cfg.Identity.Session = config.Session{MaxAge: config.Duration(12 * time.Hour), IdleTimeout: config.Duration(time.Hour)}
	cfg.Identity.Passwords.MinLength = 12
	cfg.Routes = []*config.Route{
		{Host: "127.0.0.1", PathPrefix: "/app/", Backend: "b", Title: "Sales dashboard", Login: []string{"password"}, Allow: config.Members("group:staff", "user:bob@other.org")},
		{Host: "127.0.0.1", PathPrefix: "/corp/", Backend: "b", Login: []string{"password"}, Allow: config.Members("domain:example.com")},
		{Host: "127.0.0.1", PathPrefix: "/public/", Backend: "b", Public: true},
	}
	if tweak != nil {
		tweak(cfg)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "moat.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	counted := &countingStore{Store: st}
	svc := newTestService(t, cfg, counted)
	h := &harness{t: t, cfg: cfg, store: st, svc: svc, routes: map[string]*config.Route{}, counted: counted}
	mux := http.NewServeMux()
	mux.Handle("/_moat/", svc.Identify(svc.Handler()))
	for _, rt := range cfg.Routes {
		h.routes[rt.PathPrefix] = rt
		mux.Handle(rt.PathPrefix, withRoute(rt, svc.Identify(svc.Require(rt, h.backend()))))
	}
	h.srv = httptest.NewTLSServer(withInfo(mux))
	t.Cleanup(h.srv.Close)
	return h
}

// newTestService builds a Process on st with the instance key of
// cfg.DataDir, and the Service for cfg on it, as the server does.
func newTestService(t testing.TB, cfg *config.Config, st store.Store) *Service {
	t.Helper()
	ik, err := InstanceKey(context.Background(), cfg, st)
	if err != nil {
		t.Fatalf("instance key: %v", err)
	}
	proc, err := NewProcess(st, ik, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("auth.NewProcess: %v", err)
	}
	svc, err := New(cfg, proc)
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}
	return svc
}

// withInfo does what the server's front stage does: a request.Info with
// the client's address.
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

// backend plays the proxy and the app: it builds the outgoing request,
// lets SetIdentity fill it, and answers with the headers the app would see.
func (h *harness) backend() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := r.Clone(r.Context())
		for k := range out.Header {
			if strings.HasPrefix(strings.ToLower(k), "x-moat") {
				out.Header.Del(k)
			}
		}
		h.svc.SetIdentity(out, r)
		got := map[string]string{}
		for _, k := range []string{assertion.HeaderUserEmail, assertion.HeaderUserID, assertion.HeaderUserGroups, assertion.HeaderAssertion} {
			got[k] = out.Header.Get(k)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(got)
	})
}

// addUser creates a user in the directory.
func (h *harness) addUser(email, pw string, groups []string, mustChange bool) *store.User {
	h.t.Helper()
	hash, err := h.svc.hasher.hash(context.Background(), pw)
	if err != nil {
		h.t.Fatal(err)
	}
	u := &store.User{Email: email, Name: strings.Split(email, "@")[0], Groups: groups, PasswordHash: hash, MustChangePassword: mustChange}
	if err := h.store.CreateUser(context.Background(), u); err != nil {
		h.t.Fatal(err)
	}
	return u
}

// browser returns a client with its own cookie jar that does not follow
// redirects, so tests see each one.
func (h *harness) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := h.srv.Client()
	return &http.Client{
		Transport:     c.Transport,
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
}

// nav is a page navigation as a browser sends it.
func (h *harness) nav(c *http.Client, method, path string, form url.Values) *http.Response {
	h.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, h.srv.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Accept", "text/html")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// fetch is a script's call (fetch/XHR).
func (h *harness) fetch(c *http.Client, path string) *http.Response {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.srv.URL+path, nil)
	req.Header.Set("Sec-Fetch-Mode", "cors")
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

var csrfPattern = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf opens a page with a form and returns its CSRF token.
func (h *harness) csrf(c *http.Client, path string) string {
	h.t.Helper()
	resp := h.nav(c, "GET", path, nil)
	m := csrfPattern.FindStringSubmatch(readBody(h.t, resp))
	if m == nil {
		h.t.Fatalf("GET %s (%d): no CSRF token in the page", path, resp.StatusCode)
	}
	return m[1]
}

// login signs c in through the form and returns the POST's response.
func (h *harness) login(c *http.Client, email, pw, returnTo string) *http.Response {
	h.t.Helper()
	tok := h.csrf(c, "/_moat/login?return_to="+url.QueryEscape(returnTo))
	return h.nav(c, "POST", "/_moat/login", url.Values{"csrf": {tok}, "email": {email}, "password": {pw}, "return_to": {returnTo}})
}

// identity reads what the app saw on path.
func (h *harness) identity(c *http.Client, path string) (int, map[string]string) {
	h.t.Helper()
	resp := h.fetch(c, path)
	body := readBody(h.t, resp)
	got := map[string]string{}
	if resp.StatusCode == 200 {
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			h.t.Fatalf("backend answer %q: %v", body, err)
		}
	}
	return resp.StatusCode, got
}

func (h *harness) sessionCookie(c *http.Client) string {
	u, _ := url.Parse(h.srv.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == session.Cookie {
			return ck.Value
		}
	}
	return ""
}

func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantStatus(t *testing.T, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want)
	}
}

func wantRedirect(t *testing.T, resp *http.Response, location string) {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("%s %s: status %d, want 303 to %s", resp.Request.Method, resp.Request.URL, resp.StatusCode, location)
	}
	if got := resp.Header.Get("Location"); got != location {
		t.Fatalf("%s %s: redirect to %q, want %q", resp.Request.Method, resp.Request.URL, got, location)
	}
}

func storeFilter(action string) store.AuditFilter { return store.AuditFilter{Action: action} }
