package auth

import (
	"context"
	"errors"
	"fmt"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/auth/passkey"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// Bounds on what a sign-in form may carry.
const (
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
//	/_moat/passkey/  sign in with a passkey alone, or as the second step (JSON, passkeys.go)
//	/_moat/jwks.json the public keys that verify X-Moat-Assertion
//
// Every POST needs the CSRF token of its form and a same-origin browser.
// Mount it behind Identify, as every other page: the server identifies a
// request once.
func (s *Service) Handler() http.Handler {
	return web.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		switch r.URL.Path {
		case "/_moat/login":
			return s.serveLogin(w, r)
		case "/_moat/logout":
			return s.serveLogout(w, r)
		case "/_moat/password":
			return s.servePassword(w, r)
		case MFAPath:
			return s.serveSecondFactor(w, r)
		case "/_moat/jwks.json":
			return s.serveJWKS(w, r)
		}
		if r.URL.Path == CallbackPath || strings.HasPrefix(r.URL.Path, ssoStartPrefix) {
			return s.serveSSO(w, r)
		}
		if strings.HasPrefix(r.URL.Path, passkeyPrefix) {
			return s.servePasskey(w, r)
		}
		return web.NewProblem(http.StatusNotFound, "not_found")
	})
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
	// Passkey offers a sign-in with a passkey alone (with the password
	// form, on a host with a name); Host is where its passkeys work.
	Passkey bool
	Host    string
}

func (s *Service) serveLogin(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		returnTo := access.SafeReturnTo(r.URL.Query().Get("return_to"))
		// Signed in already: back to the page, unless that page asked for a
		// fresh sign-in (a route's max_age, the admin console's re-auth).
		if _, ss := signedIn(r); ss != nil && !ss.MustChangePassword && !r.URL.Query().Has("reauth") {
			http.Redirect(w, r, returnTo, http.StatusSeeOther)
			return nil
		}
		p := s.loginData(w, r, returnTo)
		if !p.Password && len(p.Providers) == 1 && r.URL.Query().Has("return_to") {
			// One way to sign in, and a page to get back to: go straight
			// to the provider. A bare /_moat/login (where sign-out lands)
			// shows the button instead, or the provider's own session
			// would sign the person straight back in.
			http.Redirect(w, r, ssoStartURL(p.Providers[0], returnTo), http.StatusSeeOther)
			return nil
		}
		s.renderLogin(w, r, http.StatusOK, p)
		return nil
	case http.MethodPost:
		return s.loginPost(w, r)
	}
	return web.NewProblem(http.StatusMethodNotAllowed, "bad_request").With("Allow", "GET, HEAD, POST")
}

func (s *Service) renderLogin(w http.ResponseWriter, r *http.Request, status int, p loginPage) {
	web.Render(w, r, status, "login.html", web.T(web.Lang(r), "auth.login.title"), p)
}

// loginData is the login page for r's host: its title and login methods
// come from the routes on that host.
func (s *Service) loginData(w http.ResponseWriter, r *http.Request, returnTo string) loginPage {
	host := hostOnly(r.Host)
	p := loginPage{Heading: host, ReturnTo: returnTo, CSRF: s.p.CSRF.Token(w, r)}
	routes := s.routesFor(r, host, returnTo)
	for _, rt := range routes {
		if rt.Title != "" && p.Heading == host {
			p.Heading = rt.Title
		}
		for _, m := range rt.Login {
			if m == "password" {
				p.Password = true
			} else if !slices.Contains(p.Providers, m) {
				p.Providers = append(p.Providers, m)
			}
		}
	}
	if _, err := passkey.RPOf(r.Host, ""); err == nil && p.Password {
		p.Passkey, p.Host = true, host
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

// readForm reads a POST form of the sign-in pages with the one form
// reader every page shares (csrf.Guard.ReadForm); on failure it has
// answered.
func (s *Service) readForm(w http.ResponseWriter, r *http.Request) bool {
	if err := s.p.CSRF.ReadForm(w, r); err != nil {
		web.Fail(w, r, err)
		return false
	}
	return true
}

func (s *Service) loginPost(w http.ResponseWriter, r *http.Request) error {
	if err := s.p.CSRF.ReadForm(w, r); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), loginWorkBudget)
	defer cancel()
	lang := web.Lang(r)
	returnTo := access.SafeReturnTo(r.PostForm.Get("return_to"))
	p := s.loginData(w, r, returnTo)
	if !p.Password {
		return web.NewProblem(http.StatusForbidden, "auth.no_password_login")
	}
	email := store.NormalizeEmail(r.PostForm.Get("email"))
	pw := r.PostForm.Get("password")
	if len(email) > maxEmailLen || len(pw) > maxPasswordLen || email == "" || pw == "" {
		p.Error = web.T(lang, "auth.login.failed")
		s.renderLogin(w, r, http.StatusUnauthorized, p)
		return nil
	}
	p.Email = email
	info := request.From(r)
	ip := clientIP(info)
	// The throttle decides before the password is checked (issue 12 #2):
	// a browser that signed in to this account before has a budget of
	// its own; other clients have theirs and share the account's.
	at := throttle.Attempt{Factor: throttle.Password, Account: email,
		Source: throttle.Source{Client: info.ClientIP, Device: s.p.Devices.ID(r, email)}}
	v, err := s.p.Throttle.Begin(ctx, at)
	if err != nil {
		s.logThrottleError(r, "sign-in throttle could not be read", err)
		return signInUnavailable(err)
	}
	if v.Refused() {
		s.throttled(w, r, v, "auth.login.wait", "auth.login.locked", func(msg string) {
			p.Error = msg
			s.renderLogin(w, r, http.StatusTooManyRequests, p)
		})
		return nil
	}
	u, err := s.authenticate(ctx, email, pw)
	if err != nil {
		s.p.logger.Error("sign-in could not be checked", "client_ip", ip, "request_id", info.ID, "err", err)
		return signInUnavailable(err)
	}
	if u == nil {
		s.p.audit(ctx, "login.failure", email, ip, "password")
		s.countFailure(ctx, r, at)
		p.Error = web.T(lang, "auth.login.failed")
		s.renderLogin(w, r, http.StatusUnauthorized, p)
		return nil
	}
	if err := s.p.Throttle.Passed(ctx, at); err != nil {
		s.p.logger.Warn("reset the sign-in throttle", "request_id", info.ID, "err", err)
	}
	if answered, err := s.beginSecondFactor(ctx, w, r, u, returnTo); answered || err != nil {
		return err
	}
	if _, err := s.startSession(ctx, w, r, u, "password"); err != nil {
		s.p.logger.Error("start session", "user", email, "request_id", info.ID, "err", err)
		return signInUnavailable(err)
	}
	s.p.Devices.Issue(w, r, u.Email)
	if err := s.p.store.RecordLogin(ctx, u.ID, time.Now()); err != nil {
		s.p.logger.Warn("record last login", "user", email, "err", err)
	}
	s.p.audit(ctx, "login.success", email, ip, "password")
	if u.MustChangePassword {
		http.Redirect(w, r, "/_moat/password?return_to="+url.QueryEscape(returnTo), http.StatusSeeOther)
		return nil
	}
	http.Redirect(w, r, returnTo, http.StatusSeeOther)
	return nil
}

// authenticate returns the user email and pw sign in as, or nil. Unknown
// users, users without a password, wrong passwords and disabled users all
// cost one password hash, so neither the answer nor its timing tells them
// apart. err is set only when the check itself failed.
func (s *Service) authenticate(ctx context.Context, email, pw string) (*store.User, error) {
	u, err := s.p.store.GetUserByEmail(ctx, email)
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
		if _, err := s.p.store.SetPasswordHash(ctx, u.ID, u.PasswordHash, rehash, u.MustChangePassword); err != nil {
			s.p.logger.Warn("rehash password", "user", u.Email, "err", err)
		}
	}
	return u, nil
}

// countFailure counts a wrong password of at, and records the audit event
// of a lock it caused.
func (s *Service) countFailure(ctx context.Context, r *http.Request, at throttle.Attempt) {
	locked, err := s.p.Throttle.Failed(ctx, at)
	if err != nil {
		s.logThrottleError(r, "count a failed sign-in", err)
		return
	}
	if locked {
		l := s.p.Throttle.Limits[throttle.Password].Lock
		s.p.audit(ctx, "login.locked", at.Account, clientIP(request.From(r)), fmt.Sprintf(
			"sign-in from unknown devices locked for %s after %d or more failures from %d or more clients; browsers signed in before still work; an administrator can unlock",
			l.For, l.Failures, l.Clients))
	}
}

// logoutPage fills auth-logout.html.
type logoutPage struct {
	Email string
	CSRF  string
}

func (s *Service) serveLogout(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		u, ss := signedIn(r)
		if ss == nil {
			http.Redirect(w, r, "/_moat/login", http.StatusSeeOther)
			return nil
		}
		web.Render(w, r, http.StatusOK, "auth-logout.html", web.T(web.Lang(r), "auth.logout.title"), logoutPage{Email: u.Email, CSRF: s.p.CSRF.Token(w, r)})
	case http.MethodPost:
		if err := s.p.CSRF.ReadForm(w, r); err != nil {
			return err
		}
		// A sign-out that cannot be stored says so and keeps the cookie,
		// so the person can try again: it never looks done while the
		// session goes on working.
		if u, ss := signedIn(r); ss != nil {
			if err := s.p.Sessions.Revoke(r.Context(), ss.IDHash); err != nil {
				return web.StoreDown("auth.logout_unavailable", err)
			}
			s.p.audit(r.Context(), "logout", u.Email, clientIP(request.From(r)), "")
		} else if id := session.CookieValue(r, session.Cookie); session.ValidID(id) {
			// Expired or idle: end it anyway.
			if err := s.p.Sessions.Revoke(r.Context(), session.HashID(id)); err != nil {
				return web.StoreDown("auth.logout_unavailable", err)
			}
		}
		session.ClearCookie(w)
		http.Redirect(w, r, "/_moat/login", http.StatusSeeOther)
	default:
		return web.NewProblem(http.StatusMethodNotAllowed, "bad_request").With("Allow", "GET, HEAD, POST")
	}
	return nil
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

func (s *Service) servePassword(w http.ResponseWriter, r *http.Request) error {
	user, ss := signedIn(r)
	if ss == nil {
		if !web.IsNavigation(r) {
			return web.NewProblem(http.StatusUnauthorized, "auth.unauthorized")
		}
		http.Redirect(w, r, "/_moat/login", http.StatusSeeOther)
		return nil
	}
	lang := web.Lang(r)
	if ss.Provider != "password" {
		return web.NewProblem(http.StatusBadRequest, "auth.password.not_local")
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		returnTo := access.SafeReturnTo(r.URL.Query().Get("return_to"))
		s.renderPassword(w, r, http.StatusOK, passwordPage{Email: user.Email, Forced: ss.MustChangePassword, CSRF: s.p.CSRF.Token(w, r), ReturnTo: returnTo, MinLength: s.cfg.Identity.Passwords.MinLength})
		return nil
	case http.MethodPost:
	default:
		return web.NewProblem(http.StatusMethodNotAllowed, "bad_request").With("Allow", "GET, HEAD, POST")
	}
	if err := s.p.CSRF.ReadForm(w, r); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), loginWorkBudget)
	defer cancel()
	info := request.From(r)
	p := passwordPage{Email: user.Email, Forced: ss.MustChangePassword, CSRF: s.p.CSRF.Token(w, r), ReturnTo: access.SafeReturnTo(r.PostForm.Get("return_to")), MinLength: s.cfg.Identity.Passwords.MinLength}
	current, next, confirm := r.PostForm.Get("current"), r.PostForm.Get("new"), r.PostForm.Get("confirm")
	// The current password is checked under the session's own budget.
	at := throttle.Attempt{Factor: throttle.Password, Account: user.Email,
		Source: throttle.Source{Client: info.ClientIP, Device: throttle.SessionDevice(ss.IDHash)}}
	v, err := s.p.Throttle.Begin(ctx, at)
	if err != nil {
		s.logThrottleError(r, "password change: read throttle", err)
		return web.Unavailable(nil)
	}
	if v.Refused() {
		s.throttled(w, r, v, "auth.login.wait", "auth.login.locked", func(msg string) {
			p.Error = msg
			s.renderPassword(w, r, http.StatusTooManyRequests, p)
		})
		return nil
	}
	u, err := s.p.store.GetUser(ctx, user.ID)
	if err != nil {
		s.p.logger.Error("password change: load user", "user", user.Email, "err", err)
		return web.Unavailable(nil)
	}
	if len(current) > maxPasswordLen || len(next) > maxPasswordLen {
		p.Error = web.T(lang, "auth.password.wrong_current")
		s.renderPassword(w, r, http.StatusBadRequest, p)
		return nil
	}
	ok, _, err := s.hasher.verify(ctx, u.PasswordHash, current)
	if err != nil {
		return web.Unavailable(nil)
	}
	if !ok {
		s.countFailure(ctx, r, at)
		p.Error = web.T(lang, "auth.password.wrong_current")
		s.renderPassword(w, r, http.StatusBadRequest, p)
		return nil
	}
	switch {
	case next != confirm:
		p.Error = web.T(lang, "auth.password.mismatch")
	case next == current:
		p.Error = web.T(lang, "auth.password.same")
	default:
		if err := s.hasher.check(next, u.Email); err != nil {
			p.Error = web.PasswordRefusal(lang, next, p.MinLength, err)
		}
	}
	if p.Error != "" {
		s.renderPassword(w, r, http.StatusBadRequest, p)
		return nil
	}
	hash, err := s.hasher.hash(ctx, next)
	if err != nil {
		return web.Unavailable(nil)
	}
	// Only if the password is still the one just checked: an admin's
	// reset in between wins.
	changed, err := s.p.store.SetPasswordHash(ctx, u.ID, u.PasswordHash, hash, false)
	if err != nil {
		s.p.logger.Error("password change: save", "user", u.Email, "err", err)
		return web.Unavailable(nil)
	}
	if !changed {
		p.Error = web.T(lang, "auth.password.wrong_current")
		s.renderPassword(w, r, http.StatusConflict, p)
		return nil
	}
	u.PasswordHash, u.MustChangePassword = hash, false
	// A new password ends every session of the user, this one included;
	// this browser gets a fresh one.
	hashes, err := s.p.store.RevokeUserSessions(ctx, u.ID, time.Now())
	if err != nil {
		s.p.logger.Error("password change: revoke sessions", "user", u.Email, "err", err)
	}
	for _, h := range hashes {
		s.p.end(ctx, Revoked{Session: h})
	}
	if err := s.p.Throttle.Passed(ctx, at); err != nil {
		s.p.logger.Warn("password change: reset throttle", "user", u.Email, "err", err)
	}
	s.p.audit(ctx, "password.change", u.Email, clientIP(info), fmt.Sprintf("%d session(s) ended", len(hashes)))
	if _, err := s.startSession(ctx, w, r, u, "password"); err != nil {
		s.p.logger.Error("password change: new session", "user", u.Email, "err", err)
		session.ClearCookie(w)
		http.Redirect(w, r, "/_moat/login", http.StatusSeeOther)
		return nil
	}
	http.Redirect(w, r, p.ReturnTo, http.StatusSeeOther)
	return nil
}

func (s *Service) renderPassword(w http.ResponseWriter, r *http.Request, status int, p passwordPage) {
	web.Render(w, r, status, "auth-password.html", web.T(web.Lang(r), "auth.password.title"), p)
}

func (s *Service) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return web.NewProblem(http.StatusMethodNotAllowed, "bad_request").With("Allow", "GET, HEAD")
	}
	body := s.p.Signer.JWKS()
	// The cache lifetime a rotation waits out twice before its key signs
	// (assertion.SwitchDelay).
	maxAge := s.cfg.Identity.JWKSMaxAge.D()
	if maxAge <= 0 {
		maxAge = config.DefaultJWKSMaxAge
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(maxAge/time.Second)))
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(body)
	return nil
}

// FlowPage reports whether path is a page of a sign-in on its way to a
// route (login, second step, password change, SSO start and callback,
// passkey sign-in and second step):
// such a page runs under the security policy of the route its return_to
// names (CallbackReturnTo for the callback), so a client a route's policy
// refuses cannot sign in through that route (issue 12 #1).
func FlowPage(path string) bool {
	switch path {
	case "/_moat/login", MFAPath, "/_moat/password", CallbackPath:
		return true
	}
	return strings.HasPrefix(path, ssoStartPrefix) || strings.HasPrefix(path, passkeyPrefix)
}
