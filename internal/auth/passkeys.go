package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/auth/mfa"
	"github.com/moat-dev/moat/internal/auth/passkey"
	"github.com/moat-dev/moat/internal/csrf"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// Passkey endpoints of the sign-in, called by the login page's and the
// second step's script (internal/web/static/passkey.js) with the CSRF
// token in X-CSRF-Token; each answers JSON. A POST to …/begin returns the
// options for navigator.credentials and a sealed state, a POST of the
// state and the credential to …/finish signs in and returns where to go.
const (
	passkeyPrefix = "/_moat/passkey/"
	// passkeySignIn is a sign-in with a passkey alone.
	passkeySignIn = passkeyPrefix + "sign-in/"
	// passkeySecondFactor is the second step of a password sign-in.
	passkeySecondFactor = passkeyPrefix + "second-factor/"
)

func (s *Service) servePasskey(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return web.NewProblem(http.StatusMethodNotAllowed, "bad_request").With("Allow", "POST")
	}
	if err := passkey.CheckToken(s.p.CSRF, r); err != nil {
		return err
	}
	in, err := passkey.ReadRequest(w, r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), loginWorkBudget)
	defer cancel()
	returnTo := access.SafeReturnTo(r.URL.Query().Get("return_to"))
	switch r.URL.Path {
	case passkeySignIn + "begin", passkeySignIn + "finish":
		return s.passkeySignIn(ctx, w, r, returnTo, in)
	case passkeySecondFactor + "begin", passkeySecondFactor + "finish":
		return s.passkeySecondStep(ctx, w, r, returnTo, in)
	}
	return web.NewProblem(http.StatusNotFound, "not_found")
}

// passkeySignIn begins or finishes a sign-in with a passkey alone: offered
// wherever the password form is (moat's own directory), bound to the
// browser's CSRF cookie, under the client address's sign-in throttle.
func (s *Service) passkeySignIn(ctx context.Context, w http.ResponseWriter, r *http.Request, returnTo string, in passkey.Request) error {
	p := s.loginData(w, r, returnTo)
	if !p.Password {
		return web.NewProblem(http.StatusForbidden, "auth.no_password_login")
	}
	rp, err := passkey.RPOf(r.Host, p.Heading)
	if err != nil {
		return passkey.Problem(err)
	}
	info := request.From(r)
	ip := clientIP(info)
	// No account is named before the passkey answers: the client's budget
	// across accounts applies, shared with passwords.
	at := throttle.Attempt{Factor: throttle.Password, Source: throttle.Source{Client: info.ClientIP}}
	if v, err := s.p.Throttle.Begin(ctx, at); err != nil {
		return signInUnavailable(fmt.Errorf("passkey sign-in: %w", err))
	} else if v.Refused() {
		s.p.held.wait(ctx, v.Wait)
		return passkey.Problem(&mfa.ThrottledError{Wait: v.Wait, Locked: v.Reason == throttle.ReasonLocked})
	}
	binding := passkey.Binding("browser", session.CookieValue(r, csrf.CookieName))
	if strings.HasSuffix(r.URL.Path, "/begin") {
		b, err := s.p.Passkeys.BeginSignIn(ctx, rp, binding)
		if err != nil {
			return passkey.Problem(err)
		}
		web.WriteJSON(w, http.StatusOK, b)
		return nil
	}
	u, _, err := s.p.Passkeys.FinishSignIn(ctx, rp, binding, in.State, in.Credential, at.Source)
	if err != nil {
		if errors.Is(err, passkey.ErrInvalid) || errors.Is(err, passkey.ErrExpired) || errors.Is(err, passkey.ErrCloned) {
			s.p.audit(ctx, "login.failure", "", ip, "passkey: "+err.Error())
			s.countFailure(ctx, r, at)
		}
		return passkey.Problem(err)
	}
	next, err := s.completeSignIn(ctx, w, r, u, returnTo, "passkey")
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, map[string]string{"redirect": next})
	return nil
}

// passkeySecondStep begins or finishes the second step of a password
// sign-in with a passkey, bound to the pending step's cookie.
func (s *Service) passkeySecondStep(ctx context.Context, w http.ResponseWriter, r *http.Request, returnTo string, in passkey.Request) error {
	u, err := s.pendingUser(ctx, r)
	if err != nil {
		return signInUnavailable(fmt.Errorf("second factor: load user: %w", err))
	}
	if u == nil {
		return web.NewProblem(http.StatusUnauthorized, "passkey.restart")
	}
	rp, err := passkey.RPOf(r.Host, s.loginData(w, r, returnTo).Heading)
	if err != nil {
		return passkey.Problem(err)
	}
	binding := passkey.Binding("pending", session.CookieValue(r, PendingCookie))
	// A browser that signed in to the account before has a budget of its
	// own, as for codes.
	from := throttle.Source{Client: request.From(r).ClientIP, Device: s.p.Devices.ID(r, u.Email)}
	if strings.HasSuffix(r.URL.Path, "/begin") {
		b, err := s.p.Passkeys.BeginAssertion(ctx, rp, u, binding, from)
		if err != nil {
			return passkey.Problem(err)
		}
		web.WriteJSON(w, http.StatusOK, b)
		return nil
	}
	if _, err := s.p.Passkeys.FinishAssertion(ctx, rp, u, binding, in.State, in.Credential, from); err != nil {
		return passkey.Problem(err)
	}
	next, err := s.completeSignIn(ctx, w, r, u, returnTo, "password+passkey")
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, map[string]string{"redirect": next})
	return nil
}

// completeSignIn starts the session of a sign-in that passed a second
// factor (or a passkey alone, which is two), records it and returns where
// the browser goes next: the password page first after a one-time
// password, else returnTo. how goes to the audit log.
func (s *Service) completeSignIn(ctx context.Context, w http.ResponseWriter, r *http.Request, u *store.User, returnTo, how string) (string, error) {
	clearPending(w)
	if _, err := s.startSession(ctx, w, r, u, "password", func(sess *store.Session) { sess.MFA = true }); err != nil {
		return "", signInUnavailable(fmt.Errorf("start session of %s: %w", u.Email, err))
	}
	if err := s.p.store.RecordLogin(ctx, u.ID, time.Now()); err != nil {
		s.p.logger.Warn("record last login", "user", u.Email, "err", err)
	}
	// This browser now has a budget of its own on the account.
	s.p.Devices.Issue(w, r, u.Email)
	s.p.audit(ctx, "login.success", u.Email, clientIP(request.From(r)), how)
	if u.MustChangePassword {
		return "/_moat/password?return_to=" + url.QueryEscape(returnTo), nil
	}
	return returnTo, nil
}

// hasSecondFactor reports whether a password sign-in of the user needs a
// second step: a TOTP, or a passkey for any host. A user whose passkeys
// are all for other hosts still gets the step (fail closed: a passkey
// protects the account, not one host), where the page says where they
// work.
func (s *Service) hasSecondFactor(ctx context.Context, userID string) (bool, error) {
	if on, err := s.p.MFA.Enrolled(ctx, userID); err != nil || on {
		return on, err
	}
	all, _, err := s.p.Passkeys.Count(ctx, userID, "")
	return all > 0, err
}

// offerSecondFactors fills in which second factors the step offers u on
// this host: a code (TOTP), a passkey made here, and where u's other
// passkeys work.
func (s *Service) offerSecondFactors(ctx context.Context, r *http.Request, u *store.User, p *mfaPage) error {
	on, err := s.p.MFA.Enrolled(ctx, u.ID)
	if err != nil {
		return err
	}
	p.TOTP = on
	list, err := s.p.store.ListPasskeys(ctx, u.ID)
	if err != nil {
		return err
	}
	rp, rpErr := passkey.RPOf(r.Host, "")
	var elsewhere []string
	for _, k := range list {
		if rpErr == nil && k.RPID == rp.ID {
			p.Passkey = true
		} else if !slices.Contains(elsewhere, k.RPID) {
			elsewhere = append(elsewhere, k.RPID)
		}
	}
	p.Elsewhere = strings.Join(elsewhere, ", ")
	return nil
}
