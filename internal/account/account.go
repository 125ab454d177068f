// Package account is the self-service page at /_moat/account: a signed-in
// user sees and ends their own sessions, enrols or removes TOTP two-factor,
// regenerates recovery codes, and follows the link to change their
// password. It also serves the one-time set-password links admins hand out
// (/_moat/account/set-password/TOKEN), which need no session.
//
// Every page is server-rendered, works without JavaScript and carries the
// CSRF token of moat's sign-in pages on every POST.
package account

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/admin"
	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/auth/mfa"
	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/csrf"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// Prefix is where the account pages live.
const Prefix = "/_moat/account"

const maxFormBytes = 16 << 10

// Options are the optional parts of an Account.
type Options struct {
	// Key is the instance key; loaded with instancekey.ForConfig when
	// nil.
	Key *instancekey.Key
	// MFA enrols and checks second factors; built on the store when nil.
	MFA *mfa.Service
	// RevokeSession ends one session (by id hash) and closes its
	// WebSockets; store.RevokeSession when nil.
	RevokeSession func(ctx context.Context, idHash string) error
	// RevokeUser ends every session of a user and closes their
	// WebSockets; store.RevokeUserSessions when nil.
	RevokeUser func(ctx context.Context, userID string) error
	// SessionChanged tells the sign-in's session cache that a session's
	// record changed (its second factor passed), so it reads it again.
	SessionChanged func(idHash string)
	// Logger (slog.Default when nil).
	Logger *slog.Logger
}

// Account serves /_moat/account. Mount it behind the sign-in's Identify.
type Account struct {
	cfg  *config.Config
	st   store.Store
	o    Options
	log  *slog.Logger
	csrf *csrf.Guard
	mux  *http.ServeMux
}

// New builds the account pages for cfg on st.
func New(cfg *config.Config, st store.Store, o Options) (*Account, error) {
	if cfg == nil || st == nil {
		return nil, errors.New("account: config and store are required")
	}
	if o.Key == nil {
		k, err := instancekey.ForConfig(context.Background(), cfg, st)
		if err != nil {
			return nil, fmt.Errorf("account: %w", err)
		}
		o.Key = k
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MFA == nil {
		o.MFA = mfa.New(st, o.Key)
		o.MFA.Logger = o.Logger
	}
	a := &Account{cfg: cfg, st: st, o: o, log: o.Logger.With("component", "account"), csrf: csrf.New(o.Key.Derive("csrf"))}
	a.mux = http.NewServeMux()
	for _, rt := range a.routes() {
		a.mux.HandleFunc(rt.method+" "+Prefix+rt.path, rt.h)
	}
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { web.Error(w, r, http.StatusNotFound, "not_found") })
	return a, nil
}

type route struct {
	method, path string
	h            http.HandlerFunc
}

func (a *Account) routes() []route {
	return []route{
		{"GET", "", a.signedIn(a.pageOverview)},
		{"GET", "/{$}", a.signedIn(a.pageOverview)},
		{"POST", "/sessions/{id}/revoke", a.signedIn(a.postRevokeSession)},
		{"GET", "/mfa", a.signedIn(a.pageMFA)},
		{"POST", "/mfa", a.signedIn(a.postMFA)},
		{"POST", "/mfa/remove", a.signedIn(a.postRemoveMFA)},
		{"POST", "/recovery-codes", a.signedIn(a.postRecoveryCodes)},
		{"POST", "/tokens", a.signedIn(a.postCreateToken)},
		{"POST", "/tokens/{id}/revoke", a.signedIn(a.postRevokeToken)},
		{"GET", "/set-password/{token}", a.pageSetPassword},
		{"POST", "/set-password/{token}", a.postSetPassword},
	}
}

// ServeHTTP serves the account pages.
func (a *Account) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mux.ServeHTTP(w, r)
}

// who is the signed-in user and session of a request.
type who struct {
	user    *store.User
	session *store.Session
}

type whoKey struct{}

func whoOf(r *http.Request) *who { return r.Context().Value(whoKey{}).(*who) }

// signedIn lets only a request with a live session through.
func (a *Account) signedIn(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := request.From(r).User
		if u.SignedIn() && u.SessionID != "" {
			sess, err := a.st.GetSession(r.Context(), u.SessionID)
			if err == nil && sess.RevokedAt.IsZero() {
				su, err := a.st.GetUser(r.Context(), u.ID)
				if err == nil && !su.Disabled {
					next(w, r.WithContext(context.WithValue(r.Context(), whoKey{}, &who{user: su, session: sess})))
					return
				}
			}
		}
		if web.IsNavigation(r) {
			http.Redirect(w, r, "/_moat/login?return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		web.Error(w, r, http.StatusUnauthorized, "auth.unauthorized")
	}
}

// form parses a bounded POST and checks its origin and CSRF token; on
// failure it has answered.
func (a *Account) form(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		web.Error(w, r, http.StatusBadRequest, "bad_request")
		return false
	}
	if !a.csrf.Check(r, r.PostForm.Get(csrf.Field)) {
		a.log.Warn("refused a POST without a valid CSRF token or from another origin", "path", admin.LogPath(r.URL.Path), "client_ip", clientIP(r), "request_id", request.From(r).ID)
		web.Error(w, r, http.StatusForbidden, "auth.csrf")
		return false
	}
	return true
}

func clientIP(r *http.Request) string {
	if ip := request.From(r).ClientIP; ip.IsValid() {
		return ip.String()
	}
	return ""
}

// safeReturnTo accepts only a same-host relative path.
func safeReturnTo(v string) string {
	if v == "" || len(v) > 2048 || v[0] != '/' || strings.HasPrefix(v, "//") || strings.HasPrefix(v, "/\\") || strings.ContainsAny(v, "\\\r\n\t") {
		return "/"
	}
	if u, err := url.Parse(v); err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return v
}

func (a *Account) audit(ctx context.Context, r *http.Request, actor, action, subject, detail string) {
	a.log.Info("audit", "action", action, "user", subject, "client_ip", clientIP(r), "request_id", request.From(r).ID, "detail", detail)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := a.st.Audit(ctx, &store.AuditEvent{Time: time.Now(), Actor: actor, Action: action, Subject: subject, ClientIP: clientIP(r), Detail: detail}); err != nil {
		a.log.Error("write audit event", "action", action, "err", err)
	}
}

func (a *Account) fail(w http.ResponseWriter, r *http.Request, err error) {
	a.log.Error("account page", "path", admin.LogPath(r.URL.Path), "request_id", request.From(r).ID, "err", err)
	w.Header().Set("Retry-After", "5")
	web.Error(w, r, http.StatusServiceUnavailable, "unavailable")
}

// MFARequired reports whether cfg makes a second factor compulsory for
// password sign-ins on route (nil: for everyone): identity.passwords.mfa
// or the route's mfa.
func MFARequired(cfg *config.Config, route *config.Route) bool {
	return cfg.Identity.Passwords.MFA == "required" || route != nil && route.MFA == "required"
}

// page is what the account templates get as .Data.
type page struct {
	Email     string
	Name      string
	CSRF      string
	Done      string
	Error     string
	ReturnTo  string
	Provider  string
	Password  bool // a local password to change
	Enrolled  bool
	Verified  bool // this session passed the second factor
	Required  bool // a second factor is compulsory
	CodesLeft int
	Sessions  []sessionRow
	Tokens    []tokenRow
	Lifetimes []int
	// enrolment
	Secret string
	QR     template.URL
	// recovery codes shown once
	Codes []string
	// set-password link token, or a new access token shown once
	Token     string
	MinLength int
}

type sessionRow struct {
	ID, ClientIP, Device, Since, Seen, Provider string
	MFA, Current                                bool
}

func (a *Account) render(w http.ResponseWriter, r *http.Request, status int, name, titleKey string, p page) {
	p.CSRF = a.csrf.Token(w, r)
	if d := r.URL.Query().Get("done"); p.Done == "" && (d == "session_revoked" || d == "mfa_removed" || d == "mfa_verified" || d == "token_revoked") {
		p.Done = web.T(web.Lang(r), "account.done."+d)
	}
	web.Render(w, r, status, name, web.T(web.Lang(r), titleKey), p)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func (a *Account) base(r *http.Request) (page, error) {
	wo := whoOf(r)
	p := page{Email: wo.user.Email, Name: wo.user.Name, Lifetimes: tokenLifetimes, Provider: wo.session.Provider, Password: wo.user.PasswordHash != "" && wo.session.Provider == "password",
		Verified: wo.session.MFA, Required: MFARequired(a.cfg, request.From(r).Route), MinLength: a.cfg.Identity.Passwords.MinLength}
	var err error
	if p.Enrolled, err = a.o.MFA.Enrolled(r.Context(), wo.user.ID); err != nil {
		return p, err
	}
	if p.Enrolled {
		if p.CodesLeft, err = a.o.MFA.RecoveryCodesLeft(r.Context(), wo.user.ID); err != nil {
			return p, err
		}
	}
	return p, nil
}

func (a *Account) pageOverview(w http.ResponseWriter, r *http.Request) {
	p, err := a.base(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	wo := whoOf(r)
	list, err := a.st.ListSessions(r.Context(), wo.user.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	for _, s := range list {
		p.Sessions = append(p.Sessions, sessionRow{ID: s.IDHash, ClientIP: s.ClientIP, Device: admin.Platform(s.UserAgent), Since: fmtTime(s.CreatedAt),
			Seen: fmtTime(s.LastSeen), Provider: s.Provider, MFA: s.MFA, Current: s.IDHash == wo.session.IDHash})
	}
	if p.Tokens, err = a.tokens(r, wo.user.ID); err != nil {
		a.fail(w, r, err)
		return
	}
	a.render(w, r, http.StatusOK, "account-overview.html", "account.title", p)
}

func (a *Account) postRevokeSession(w http.ResponseWriter, r *http.Request) {
	if !a.form(w, r) {
		return
	}
	wo := whoOf(r)
	hash := r.PathValue("id")
	s, err := a.st.GetSession(r.Context(), hash)
	if err != nil || s.UserID != wo.user.ID {
		web.Error(w, r, http.StatusNotFound, "not_found") // not yours: as if it did not exist
		return
	}
	if a.o.RevokeSession != nil {
		err = a.o.RevokeSession(r.Context(), hash)
	} else {
		err = a.st.RevokeSession(r.Context(), hash, time.Now())
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.audit(r.Context(), r, wo.user.Email, "session.revoke", wo.user.Email, "by the user, from the account page")
	if hash == wo.session.IDHash {
		http.Redirect(w, r, "/_moat/login", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, Prefix+"?done=session_revoked", http.StatusSeeOther)
}

// pageMFA is the second-factor page: enrolment (QR code, key as text and a
// code to confirm) for a user without one, or a code to verify this
// session for a user who has one.
func (a *Account) pageMFA(w http.ResponseWriter, r *http.Request) {
	p, err := a.base(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p.ReturnTo = safeReturnTo(r.URL.Query().Get("return_to"))
	if r.URL.Query().Get("return_to") == "" {
		p.ReturnTo = Prefix
	}
	if !p.Enrolled && !a.recentSignIn(whoOf(r).session) {
		// Enrolling binds the account to a phone: a forgotten open
		// browser must not be enough.
		http.Redirect(w, r, "/_moat/login?reauth=1&return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	a.mfaPage(w, r, http.StatusOK, p)
}

func (a *Account) mfaPage(w http.ResponseWriter, r *http.Request, status int, p page) {
	wo := whoOf(r)
	if !p.Enrolled {
		e, err := a.o.MFA.Pending(r.Context(), wo.user.ID, wo.user.Email)
		if errors.Is(err, mfa.ErrNoPending) {
			e, err = a.o.MFA.Begin(r.Context(), wo.user.ID, wo.user.Email)
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		p.Secret = e.Secret
		p.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(e.QR))
	}
	a.render(w, r, status, "mfa-enrol.html", "mfa.title", p)
}

// codeError turns a failed check into the message shown.
func codeError(lang string, err error) string {
	var te *mfa.ThrottledError
	if errors.As(err, &te) {
		return web.T(lang, "mfa.throttled", int(te.Wait/time.Second)+1)
	}
	return web.T(lang, "mfa.invalid")
}

// codePassed finishes checking a second-factor code whose check returned
// err: a wrong or throttled code shows the page again with why, any other
// error fails; a good one marks the session. It reports whether the code
// passed; otherwise it has answered.
func (a *Account) codePassed(w http.ResponseWriter, r *http.Request, p page, s *store.Session, err error) bool {
	if err != nil {
		if !errors.Is(err, mfa.ErrInvalidCode) && !isThrottled(err) {
			a.fail(w, r, err)
			return false
		}
		p.Error = codeError(web.Lang(r), err)
		a.mfaPage(w, r, http.StatusBadRequest, p)
		return false
	}
	if err := a.markVerified(r.Context(), s); err != nil {
		a.fail(w, r, err)
		return false
	}
	return true
}

// postMFA confirms an enrolment (then shows the recovery codes once) or
// verifies a code for this session; either way the session is marked as
// having passed the second factor.
func (a *Account) postMFA(w http.ResponseWriter, r *http.Request) {
	if !a.form(w, r) {
		return
	}
	p, err := a.base(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	wo := whoOf(r)
	p.ReturnTo = safeReturnTo(r.PostForm.Get("return_to"))
	code := r.PostForm.Get("code")
	if p.Enrolled {
		err := a.o.MFA.Verify(r.Context(), wo.user.ID, wo.user.Email, code, clientIP(r))
		if a.codePassed(w, r, p, wo.session, err) {
			http.Redirect(w, r, p.ReturnTo, http.StatusSeeOther)
		}
		return
	}
	if !a.recentSignIn(wo.session) {
		http.Redirect(w, r, "/_moat/login?reauth=1&return_to="+url.QueryEscape(Prefix+"/mfa?return_to="+url.QueryEscape(p.ReturnTo)), http.StatusSeeOther)
		return
	}
	codes, err := a.o.MFA.Confirm(r.Context(), wo.user.ID, wo.user.Email, code, clientIP(r))
	if !a.codePassed(w, r, p, wo.session, err) {
		return
	}
	p.Codes, p.Enrolled, p.Verified = codes, true, true
	a.render(w, r, http.StatusOK, "account-codes.html", "mfa.codes.title", p)
}

func isThrottled(err error) bool {
	var te *mfa.ThrottledError
	return errors.As(err, &te)
}

// markVerified records that the session passed the second factor.
func (a *Account) markVerified(ctx context.Context, s *store.Session) error {
	if s.MFA {
		return nil
	}
	s.MFA = true
	if err := a.st.UpdateSession(ctx, s); err != nil {
		return err
	}
	if a.o.SessionChanged != nil {
		a.o.SessionChanged(s.IDHash)
	}
	return nil
}

// postRemoveMFA removes the second factor after a current code.
func (a *Account) postRemoveMFA(w http.ResponseWriter, r *http.Request) {
	if !a.form(w, r) {
		return
	}
	wo := whoOf(r)
	p, err := a.base(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !p.Enrolled {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	if err := a.o.MFA.Verify(r.Context(), wo.user.ID, wo.user.Email, r.PostForm.Get("code"), clientIP(r)); err != nil {
		if !errors.Is(err, mfa.ErrInvalidCode) && !isThrottled(err) {
			a.fail(w, r, err)
			return
		}
		p.Error = codeError(web.Lang(r), err)
		a.rerenderOverview(w, r, p)
		return
	}
	if err := a.o.MFA.Remove(r.Context(), wo.user.ID, wo.user.Email, wo.user.Email, clientIP(r)); err != nil {
		a.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Prefix+"?done=mfa_removed", http.StatusSeeOther)
}

func (a *Account) rerenderOverview(w http.ResponseWriter, r *http.Request, p page) {
	wo := whoOf(r)
	list, _ := a.st.ListSessions(r.Context(), wo.user.ID)
	for _, s := range list {
		p.Sessions = append(p.Sessions, sessionRow{ID: s.IDHash, ClientIP: s.ClientIP, Device: admin.Platform(s.UserAgent), Since: fmtTime(s.CreatedAt),
			Seen: fmtTime(s.LastSeen), Provider: s.Provider, MFA: s.MFA, Current: s.IDHash == wo.session.IDHash})
	}
	p.Tokens, _ = a.tokens(r, wo.user.ID)
	a.render(w, r, http.StatusBadRequest, "account-overview.html", "account.title", p)
}

// postRecoveryCodes replaces the recovery codes after a current code and
// shows the new ones once.
func (a *Account) postRecoveryCodes(w http.ResponseWriter, r *http.Request) {
	if !a.form(w, r) {
		return
	}
	wo := whoOf(r)
	p, err := a.base(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.o.MFA.Verify(r.Context(), wo.user.ID, wo.user.Email, r.PostForm.Get("code"), clientIP(r)); err != nil {
		if !errors.Is(err, mfa.ErrInvalidCode) && !isThrottled(err) && !errors.Is(err, mfa.ErrNotEnrolled) {
			a.fail(w, r, err)
			return
		}
		p.Error = codeError(web.Lang(r), err)
		a.rerenderOverview(w, r, p)
		return
	}
	codes, err := a.o.MFA.RegenerateRecoveryCodes(r.Context(), wo.user.ID, wo.user.Email, clientIP(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p.Codes = codes
	p.ReturnTo = Prefix
	a.render(w, r, http.StatusOK, "account-codes.html", "mfa.codes.title", p)
}

// linkUser returns the user a set-password link token opens, or nil.
func (a *Account) linkUser(ctx context.Context, token string) (*store.Token, *store.User) {
	if !strings.HasPrefix(token, "moat_setpw_") || len(token) > 128 {
		return nil, nil
	}
	t, err := a.st.GetTokenByHash(ctx, admin.SetPasswordTokenHash(token))
	if err != nil || t.Name != admin.SetPasswordTokenName || !t.RevokedAt.IsZero() || !t.ExpiresAt.IsZero() && !time.Now().Before(t.ExpiresAt) {
		return nil, nil
	}
	u, err := a.st.GetUser(ctx, t.UserID)
	if err != nil || u.Disabled {
		return nil, nil
	}
	return t, u
}

func (a *Account) pageSetPassword(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	_, u := a.linkUser(r.Context(), tok)
	if u == nil {
		web.Error(w, r, http.StatusNotFound, "account.link_invalid")
		return
	}
	a.render(w, r, http.StatusOK, "account-set-password.html", "account.set_password.title", page{Email: u.Email, Token: tok, MinLength: a.cfg.Identity.Passwords.MinLength})
}

// postSetPassword sets the password a link was issued for, once: the link
// is revoked, the user's sessions end, and they sign in with it.
func (a *Account) postSetPassword(w http.ResponseWriter, r *http.Request) {
	if !a.form(w, r) {
		return
	}
	ctx := r.Context()
	tok := r.PathValue("token")
	t, u := a.linkUser(ctx, tok)
	if u == nil {
		web.Error(w, r, http.StatusNotFound, "account.link_invalid")
		return
	}
	lang := web.Lang(r)
	p := page{Email: u.Email, Token: tok, MinLength: a.cfg.Identity.Passwords.MinLength}
	next, confirm := r.PostForm.Get("new"), r.PostForm.Get("confirm")
	if next != confirm {
		p.Error = web.T(lang, "auth.password.mismatch")
	} else if err := (password.Policy{MinLength: a.cfg.Identity.Passwords.MinLength}).Check(next, u.Email); err != nil {
		p.Error = web.T(lang, "auth.password.weak", err.Error())
	}
	if p.Error != "" {
		a.render(w, r, http.StatusBadRequest, "account-set-password.html", "account.set_password.title", p)
		return
	}
	hash, err := password.Hash(next, password.DefaultParams)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// Revoke the link first: of two racing submissions only one wins.
	if err := a.st.RevokeToken(ctx, t.ID, time.Now()); err != nil {
		a.fail(w, r, err)
		return
	}
	ok, err := a.st.SetPasswordHash(ctx, u.ID, u.PasswordHash, hash, false)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !ok {
		web.Error(w, r, http.StatusConflict, "account.link_invalid")
		return
	}
	if a.o.RevokeUser != nil {
		err = a.o.RevokeUser(ctx, u.ID)
	} else {
		_, err = a.st.RevokeUserSessions(ctx, u.ID, time.Now())
	}
	if err != nil {
		a.log.Error("set password: end sessions", "user", u.Email, "err", err)
	}
	a.audit(ctx, r, u.Email, "password.set_by_link", u.Email, "")
	http.Redirect(w, r, "/_moat/login?done=password_set", http.StatusSeeOther)
}
