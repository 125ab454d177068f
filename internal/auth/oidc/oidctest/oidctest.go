// Package oidctest runs a real OpenID Provider for tests: zitadel's
// certified op package (discovery, authorization code flow with PKCE,
// refresh tokens, JWKS, userinfo) on 127.0.0.1, with an in-memory user
// directory, one confidential client and a plain login page that a test
// can drive over HTTP (Login) or with a real browser (the form has
// #email, #password and #sign-in).
package oidctest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"

	"github.com/moat-dev/moat/internal/config"
)

// GroupsClaim is the ID token claim that carries a user's groups.
const GroupsClaim = "groups"

// Client credentials of the provider's one registered client.
const (
	ClientID     = "moat-test"
	ClientSecret = "moat-test-secret"
)

// DefaultIDTokenLifetime is how long ID tokens last unless a test changes it.
const DefaultIDTokenLifetime = time.Hour

// User is an account at the provider.
type User struct {
	Subject       string // defaults to a value derived from Email
	Email         string
	Password      string
	Name          string
	Groups        []string
	EmailVerified bool
	// HostedDomain, when set, is sent as the hd claim (as Google does for
	// Workspace accounts).
	HostedDomain string

	disabled bool
}

// Users returns a directory in two domains with groups, for tests that do
// not need their own: alice@example.com (staff, admins), bob@example.com
// (staff), carol@partner.example (customer-a) with hd partner.example, and
// dave@example.com whose email is not verified. Every password is
// "correct horse battery".
func Users() []User {
	const pw = "correct horse battery"
	return []User{
		{Email: "alice@example.com", Password: pw, Name: "Alice", Groups: []string{"staff", "admins"}, EmailVerified: true},
		{Email: "bob@example.com", Password: pw, Name: "Bob", Groups: []string{"staff"}, EmailVerified: true},
		{Email: "carol@partner.example", Password: pw, Name: "Carol", Groups: []string{"customer-a"}, EmailVerified: true, HostedDomain: "partner.example"},
		{Email: "dave@example.com", Password: pw, Name: "Dave", EmailVerified: false},
	}
}

// Provider is a running OpenID Provider.
type Provider struct {
	// Issuer is the provider's URL, http://127.0.0.1:PORT.
	Issuer string

	store  *storage
	client *client
	srv    *http.Server
	down   atomic.Bool
}

// Start runs a provider with users (Users() when none are given) until the
// test ends. The client accepts any redirect URI on 127.0.0.1 or localhost
// and any https:// one until the test calls SetRedirectURIs.
func Start(t testing.TB, users ...User) *Provider {
	t.Helper()
	p, err := start(users)
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// New runs a provider outside a test (the benchmark harness signs
// oauth2-proxy in through it); the caller must Close it.
func New(users ...User) (*Provider, error) { return start(users) }

func start(users []User) (*Provider, error) {
	if len(users) == 0 {
		users = Users()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	issuer := "http://" + ln.Addr().String()
	c := &client{
		id:        ClientID,
		secret:    ClientSecret,
		loginURL:  func(id string) string { return "/login?authRequestID=" + url.QueryEscape(id) },
		redirects: []string{"http://127.0.0.1:*/**", "http://localhost:*/**", "https://**"},
	}
	c.idLifetime.Store(int64(DefaultIDTokenLifetime))
	st, err := newStorage(c)
	if err != nil {
		ln.Close()
		return nil, err
	}
	p := &Provider{Issuer: issuer, store: st, client: c}
	for _, u := range users {
		p.SetUser(u)
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		ln.Close()
		return nil, err
	}
	cfg := &op.Config{
		CryptoKey:             key,
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
		SupportedUILocales:    []language.Tag{language.English},
	}
	// zitadel logs refused requests through slog's default logger.
	provider, err := op.NewProvider(cfg, st, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("new provider: %w", err)
	}
	callback := op.AuthCallbackURL(provider)
	interceptor := op.NewIssuerInterceptor(provider.IssuerFromRequest)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", p.loginPage)
	mux.Handle("POST /login", interceptor.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.checkLogin(w, r, callback)
	}))
	mux.Handle("/", provider)
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p.down.Load() {
				http.Error(w, "provider is down (oidctest)", http.StatusServiceUnavailable)
				return
			}
			mux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go p.srv.Serve(ln)
	return p, nil
}

// Close stops the provider.
func (p *Provider) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
}

// Config is the moat configuration of this provider: groups_claim set,
// and refresh_interval set (so moat asks for offline_access and gets
// refresh tokens).
func (p *Provider) Config() *config.SSOProvider {
	return &config.SSOProvider{
		Issuer:          p.Issuer,
		ClientID:        ClientID,
		ClientSecret:    ClientSecret,
		GroupsClaim:     GroupsClaim,
		RefreshInterval: config.Duration(5 * time.Minute),
	}
}

// SetUser adds or replaces (by email) a user.
func (p *Provider) SetUser(u User) {
	if u.Subject == "" {
		u.Subject = "sub-" + strings.NewReplacer("@", "-at-", ".", "-").Replace(strings.ToLower(u.Email))
	}
	s := p.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.userByEmail(u.Email); old != nil {
		delete(s.users, old.Subject)
	}
	cp := u
	cp.Groups = append([]string(nil), u.Groups...)
	s.users[cp.Subject] = &cp
}

// User returns the user with email as the provider holds it.
func (p *Provider) User(email string) (User, bool) {
	s := p.store
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userByEmail(email)
	if u == nil {
		return User{}, false
	}
	return *u, true
}

// RevokeUser disables the user: sign-in is refused and every token the
// user holds stops working, so the next refresh fails.
func (p *Provider) RevokeUser(email string) {
	s := p.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.userByEmail(email); u != nil {
		u.disabled = true
		s.revokeSubjectLocked(u.Subject)
	}
}

// FailNextRefresh makes the next n refresh grants fail with invalid_grant.
func (p *Provider) FailNextRefresh(n int) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.failRefresh = n
}

// Refreshes counts the refresh grants the provider has honoured.
func (p *Provider) Refreshes() int {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	return p.store.refreshes
}

// SetIDTokenLifetime changes how long the ID tokens issued from now on last.
func (p *Provider) SetIDTokenLifetime(d time.Duration) { p.client.idLifetime.Store(int64(d)) }

// SetRedirectURIs replaces the redirect URIs the client may use; each is
// a doublestar glob, so an exact URI matches only itself.
func (p *Provider) SetRedirectURIs(globs ...string) {
	p.client.mu.Lock()
	defer p.client.mu.Unlock()
	p.client.redirects = append([]string(nil), globs...)
}

// SetDown makes every endpoint answer 503 (true) or serve again (false),
// for provider-down tests.
func (p *Provider) SetDown(down bool) { p.down.Store(down) }

var loginTemplate = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>oidctest sign-in</title></head>
<body><main>
<h1 id="provider-login">Sign in to the test provider</h1>
{{if .Error}}<p id="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="id" value="{{.ID}}">
<label>Email <input id="email" name="email" type="email" autocomplete="username"></label>
<label>Password <input id="password" name="password" type="password" autocomplete="current-password"></label>
<button id="sign-in" type="submit">Sign in</button>
</form></main></body></html>`))

func (p *Provider) loginPage(w http.ResponseWriter, r *http.Request) {
	renderLogin(w, http.StatusOK, r.URL.Query().Get("authRequestID"), "")
}

func renderLogin(w http.ResponseWriter, status int, id, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = loginTemplate.Execute(w, struct{ ID, Error string }{id, msg})
}

func (p *Provider) checkLogin(w http.ResponseWriter, r *http.Request, callback func(context.Context, string) string) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id := r.PostForm.Get("id")
	if err := p.store.checkLogin(id, r.PostForm.Get("email"), r.PostForm.Get("password")); err != nil {
		renderLogin(w, http.StatusUnauthorized, id, err.Error())
		return
	}
	http.Redirect(w, r, callback(r.Context(), id), http.StatusFound)
}

// Login signs in at the provider over HTTP, as a browser would: it follows
// authURL (moat's redirect to the provider) to the login page, posts the
// credentials and follows the provider's redirects until one leaves the
// provider, which it returns without following (normally moat's
// callback, with code and state). An error names what went wrong,
// including a refused sign-in.
func (p *Provider) Login(ctx context.Context, authURL, email, password string) (*url.URL, error) {
	jar, _ := cookiejar.New(nil)
	issuer, _ := url.Parse(p.Issuer)
	hc := &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host != issuer.Host {
				return http.ErrUseLastResponse
			}
			if len(via) > 10 {
				return errors.New("too many redirects")
			}
			return nil
		},
	}
	get := func(u string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		return hc.Do(req)
	}
	resp, err := get(authURL)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", authURL, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if loc := leaving(resp, issuer.Host); loc != nil {
		return loc, nil // the provider answered at once (an error redirect)
	}
	if resp.Request.URL.Path != "/login" {
		return nil, fmt.Errorf("expected the login page, got %s %s", resp.Status, resp.Request.URL)
	}
	id := resp.Request.URL.Query().Get("authRequestID")
	form := url.Values{"id": {id}, "email": {email}, "password": {password}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.Issuer+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("post login: %w", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if loc := leaving(resp, issuer.Host); loc != nil {
		return loc, nil
	}
	return nil, fmt.Errorf("sign-in at the provider failed: %s: %s", resp.Status, strings.TrimSpace(extractError(string(body))))
}

// leaving returns the redirect target of resp if it leaves the provider.
func leaving(resp *http.Response, host string) *url.URL {
	if resp.StatusCode < 300 || resp.StatusCode > 399 {
		return nil
	}
	loc, err := resp.Location()
	if err != nil || loc.Host == host {
		return nil
	}
	return loc
}

func extractError(body string) string {
	if i := strings.Index(body, `role="alert">`); i >= 0 {
		rest := body[i+len(`role="alert">`):]
		if j := strings.Index(rest, "<"); j >= 0 {
			return rest[:j]
		}
	}
	if len(body) > 200 {
		return body[:200]
	}
	return body
}
