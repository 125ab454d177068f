package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/csrf"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// Bounds on what a sign-in form may carry.
const (
	maxFormBytes    = 16 << 10
	maxEmailLen     = 254
	maxPasswordLen  = 1024
	loginWorkBudget = 30 * time.Second
)

// Handler serves moat's own sign-in paths on every routed host; the server
// mounts it at /_moat/:
//
//	/_moat/login     GET the form, POST email + password
//	/_moat/logout    GET a confirmation button, POST to sign out
//	/_moat/password  change the password (forced after a one-time password)
//	/_moat/jwks.json the public keys that verify X-Moat-Assertion
//
// Every POST needs the CSRF token of its form and a same-origin browser.
func (s *Service) Handler() http.Handler {
	return s.Identify(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_moat/login":
			s.serveLogin(w, r)
		case "/_moat/logout":
			s.serveLogout(w, r)
		case "/_moat/password":
			s.servePassword(w, r)
		case MFAPath:
			s.serveSecondFactor(w, r)
		case "/_moat/jwks.json":
			s.serveJWKS(w, r)
		case CallbackPath:
			s.serveSSO(w, r)
		default:
			if strings.HasPrefix(r.URL.Path, ssoStartPrefix) {
				s.serveSSO(w, r)
				return
			}
			web.Error(w, r, http.StatusNotFound, "not_found")
		}
	}))
}

// loginPage fills login.html.
type loginPage struct {
	Heading   string
	Email     string
	Error     string
	CSRF      string
	ReturnTo  string
	Password  bool     // the password form is offered
	Providers []string // SSO buttons (a later issue)
}

func (s *Service) serveLogin(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		returnTo := safeReturnTo(r.URL.Query().Get("return_to"))
		// Signed in already: back to the page, unless that page asked for a
		// fresh sign-in (a route's max_age, the admin console's re-auth).
		if e := s.sessionOf(r); e != nil && !e.mustChange && !r.URL.Query().Has("reauth") {
			http.Redirect(w, r, returnTo, http.StatusSeeOther)
			return
		}
		p := s.loginData(w, r, returnTo)
		if !p.Password && len(p.Providers) == 1 && r.URL.Query().Has("return_to") {
			// One way to sign in, and a page to get back to: go straight
			// to the provider. A bare /_moat/login (where sign-out lands)
			// shows the button instead, or the provider's own session
			// would sign the person straight back in.
			http.Redirect(w, r, ssoStartURL(p.Providers[0], returnTo), http.StatusSeeOther)
			return
		}
		s.renderLogin(w, r, http.StatusOK, p)
	case http.MethodPost:
		s.loginPost(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		web.Error(w, r, http.StatusMethodNotAllowed, "bad_request")
	}
}

func (s *Service) renderLogin(w http.ResponseWriter, r *http.Request, status int, p loginPage) {
	web.Render(w, r, status, "login.html", web.T(web.Lang(r), "auth.login.title"), p)
}

// loginData is the login page for r's host: its title and login methods
// come from the routes on that host.
func (s *Service) loginData(w http.ResponseWriter, r *http.Request, returnTo string) loginPage {
	host := hostOnly(r.Host)
	p := loginPage{Heading: host, ReturnTo: returnTo, CSRF: s.csrf.Token(w, r)}
	routes := s.routesFor(r, host, returnTo)
	for _, rt := range routes {
		if rt.Title != "" && p.Heading == host {
			p.Heading = rt.Title
		}
		for _, m := range rt.Login {
			if m == "password" {
				p.Password = true
			} else if !contains(p.Providers, m) {
				p.Providers = append(p.Providers, m)
			}
		}
	}
	return p
}

// routesFor lists the routes whose login methods a sign-in on host offers:
// the route return_to leads to (longest path prefix on the host), or else
// every signed-in route of the host.
func (s *Service) routesFor(r *http.Request, host, returnTo string) []*config.Route {
	path, _, _ := strings.Cut(returnTo, "?")
	var all []*config.Route
	var best *config.Route
	for _, rt := range s.cfg.Routes {
		if rt == nil || rt.Public || !strings.EqualFold(rt.Host, host) {
			continue
		}
		all = append(all, rt)
		if strings.HasPrefix(path, rt.PathPrefix) && (best == nil || len(rt.PathPrefix) > len(best.PathPrefix)) {
			best = rt
		}
	}
	if best != nil {
		return []*config.Route{best}
	}
	if rt := request.From(r).Route; rt != nil && !rt.Public && len(all) == 0 {
		return []*config.Route{rt}
	}
	return all
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return strings.ToLower(h)
	}
	return strings.ToLower(hostport)
}

// readForm parses a bounded POST form and checks CSRF; on failure it has
// answered.
func (s *Service) readForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		web.Error(w, r, http.StatusBadRequest, "bad_request")
		return false
	}
	if !s.csrf.Check(r, r.PostForm.Get(csrf.Field)) {
		info := request.From(r)
		s.logger.Warn("refused a POST without a valid CSRF token or from another origin", "path", r.URL.Path, "client_ip", clientIP(info), "request_id", info.ID)
		web.Error(w, r, http.StatusForbidden, "auth.csrf")
		return false
	}
	return true
}

func (s *Service) loginPost(w http.ResponseWriter, r *http.Request) {
	if !s.readForm(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), loginWorkBudget)
	defer cancel()
	lang := web.Lang(r)
	returnTo := safeReturnTo(r.PostForm.Get("return_to"))
	p := s.loginData(w, r, returnTo)
	if !p.Password {
		web.Error(w, r, http.StatusForbidden, "auth.no_password_login")
		return
	}
	email := store.NormalizeEmail(r.PostForm.Get("email"))
	pw := r.PostForm.Get("password")
	if len(email) > maxEmailLen || len(pw) > maxPasswordLen || email == "" || pw == "" {
		p.Error = web.T(lang, "auth.login.failed")
		s.renderLogin(w, r, http.StatusUnauthorized, p)
		return
	}
	p.Email = email
	info := request.From(r)
	ip := clientIP(info)
	ipKey, acctKey := clientKey(info.ClientIP), email
	now := s.throttleClock()
	if d, locked := s.clients.wait(ipKey, now); d > 0 {
		s.throttled(w, r, p, d, locked)
		return
	}
	if d, locked := s.accounts.wait(acctKey, now); d > 0 {
		s.throttled(w, r, p, d, locked)
		return
	}
	u, err := s.authenticate(ctx, email, pw)
	if err != nil {
		s.logger.Error("sign-in could not be checked", "client_ip", ip, "request_id", info.ID, "err", err)
		unavailable(w, r)
		return
	}
	if u == nil {
		s.audit(ctx, "login.failure", email, ip, "password")
		if s.accounts.fail(acctKey, now) {
			s.audit(ctx, "login.locked", email, ip, fmt.Sprintf("account locked for %s after repeated failures", accountLimits.LockFor))
		}
		if s.clients.fail(ipKey, now) {
			s.audit(ctx, "login.locked", "", ip, fmt.Sprintf("client address %s locked for %s after repeated failures", ipKey, clientLimits.LockFor))
		}
		p.Error = web.T(lang, "auth.login.failed")
		s.renderLogin(w, r, http.StatusUnauthorized, p)
		return
	}
	s.accounts.reset(acctKey)
	if s.beginSecondFactor(ctx, w, r, u, returnTo) {
		return
	}
	if _, err := s.startSession(ctx, w, r, u, "password"); err != nil {
		s.logger.Error("start session", "user", email, "request_id", info.ID, "err", err)
		unavailable(w, r)
		return
	}
	if err := s.store.RecordLogin(ctx, u.ID, time.Now()); err != nil {
		s.logger.Warn("record last login", "user", email, "err", err)
	}
	s.audit(ctx, "login.success", email, ip, "password")
	if u.MustChangePassword {
		http.Redirect(w, r, "/_moat/password?return_to="+url.QueryEscape(returnTo), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, returnTo, http.StatusSeeOther)
}

// authenticate returns the user email and pw sign in as, or nil. Unknown
// users, users without a password, wrong passwords and disabled users all
// cost one password hash, so neither the answer nor its timing tells them
// apart. err is set only when the check itself failed.
func (s *Service) authenticate(ctx context.Context, email, pw string) (*store.User, error) {
	u, err := s.store.GetUserByEmail(ctx, email)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("look up user: %w", err)
	}
	if u == nil || u.PasswordHash == "" {
		return nil, s.hasher.verifyDummy(ctx, pw)
	}
	ok, rehash, err := s.hasher.verify(ctx, u.PasswordHash, pw)
	if err != nil {
		return nil, err
	}
	if !ok || u.Disabled {
		return nil, nil
	}
	if rehash != "" {
		// Parameters changed since the hash was made: store today's, unless
		// an admin reset the password meanwhile.
		if _, err := s.store.SetPasswordHash(ctx, u.ID, u.PasswordHash, rehash, u.MustChangePassword); err != nil {
			s.logger.Warn("rehash password", "user", u.Email, "err", err)
		}
	}
	return u, nil
}

// throttled answers a login attempt refused by the brute-force limits.
func (s *Service) throttled(w http.ResponseWriter, r *http.Request, p loginPage, d time.Duration, locked bool) {
	lang := web.Lang(r)
	secs := int((d + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	if !web.WantsHTML(r) {
		// A script (a password-guessing tool among them) gets the short
		// answer; only a person's page navigation gets the login page
		// back. Rendering it was the largest cost of a login flood
		// (issue 13).
		web.Error(w, r, http.StatusTooManyRequests, "too_many_requests")
		return
	}
	if locked {
		p.Error = web.T(lang, "auth.login.locked", (secs+59)/60)
	} else {
		p.Error = web.T(lang, "auth.login.wait", secs)
	}
	s.renderLogin(w, r, http.StatusTooManyRequests, p)
}

// logoutPage fills auth-logout.html.
type logoutPage struct {
	Email string
	CSRF  string
}

func (s *Service) serveLogout(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		e := s.sessionOf(r)
		if e == nil {
			http.Redirect(w, r, "/_moat/login", http.StatusSeeOther)
			return
		}
		web.Render(w, r, http.StatusOK, "auth-logout.html", web.T(web.Lang(r), "auth.logout.title"), logoutPage{Email: e.user.Email, CSRF: s.csrf.Token(w, r)})
	case http.MethodPost:
		if !s.readForm(w, r) {
			return
		}
		if e := s.sessionOf(r); e != nil {
			s.revoke(r.Context(), e.hash)
			s.audit(r.Context(), "logout", e.user.Email, clientIP(request.From(r)), "")
		} else if id := cookieValue(r, SessionCookie); validID(id) {
			s.revoke(r.Context(), hashID(id)) // expired or idle: end it anyway
		}
		clearSessionCookie(w)
		http.Redirect(w, r, "/_moat/login", http.StatusSeeOther)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		web.Error(w, r, http.StatusMethodNotAllowed, "bad_request")
	}
}

// passwordPage fills auth-password.html.
type passwordPage struct {
	Email     string
	Forced    bool
	Error     string
	CSRF      string
	ReturnTo  string
	MinLength int
}

func (s *Service) servePassword(w http.ResponseWriter, r *http.Request) {
	e := s.sessionOf(r)
	if e == nil {
		if web.IsNavigation(r) {
			http.Redirect(w, r, "/_moat/login", http.StatusSeeOther)
		} else {
			web.Error(w, r, http.StatusUnauthorized, "auth.unauthorized")
		}
		return
	}
	lang := web.Lang(r)
	if e.user.Provider != "password" {
		web.Error(w, r, http.StatusBadRequest, "auth.password.not_local")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		returnTo := safeReturnTo(r.URL.Query().Get("return_to"))
		s.renderPassword(w, r, http.StatusOK, passwordPage{Email: e.user.Email, Forced: e.mustChange, CSRF: s.csrf.Token(w, r), ReturnTo: returnTo, MinLength: s.cfg.Identity.Passwords.MinLength})
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		web.Error(w, r, http.StatusMethodNotAllowed, "bad_request")
		return
	}
	if !s.readForm(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), loginWorkBudget)
	defer cancel()
	info := request.From(r)
	p := passwordPage{Email: e.user.Email, Forced: e.mustChange, CSRF: s.csrf.Token(w, r), ReturnTo: safeReturnTo(r.PostForm.Get("return_to")), MinLength: s.cfg.Identity.Passwords.MinLength}
	current, next, confirm := r.PostForm.Get("current"), r.PostForm.Get("new"), r.PostForm.Get("confirm")
	acctKey := e.user.Email
	if d, locked := s.accounts.wait(acctKey, s.throttleClock()); d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(d/time.Second)+1))
		if locked {
			p.Error = web.T(lang, "auth.login.locked", int(d/time.Minute)+1)
		} else {
			p.Error = web.T(lang, "auth.login.wait", int(d/time.Second)+1)
		}
		s.renderPassword(w, r, http.StatusTooManyRequests, p)
		return
	}
	u, err := s.store.GetUser(ctx, e.user.ID)
	if err != nil {
		s.logger.Error("password change: load user", "user", e.user.Email, "err", err)
		unavailable(w, r)
		return
	}
	if len(current) > maxPasswordLen || len(next) > maxPasswordLen {
		p.Error = web.T(lang, "auth.password.wrong_current")
		s.renderPassword(w, r, http.StatusBadRequest, p)
		return
	}
	ok, _, err := s.hasher.verify(ctx, u.PasswordHash, current)
	if err != nil {
		unavailable(w, r)
		return
	}
	if !ok {
		if s.accounts.fail(acctKey, s.throttleClock()) {
			s.audit(ctx, "login.locked", u.Email, clientIP(info), "account locked after wrong current passwords")
		}
		p.Error = web.T(lang, "auth.password.wrong_current")
		s.renderPassword(w, r, http.StatusBadRequest, p)
		return
	}
	switch {
	case next != confirm:
		p.Error = web.T(lang, "auth.password.mismatch")
	case next == current:
		p.Error = web.T(lang, "auth.password.same")
	default:
		if err := s.hasher.check(next, u.Email); err != nil {
			p.Error = policyMessage(lang, next, p.MinLength, err)
		}
	}
	if p.Error != "" {
		s.renderPassword(w, r, http.StatusBadRequest, p)
		return
	}
	hash, err := s.hasher.hash(ctx, next)
	if err != nil {
		unavailable(w, r)
		return
	}
	// Only if the password is still the one just checked: an admin's
	// reset in between wins.
	changed, err := s.store.SetPasswordHash(ctx, u.ID, u.PasswordHash, hash, false)
	if err != nil {
		s.logger.Error("password change: save", "user", u.Email, "err", err)
		unavailable(w, r)
		return
	}
	if !changed {
		p.Error = web.T(lang, "auth.password.wrong_current")
		s.renderPassword(w, r, http.StatusConflict, p)
		return
	}
	u.PasswordHash, u.MustChangePassword = hash, false
	// A new password ends every session of the user, this one included;
	// this browser gets a fresh one.
	hashes, err := s.store.RevokeUserSessions(ctx, u.ID, time.Now())
	if err != nil {
		s.logger.Error("password change: revoke sessions", "user", u.Email, "err", err)
	}
	for _, h := range hashes {
		s.dropSession(h)
	}
	s.accounts.reset(acctKey)
	s.audit(ctx, "password.change", u.Email, clientIP(info), fmt.Sprintf("%d session(s) ended", len(hashes)))
	if _, err := s.startSession(ctx, w, r, u, "password"); err != nil {
		s.logger.Error("password change: new session", "user", u.Email, "err", err)
		clearSessionCookie(w)
		http.Redirect(w, r, "/_moat/login", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, p.ReturnTo, http.StatusSeeOther)
}

func (s *Service) renderPassword(w http.ResponseWriter, r *http.Request, status int, p passwordPage) {
	web.Render(w, r, status, "auth-password.html", web.T(web.Lang(r), "auth.password.title"), p)
}

func (s *Service) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		web.Error(w, r, http.StatusMethodNotAllowed, "bad_request")
		return
	}
	s.keys.mu.RLock()
	body := s.keys.jwks
	s.keys.mu.RUnlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(body)
}

// unavailable answers when a sign-in cannot be checked now (store down,
// every hashing slot busy): try again in a few seconds.
func unavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "5")
	web.Error(w, r, http.StatusServiceUnavailable, "unavailable")
}

// policyMessage says in lang why the password policy refused pw; the
// common cases have their own translated message, the rest the policy's
// own (English) reason.
func policyMessage(lang, pw string, minLength int, err error) string {
	switch {
	case utf8.RuneCountInString(pw) < max(minLength, 8):
		return web.T(lang, "auth.password.too_short", max(minLength, 8))
	case password.IsCommon(pw):
		return web.T(lang, "auth.password.common")
	}
	return web.T(lang, "auth.password.weak", err.Error())
}
