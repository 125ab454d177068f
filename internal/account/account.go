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
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/moat-dev/moat/internal/auth/mfa"
	"github.com/moat-dev/moat/internal/auth/passkey"
	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/csrf"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/request"
	hostroute "github.com/moat-dev/moat/internal/route"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// Prefix is where the account pages live.
const Prefix = "/_moat/account"

// Options are the optional parts of an Account.
type Options struct {
	// CSRF guards the forms (the process's guard, shared by every page so
	// one token works on all of them); required.
	CSRF *csrf.Guard
	// MFA enrols and checks second factors (the process's, so wrong codes
	// count once wherever they are tried); required.
	MFA *mfa.Service
	// Passkeys runs the passkey ceremonies (the process's); required.
	Passkeys *passkey.Service
	// Ended stops at once on this instance what a committed change ended
	// (directory.Directory.Ended: the sign-in's caches and WebSockets);
	// when nil the change is in the store only, and each instance follows
	// within seconds when it polls.
	Ended func(directory.Ended)
	// Limiter bounds the password hashes running at once (the process's,
	// shared with the sign-in); required.
	Limiter *password.Limiter
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
	dir  *directory.Directory
}

// New builds the account pages for cfg on st.
func New(cfg *config.Config, st store.Store, o Options) (*Account, error) {
	if cfg == nil || st == nil {
		return nil, errors.New("account: config and store are required")
	}
	if o.CSRF == nil || o.MFA == nil || o.Passkeys == nil || o.Limiter == nil {
		return nil, errors.New("account: the CSRF guard, the second factors and the hashing limiter are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	a := &Account{cfg: cfg, st: st, o: o, log: o.Logger.With("component", "account"), csrf: o.CSRF}
	a.dir = &directory.Directory{Store: st, MFA: o.MFA, AdminGroup: cfg.Identity.AdminGroup, Logger: a.log,
		Passwords: directory.Passwords{Limiter: o.Limiter, Policy: password.Policy{MinLength: cfg.Identity.Passwords.MinLength}},
		Ended:     o.Ended}
	a.mux = http.NewServeMux()
	for _, rt := range a.routes() {
		a.mux.Handle(rt.method+" "+Prefix+rt.path, web.HandlerFunc(rt.h))
	}
	a.mux.Handle("/", web.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return web.NewProblem(http.StatusNotFound, "not_found")
	}))
	return a, nil
}

type route struct {
	method, path string
	h            func(http.ResponseWriter, *http.Request) error
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
		{"POST", "/passkeys/{purpose}/{step}", a.signedIn(a.passkeyCeremony)},
		{"POST", "/passkeys/{id}/remove", a.signedIn(a.postRemovePasskey)},
		{"GET", "/set-password/{token}", a.pageSetPassword},
		{"POST", "/set-password/{token}", a.postSetPassword},
	}
}

// ServeHTTP serves the account pages.
func (a *Account) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mux.ServeHTTP(w, r)
}

// who is the signed-in user and session of a request, as Identify found
// them (never fetched again).
type who struct {
	user    request.User
	session *request.Session
}

type whoKey struct{}

func whoOf(r *http.Request) *who { return r.Context().Value(whoKey{}).(*who) }

// signedIn lets through only a request with a live session, answering the
// others with the one access rule every page shares (access.Rule: signed
// in, and a one-time password already replaced).
func (a *Account) signedIn(next func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		info := request.From(r)
		var rule access.Rule
		if d := rule.Check(info.User, info.Session, time.Now()); d.Refusal != access.Pass || info.Session == nil {
			if d.Refusal == access.Pass {
				d.Refusal = access.SignIn // a bearer token opens no account page
			}
			access.Refuse(w, r, rule, d)
			return nil
		}
		return next(w, r.WithContext(context.WithValue(r.Context(), whoKey{}, &who{user: info.User, session: info.Session})))
	}
}

// actor is the signed-in user (or, on a set-password link, nobody yet)
// making a change, for the directory's audit log.
func (a *Account) actor(r *http.Request) directory.Actor {
	act := directory.Actor{ClientIP: clientIP(r), RequestID: request.From(r).ID}
	if wo, ok := r.Context().Value(whoKey{}).(*who); ok {
		act.UserID, act.Name = wo.user.ID, wo.user.Email
	}
	return act
}

// form reads a POST form of the account pages (csrf.Guard.ReadForm).
func (a *Account) form(w http.ResponseWriter, r *http.Request) error {
	return a.csrf.ReadForm(w, r)
}

func clientIP(r *http.Request) string {
	if ip := request.From(r).ClientIP; ip.IsValid() {
		return ip.String()
	}
	return ""
}

// codeSource is where a second factor given on the account page (a code or
// a passkey) comes from: the signed-in session counts as a known device
// with a budget of its own, so an attack on the account elsewhere does not
// stop its owner here.
func codeSource(r *http.Request) throttle.Source {
	info := request.From(r)
	return throttle.Source{Client: info.ClientIP, Device: throttle.SessionDevice(whoOf(r).session.IDHash)}
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
	// passkeys (passkeys.go)
	Passkeys      []passkeyRow
	PasskeysHere  int
	VerifyPasskey bool   // this session may prove its second factor with a passkey made here
	Host          string // this page's host, where passkeys added here work
	PasskeyName   string // the name a new passkey gets unless changed
	Recent        bool   // a sign-in recent enough to add a passkey
	CanAddPasskey bool
}

type sessionRow struct {
	ID, ClientIP, Device, Since, Seen, Provider string
	MFA, Current                                bool
}

func (a *Account) render(w http.ResponseWriter, r *http.Request, status int, name, titleKey string, p page) {
	p.CSRF = a.csrf.Token(w, r)
	if d := r.URL.Query().Get("done"); p.Done == "" && (d == "session_revoked" || d == "mfa_removed" || d == "mfa_verified" || d == "token_revoked" || d == "passkey_added" || d == "passkey_removed") {
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
	p := page{Email: wo.user.Email, Name: wo.user.Name, Lifetimes: tokenLifetimes, Provider: wo.session.Provider, Password: wo.session.Provider == "password",
		Verified: wo.session.MFA, Required: access.SecondFactorRequired(a.cfg, access.HostRoutes(a.cfg, hostroute.Host(r.Host))...), MinLength: a.cfg.Identity.Passwords.MinLength}
	var err error
	if p.Enrolled, err = a.o.MFA.Enrolled(r.Context(), wo.user.ID); err != nil {
		return p, err
	}
	if p.Enrolled {
		if p.CodesLeft, err = a.o.MFA.RecoveryCodesLeft(r.Context(), wo.user.ID); err != nil {
			return p, err
		}
	}
	return p, a.passkeyInfo(r.Context(), r, &p)
}

func (a *Account) pageOverview(w http.ResponseWriter, r *http.Request) error {
	p, err := a.base(r)
	if err != nil {
		return err
	}
	wo := whoOf(r)
	list, err := a.st.ListSessions(r.Context(), wo.user.ID)
	if err != nil {
		return err
	}
	for _, s := range list {
		p.Sessions = append(p.Sessions, sessionRow{ID: s.IDHash, ClientIP: s.ClientIP, Device: web.Platform(s.UserAgent), Since: fmtTime(s.CreatedAt),
			Seen: fmtTime(s.LastSeen), Provider: s.Provider, MFA: s.MFA, Current: s.IDHash == wo.session.IDHash})
	}
	if p.Tokens, err = a.tokens(r, wo.user.ID); err != nil {
		return err
	}
	a.render(w, r, http.StatusOK, "account-overview.html", "account.title", p)
	return nil
}

func (a *Account) postRevokeSession(w http.ResponseWriter, r *http.Request) error {
	if err := a.form(w, r); err != nil {
		return err
	}
	wo := whoOf(r)
	hash := r.PathValue("id")
	if _, err := a.dir.RevokeSession(r.Context(), a.actor(r), hash, wo.user.ID); err != nil {
		if errors.Is(err, directory.ErrNotFound) {
			return web.NewProblem(http.StatusNotFound, "not_found") // not yours: as if it did not exist
		}
		return err
	}
	if hash == wo.session.IDHash {
		http.Redirect(w, r, "/_moat/login", http.StatusSeeOther)
		return nil
	}
	http.Redirect(w, r, Prefix+"?done=session_revoked", http.StatusSeeOther)
	return nil
}

// pageMFA is the second-factor page: enrolment (QR code, key as text and a
// code to confirm, or a passkey) for a user without one, or a code or a
// passkey made for this host to verify this session for a user who has
// one.
func (a *Account) pageMFA(w http.ResponseWriter, r *http.Request) error {
	p, err := a.base(r)
	if err != nil {
		return err
	}
	p.ReturnTo = access.SafeReturnTo(r.URL.Query().Get("return_to"))
	if r.URL.Query().Get("return_to") == "" {
		p.ReturnTo = Prefix
	}
	if !p.Enrolled && !p.VerifyPasskey && !a.recentSignIn(whoOf(r).session) {
		// Enrolling binds the account to a phone: a forgotten open
		// browser must not be enough.
		http.Redirect(w, r, "/_moat/login?reauth=1&return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return nil
	}
	return a.mfaPage(w, r, http.StatusOK, p)
}

func (a *Account) mfaPage(w http.ResponseWriter, r *http.Request, status int, p page) error {
	wo := whoOf(r)
	if !p.Enrolled && !p.VerifyPasskey {
		e, err := a.o.MFA.Pending(r.Context(), wo.user.ID, wo.user.Email)
		if errors.Is(err, mfa.ErrNoPending) {
			e, err = a.o.MFA.Begin(r.Context(), wo.user.ID, wo.user.Email)
		}
		if err != nil {
			return err
		}
		p.Secret = e.Secret
		p.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(e.QR))
	}
	a.render(w, r, status, "mfa-enrol.html", "mfa.title", p)
	return nil
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
// err: a wrong or throttled code shows the page again with why (passed is
// false, and so is the error), any other error is returned; a good one
// marks the session.
func (a *Account) codePassed(w http.ResponseWriter, r *http.Request, p page, s *request.Session, err error) (passed bool, _ error) {
	if err != nil {
		if !errors.Is(err, mfa.ErrInvalidCode) && !isThrottled(err) {
			return false, err
		}
		p.Error = codeError(web.Lang(r), err)
		return false, a.mfaPage(w, r, http.StatusBadRequest, p)
	}
	return true, a.markVerified(r.Context(), s)
}

// postMFA confirms an enrolment (then shows the recovery codes once) or
// verifies a code for this session; either way the session is marked as
// having passed the second factor.
func (a *Account) postMFA(w http.ResponseWriter, r *http.Request) error {
	if err := a.form(w, r); err != nil {
		return err
	}
	p, err := a.base(r)
	if err != nil {
		return err
	}
	wo := whoOf(r)
	p.ReturnTo = access.SafeReturnTo(r.PostForm.Get("return_to"))
	code := r.PostForm.Get("code")
	if p.Enrolled {
		passed, err := a.codePassed(w, r, p, wo.session, a.o.MFA.Verify(r.Context(), wo.user.ID, wo.user.Email, code, codeSource(r)))
		if passed && err == nil {
			http.Redirect(w, r, p.ReturnTo, http.StatusSeeOther)
		}
		return err
	}
	if !a.recentSignIn(wo.session) {
		http.Redirect(w, r, "/_moat/login?reauth=1&return_to="+url.QueryEscape(Prefix+"/mfa?return_to="+url.QueryEscape(p.ReturnTo)), http.StatusSeeOther)
		return nil
	}
	codes, err := a.o.MFA.Confirm(r.Context(), wo.user.ID, wo.user.Email, code, codeSource(r))
	if passed, err := a.codePassed(w, r, p, wo.session, err); !passed || err != nil {
		return err
	}
	p.Codes, p.Enrolled, p.Verified = codes, true, true
	a.render(w, r, http.StatusOK, "account-codes.html", "mfa.codes.title", p)
	return nil
}

func isThrottled(err error) bool {
	var te *mfa.ThrottledError
	return errors.As(err, &te)
}

// markVerified records that the session passed the second factor.
func (a *Account) markVerified(ctx context.Context, s *request.Session) error {
	if s.MFA {
		return nil
	}
	sess, err := a.st.GetSession(ctx, s.IDHash)
	if err != nil {
		return err
	}
	sess.MFA = true
	if err := a.st.UpdateSession(ctx, sess); err != nil {
		return err
	}
	if a.o.SessionChanged != nil {
		a.o.SessionChanged(s.IDHash)
	}
	return nil
}

// postRemoveMFA removes the second factor after a current code.
func (a *Account) postRemoveMFA(w http.ResponseWriter, r *http.Request) error {
	if err := a.form(w, r); err != nil {
		return err
	}
	wo := whoOf(r)
	p, err := a.base(r)
	if err != nil {
		return err
	}
	if !p.Enrolled {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return nil
	}
	if err := a.o.MFA.Verify(r.Context(), wo.user.ID, wo.user.Email, r.PostForm.Get("code"), codeSource(r)); err != nil {
		if !errors.Is(err, mfa.ErrInvalidCode) && !isThrottled(err) {
			return err
		}
		p.Error = codeError(web.Lang(r), err)
		a.rerenderOverview(w, r, p)
		return nil
	}
	if err := a.o.MFA.Remove(r.Context(), wo.user.ID, wo.user.Email, wo.user.Email, clientIP(r)); err != nil {
		return err
	}
	http.Redirect(w, r, Prefix+"?done=mfa_removed", http.StatusSeeOther)
	return nil
}

func (a *Account) rerenderOverview(w http.ResponseWriter, r *http.Request, p page) {
	wo := whoOf(r)
	list, _ := a.st.ListSessions(r.Context(), wo.user.ID)
	for _, s := range list {
		p.Sessions = append(p.Sessions, sessionRow{ID: s.IDHash, ClientIP: s.ClientIP, Device: web.Platform(s.UserAgent), Since: fmtTime(s.CreatedAt),
			Seen: fmtTime(s.LastSeen), Provider: s.Provider, MFA: s.MFA, Current: s.IDHash == wo.session.IDHash})
	}
	p.Tokens, _ = a.tokens(r, wo.user.ID)
	a.render(w, r, http.StatusBadRequest, "account-overview.html", "account.title", p)
}

// postRecoveryCodes replaces the recovery codes after a current code and
// shows the new ones once.
func (a *Account) postRecoveryCodes(w http.ResponseWriter, r *http.Request) error {
	if err := a.form(w, r); err != nil {
		return err
	}
	wo := whoOf(r)
	p, err := a.base(r)
	if err != nil {
		return err
	}
	if err := a.o.MFA.Verify(r.Context(), wo.user.ID, wo.user.Email, r.PostForm.Get("code"), codeSource(r)); err != nil {
		if !errors.Is(err, mfa.ErrInvalidCode) && !isThrottled(err) && !errors.Is(err, mfa.ErrNotEnrolled) {
			return err
		}
		p.Error = codeError(web.Lang(r), err)
		a.rerenderOverview(w, r, p)
		return nil
	}
	codes, err := a.o.MFA.RegenerateRecoveryCodes(r.Context(), wo.user.ID, wo.user.Email, clientIP(r))
	if err != nil {
		return err
	}
	p.Codes = codes
	p.ReturnTo = Prefix
	a.render(w, r, http.StatusOK, "account-codes.html", "mfa.codes.title", p)
	return nil
}

func (a *Account) pageSetPassword(w http.ResponseWriter, r *http.Request) error {
	tok := r.PathValue("token")
	_, u := a.dir.LinkUser(r.Context(), tok)
	if u == nil {
		return web.NewProblem(http.StatusNotFound, "account.link_invalid")
	}
	a.render(w, r, http.StatusOK, "account-set-password.html", "account.set_password.title", page{Email: u.Email, Token: tok, MinLength: a.cfg.Identity.Passwords.MinLength})
	return nil
}

// postSetPassword sets the password a link was issued for, once: the link
// is revoked, the user's sessions end, and they sign in with it.
func (a *Account) postSetPassword(w http.ResponseWriter, r *http.Request) error {
	if err := a.form(w, r); err != nil {
		return err
	}
	ctx := r.Context()
	tok := r.PathValue("token")
	_, u := a.dir.LinkUser(ctx, tok)
	if u == nil {
		return web.NewProblem(http.StatusNotFound, "account.link_invalid")
	}
	lang := web.Lang(r)
	p := page{Email: u.Email, Token: tok, MinLength: a.cfg.Identity.Passwords.MinLength}
	next, confirm := r.PostForm.Get("new"), r.PostForm.Get("confirm")
	if next != confirm {
		p.Error = web.T(lang, "auth.password.mismatch")
		a.render(w, r, http.StatusBadRequest, "account-set-password.html", "account.set_password.title", p)
		return nil
	}
	// The same policy, message and hashing limiter as the password page
	// (issue 11: this page had its own, untranslated and unbounded).
	ok, err := a.dir.SetPasswordByLink(ctx, a.actor(r), tok, next)
	var pe *password.PolicyError
	switch {
	case errors.As(err, &pe):
		p.Error = web.PasswordRefusal(lang, next, p.MinLength, err)
		a.render(w, r, http.StatusBadRequest, "account-set-password.html", "account.set_password.title", p)
		return nil
	case err != nil:
		return web.Unavailable(err)
	case !ok:
		return web.NewProblem(http.StatusConflict, "account.link_invalid")
	}
	http.Redirect(w, r, "/_moat/login?done=password_set", http.StatusSeeOther)
	return nil
}
