package login

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

func (pg *Pages) loginPost(w http.ResponseWriter, r *http.Request) error {
	if err := pg.o.CSRF.ReadForm(w, r); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), loginWorkBudget)
	defer cancel()
	lang := web.Lang(r)
	returnTo := access.SafeReturnTo(r.PostForm.Get("return_to"))
	p := pg.loginData(w, r, returnTo)
	if !p.Password {
		return web.NewProblem(http.StatusForbidden, "auth.no_password_login")
	}
	email := store.NormalizeEmail(r.PostForm.Get("email"))
	pw := r.PostForm.Get("password")
	if len(email) > maxEmailLen || len(pw) > maxPasswordLen || email == "" || pw == "" {
		p.Error = web.T(lang, "auth.login.failed")
		renderLogin(w, r, http.StatusUnauthorized, p)
		return nil
	}
	p.Email = email
	info := request.From(r)
	// The throttle decides before the password is checked (issue 12 #2):
	// a browser that signed in to this account before has a budget of
	// its own; other clients have theirs and share the account's.
	at := throttle.Attempt{Factor: throttle.Password, Account: email,
		Source: throttle.Source{Client: info.ClientIP, Device: pg.o.Devices.ID(r, email)}}
	v, err := pg.o.Throttle.Begin(ctx, at)
	if err != nil {
		pg.logThrottleError(r, "sign-in throttle could not be read", err)
		return signInUnavailable(err)
	}
	if v.Refused() {
		pg.throttled(w, r, v, "auth.login.wait", "auth.login.locked", func(msg string) {
			p.Error = msg
			renderLogin(w, r, http.StatusTooManyRequests, p)
		})
		return nil
	}
	u, err := pg.authenticate(ctx, email, pw)
	if err != nil {
		pg.log.Error("sign-in could not be checked", "client_ip", clientIP(info), "request_id", info.ID, "err", err)
		return signInUnavailable(err)
	}
	if u == nil {
		pg.dir.Record(ctx, actor(r, email), "login.failure", email, "password")
		pg.countFailure(ctx, r, at)
		p.Error = web.T(lang, "auth.login.failed")
		renderLogin(w, r, http.StatusUnauthorized, p)
		return nil
	}
	if err := pg.o.Throttle.Passed(ctx, at); err != nil {
		pg.log.Warn("reset the sign-in throttle", "request_id", info.ID, "err", err)
	}
	if answered, err := pg.beginSecondFactor(ctx, w, r, u, returnTo); answered || err != nil {
		return err
	}
	if _, err := pg.startSession(ctx, w, r, u, "password"); err != nil {
		pg.log.Error("start session", "user", email, "request_id", info.ID, "err", err)
		return signInUnavailable(err)
	}
	pg.o.Devices.Issue(w, r, u.Email)
	if err := pg.st.RecordLogin(ctx, u.ID, time.Now()); err != nil {
		pg.log.Warn("record last login", "user", email, "err", err)
	}
	pg.dir.Record(ctx, actor(r, email), "login.success", email, "password")
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
func (pg *Pages) authenticate(ctx context.Context, email, pw string) (*store.User, error) {
	u, err := pg.st.GetUserByEmail(ctx, email)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("look up user: %w", err)
	}
	if u == nil || u.PasswordHash == "" {
		return nil, pg.hasher.verifyDummy(ctx, pw)
	}
	ok, rehash, err := pg.hasher.verify(ctx, u.PasswordHash, pw)
	if err != nil {
		return nil, err
	}
	if !ok || u.Disabled {
		return nil, nil
	}
	if rehash != "" {
		// Parameters changed since the hash was made: store today's, unless
		// an admin reset the password meanwhile.
		if _, err := pg.st.SetPasswordHash(ctx, u.ID, u.PasswordHash, rehash, u.MustChangePassword); err != nil {
			pg.log.Warn("rehash password", "user", u.Email, "err", err)
		}
	}
	return u, nil
}

// countFailure counts a wrong password of at, and records the audit event
// of a lock it caused.
func (pg *Pages) countFailure(ctx context.Context, r *http.Request, at throttle.Attempt) {
	locked, err := pg.o.Throttle.Failed(ctx, at)
	if err != nil {
		pg.logThrottleError(r, "count a failed sign-in", err)
		return
	}
	if locked {
		l := pg.o.Throttle.Limits[throttle.Password].Lock
		pg.dir.Record(ctx, actor(r, at.Account), "login.locked", at.Account, fmt.Sprintf(
			"sign-in from unknown devices locked for %s after %d or more failures from %d or more clients; browsers signed in before still work; an administrator can unlock",
			l.For, l.Failures, l.Clients))
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

// servePassword changes the password of a password user: the current one
// checked under the session's own budget, the new one by the policy, every
// session of the user ended (this browser gets a fresh one), through the
// directory like every other change to a user.
func (pg *Pages) servePassword(w http.ResponseWriter, r *http.Request) error {
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
	minLength := pg.cfg.Identity.Passwords.MinLength
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		returnTo := access.SafeReturnTo(r.URL.Query().Get("return_to"))
		renderPassword(w, r, http.StatusOK, passwordPage{Email: user.Email, Forced: ss.MustChangePassword, CSRF: pg.o.CSRF.Token(w, r), ReturnTo: returnTo, MinLength: minLength})
		return nil
	case http.MethodPost:
	default:
		return web.NewProblem(http.StatusMethodNotAllowed, "bad_request").With("Allow", "GET, HEAD, POST")
	}
	if err := pg.o.CSRF.ReadForm(w, r); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), loginWorkBudget)
	defer cancel()
	info := request.From(r)
	p := passwordPage{Email: user.Email, Forced: ss.MustChangePassword, CSRF: pg.o.CSRF.Token(w, r), ReturnTo: access.SafeReturnTo(r.PostForm.Get("return_to")), MinLength: minLength}
	current, next, confirm := r.PostForm.Get("current"), r.PostForm.Get("new"), r.PostForm.Get("confirm")
	// The current password is checked under the session's own budget.
	at := throttle.Attempt{Factor: throttle.Password, Account: user.Email,
		Source: throttle.Source{Client: info.ClientIP, Device: throttle.SessionDevice(ss.IDHash)}}
	v, err := pg.o.Throttle.Begin(ctx, at)
	if err != nil {
		pg.logThrottleError(r, "password change: read throttle", err)
		return web.Unavailable(nil)
	}
	if v.Refused() {
		pg.throttled(w, r, v, "auth.login.wait", "auth.login.locked", func(msg string) {
			p.Error = msg
			renderPassword(w, r, http.StatusTooManyRequests, p)
		})
		return nil
	}
	u, err := pg.st.GetUser(ctx, user.ID)
	if err != nil {
		pg.log.Error("password change: load user", "user", user.Email, "err", err)
		return web.Unavailable(nil)
	}
	if len(current) > maxPasswordLen || len(next) > maxPasswordLen {
		p.Error = web.T(lang, "auth.password.wrong_current")
		renderPassword(w, r, http.StatusBadRequest, p)
		return nil
	}
	ok, _, err := pg.hasher.verify(ctx, u.PasswordHash, current)
	if err != nil {
		return web.Unavailable(nil)
	}
	if !ok {
		pg.countFailure(ctx, r, at)
		p.Error = web.T(lang, "auth.password.wrong_current")
		renderPassword(w, r, http.StatusBadRequest, p)
		return nil
	}
	switch {
	case next != confirm:
		p.Error = web.T(lang, "auth.password.mismatch")
	case next == current:
		p.Error = web.T(lang, "auth.password.same")
	}
	if p.Error != "" {
		renderPassword(w, r, http.StatusBadRequest, p)
		return nil
	}
	a := actor(r, u.Email)
	a.UserID = u.ID
	u, n, err := pg.dir.ChangePassword(ctx, a, u, next)
	var policy *password.PolicyError
	switch {
	case errors.As(err, &policy):
		p.Error = web.PasswordRefusal(lang, next, p.MinLength, err)
		renderPassword(w, r, http.StatusBadRequest, p)
		return nil
	case errors.Is(err, directory.ErrStalePassword):
		// Only if the password is still the one just checked: an
		// admin's reset in between wins.
		p.Error = web.T(lang, "auth.password.wrong_current")
		renderPassword(w, r, http.StatusConflict, p)
		return nil
	case err != nil:
		pg.log.Error("password change: save", "user", user.Email, "request_id", info.ID, "err", err)
		return web.Unavailable(nil)
	}
	if err := pg.o.Throttle.Passed(ctx, at); err != nil {
		pg.log.Warn("password change: reset throttle", "user", u.Email, "err", err)
	}
	// Every session of the user ended, this one included; this browser
	// gets a fresh one.
	if _, err := pg.startSession(ctx, w, r, u, "password"); err != nil {
		pg.log.Error("password change: new session", "user", u.Email, "sessions_ended", n, "err", err)
		session.ClearCookie(w)
		http.Redirect(w, r, "/_moat/login", http.StatusSeeOther)
		return nil
	}
	http.Redirect(w, r, p.ReturnTo, http.StatusSeeOther)
	return nil
}

func renderPassword(w http.ResponseWriter, r *http.Request, status int, p passwordPage) {
	web.Render(w, r, status, "auth-password.html", web.T(web.Lang(r), "auth.password.title"), p)
}
