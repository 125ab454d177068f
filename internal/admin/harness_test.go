package admin

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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/csrf"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/store/storetest"
)

const (
	adminEmail    = "root@example.com"
	adminPassword = "correct horse battery staple"
	userEmail     = "carol@example.com"
	userPassword  = "tr0ub4dor&3-and-more"
)

// harness is moat's /_moat/ on a real TLS socket: the sign-in pages of
// internal/auth and the Console behind auth's Identify, as the server
// mounts them.
type harness struct {
	t       *testing.T
	cfg     *config.Config
	st      store.Store
	auth    *auth.Service
	proc    *auth.Process
	console *Console
	srv     *httptest.Server
	admin   *store.User
	user    *store.User

	mu      sync.Mutex
	revoked []string // user ids passed to Revoke
}

type engine struct {
	name string
	open func(t *testing.T, dir string) store.Store
}

var engines = []engine{
	{"sqlite", func(t *testing.T, dir string) store.Store {
		st, err := store.Open(context.Background(), filepath.Join(dir, "moat.db"))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}},
	{"postgres", func(t *testing.T, _ string) store.Store {
		st, err := store.Open(context.Background(), storetest.Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}},
}

func newHarness(t *testing.T, open func(t *testing.T, dir string) store.Store) *harness {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{DataDir: dir}
	cfg.Identity.Session = config.Session{MaxAge: config.Duration(12 * time.Hour), IdleTimeout: config.Duration(time.Hour)}
	cfg.Identity.Passwords.MinLength = 12
	cfg.Identity.AdminGroup = config.DefaultAdminGroup
	cfg.Identity.AdminReauth = config.Duration(15 * time.Minute)
	cfg.Routes = []*config.Route{
		{Host: "127.0.0.1", PathPrefix: "/app/", Backend: "b", Title: "Sales dashboard", Login: []string{"password"}, Allow: config.Members("group:staff")},
	}
	if open == nil {
		open = engines[0].open
	}
	st := open(t, dir)
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
	h := &harness{t: t, cfg: cfg, st: st, auth: svc, proc: proc}
	h.console, err = New(cfg, st, Options{CSRF: proc.CSRF, MFA: proc.MFA, Throttle: proc.Throttle, Limiter: proc.Limiter, TokenUser: proc.TokenUser,
		Logger: quiet, Ended: func(e directory.Ended) {
			h.mu.Lock()
			h.revoked = append(h.revoked, e.Users...)
			h.mu.Unlock()
			proc.Ended(e)
		}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/_moat/", svc.Identify(svc.Handler()))
	mux.Handle(Prefix, svc.Identify(h.console))
	h.srv = httptest.NewTLSServer(withInfo(mux))
	t.Cleanup(h.srv.Close)
	h.admin = h.addUser(adminEmail, adminPassword, []string{config.DefaultAdminGroup, "staff"})
	h.user = h.addUser(userEmail, userPassword, []string{"staff"})
	return h
}

func withInfo(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := &request.Info{ID: request.NewID(), Start: time.Now(), Scheme: "https"}
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			info.ClientIP, _ = netip.ParseAddr(host)
		}
		next.ServeHTTP(w, request.With(r, info))
	})
}

func (h *harness) addUser(email, pw string, groups []string) *store.User {
	h.t.Helper()
	hash, err := password.Hash(pw, password.DefaultParams)
	if err != nil {
		h.t.Fatal(err)
	}
	u := &store.User{Email: email, Name: strings.Split(email, "@")[0], Groups: groups, PasswordHash: hash}
	if err := h.st.CreateUser(context.Background(), u); err != nil {
		h.t.Fatal(err)
	}
	return u
}

// browser is a client with its own cookie jar that does not follow
// redirects.
func (h *harness) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Transport:     h.srv.Client().Transport,
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
}

// do sends a request; nav makes it a page navigation, else a script's
// call. hdr adds headers.
func (h *harness) do(c *http.Client, method, path string, body io.Reader, nav bool, hdr map[string]string) (*http.Response, string) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if nav {
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		req.Header.Set("Accept", "text/html")
	} else {
		req.Header.Set("Sec-Fetch-Mode", "cors")
		req.Header.Set("Accept", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(b)
}

func (h *harness) post(c *http.Client, path string, form url.Values) (*http.Response, string) {
	h.t.Helper()
	return h.do(c, "POST", path, strings.NewReader(form.Encode()), true, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
}

var csrfPattern = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (h *harness) csrf(c *http.Client, path string) string {
	h.t.Helper()
	resp, body := h.do(c, "GET", path, nil, true, nil)
	m := csrfPattern.FindStringSubmatch(body)
	if m == nil {
		h.t.Fatalf("GET %s (%d): no CSRF token in the page", path, resp.StatusCode)
	}
	return m[1]
}

// login signs a new browser in as email.
func (h *harness) login(email, pw string) *http.Client {
	h.t.Helper()
	c := h.browser()
	tok := h.csrf(c, "/_moat/login")
	resp, _ := h.post(c, "/_moat/login", url.Values{"csrf": {tok}, "email": {email}, "password": {pw}, "return_to": {"/_moat/admin/users"}})
	if resp.StatusCode != http.StatusSeeOther {
		h.t.Fatalf("sign in as %s: status %d", email, resp.StatusCode)
	}
	return c
}

// token creates a personal access token for u and returns it.
func (h *harness) token(u *store.User) string {
	h.t.Helper()
	tok, _ := pat.New()
	if err := h.st.CreateToken(context.Background(), &store.Token{Hash: pat.Hash(tok), UserID: u.ID, Name: "test"}); err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// api calls the JSON API with a bearer token and decodes the answer.
func (h *harness) api(tok, method, path string, in any, out any) int {
	h.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	resp, text := h.do(h.srv.Client(), method, APIPrefix+strings.TrimPrefix(path, "/"), body, false, map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
	if out != nil && resp.StatusCode < 300 && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal([]byte(text), out); err != nil {
			h.t.Fatalf("%s %s: %v in %s", method, path, err, text)
		}
	}
	return resp.StatusCode
}

func (h *harness) audited(action, actor, subject string) bool {
	h.t.Helper()
	evs, err := h.st.ListAudit(context.Background(), store.AuditFilter{Action: action, Subject: subject})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, e := range evs {
		if e.Actor == actor {
			return true
		}
	}
	return false
}

func (h *harness) sessionsOf(u *store.User) int {
	h.t.Helper()
	list, err := h.st.ListSessions(context.Background(), u.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	return len(list)
}

// every route of the console and the API, with {id} filled in.
func (h *harness) everyPath() [][2]string {
	tok := h.token(h.user)
	tk, err := h.st.GetTokenByHash(context.Background(), pat.Hash(tok))
	if err != nil {
		h.t.Fatal(err)
	}
	fill := strings.NewReplacer("{$}", "", "{id}", h.user.ID, "{token}", tk.ID)
	var out [][2]string
	for _, rt := range h.console.pageRoutes() {
		out = append(out, [2]string{rt.Method, strings.TrimSuffix(Prefix, "/") + fill.Replace(rt.Path)})
	}
	for _, rt := range (&api{c: h.console}).apiRoutes() {
		out = append(out, [2]string{rt.Method, strings.TrimSuffix(APIPrefix, "/") + fill.Replace(rt.Path)})
	}
	return out
}

// csrfFromJar computes the CSRF token for the cookie c holds.
func (h *harness) csrfFromJar(c *http.Client) string {
	h.t.Helper()
	u, _ := url.Parse(h.srv.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == csrf.CookieName {
			r := httptest.NewRequest("GET", "/", nil)
			r.AddCookie(ck)
			return h.console.csrf.Token(httptest.NewRecorder(), r)
		}
	}
	h.t.Fatal("no CSRF cookie in the jar")
	return ""
}
