package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/moat-dev/moat/internal/identity/session"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/auth/mfa"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// PendingCookie carries a password sign-in that waits for its second
// factor: the user's id and an expiry, signed with a key derived from the
// instance key and bound to the user's password hash (a reset meanwhile
// voids it). It opens nothing but the code page at /_moat/mfa.
const PendingCookie = "__Host-moat-mfa"

// pendingTTL is how long the code page waits after the password.
const pendingTTL = 5 * time.Minute

// MFAPath is the login's second step (access.EnrolPath is where a user
// without a second factor is sent when a route requires one).
const MFAPath = "/_moat/mfa"

func (s *Service) pendingMAC(userID, exp, pwHash string) string {
	m := hmac.New(sha256.New, s.p.Key.Derive("mfa pending sign-in"))
	m.Write([]byte(userID + "|" + exp + "|" + pwHash))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// beginSecondFactor runs after a correct password: a user with a second
// factor gets the code page instead of a session. It reports whether it
// has answered the request (or failed: err).
func (s *Service) beginSecondFactor(ctx context.Context, w http.ResponseWriter, r *http.Request, u *store.User, returnTo string) (bool, error) {
	on, err := s.hasSecondFactor(ctx, u.ID)
	if err != nil {
		return true, signInUnavailable(fmt.Errorf("sign-in: read second factor: %w", err))
	}
	if !on {
		return false, nil
	}
	exp := strconv.FormatInt(time.Now().Add(pendingTTL).Unix(), 10)
	v := base64.RawURLEncoding.EncodeToString([]byte(u.ID)) + "." + exp + "." + s.pendingMAC(u.ID, exp, u.PasswordHash)
	http.SetCookie(w, &http.Cookie{Name: PendingCookie, Value: v, Path: "/", MaxAge: int(pendingTTL / time.Second), Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, MFAPath+"?return_to="+url.QueryEscape(returnTo), http.StatusSeeOther)
	return true, nil
}

// pendingUser returns the user whose password sign-in r's pending cookie
// carries, or nil when there is none, it expired, or it no longer fits the
// user (password changed, disabled, deleted).
func (s *Service) pendingUser(ctx context.Context, r *http.Request) (*store.User, error) {
	p, ok := parsePending(session.CookieValue(r, PendingCookie))
	if !ok || time.Now().Unix() > p.expires {
		return nil, nil
	}
	u, err := s.p.store.GetUser(ctx, p.userID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if u.Disabled || !hmac.Equal([]byte(p.mac), []byte(s.pendingMAC(u.ID, p.exp, u.PasswordHash))) {
		return nil, nil
	}
	return u, nil
}

// pending is PendingCookie's value, read but not yet checked.
type pending struct {
	userID, exp, mac string
	expires          int64
}

// parsePending reads "base64url(user id).expiry.mac", bounded.
func parsePending(v string) (pending, bool) {
	if v == "" || len(v) > 512 {
		return pending{}, false
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return pending{}, false
	}
	id, err := base64.RawURLEncoding.DecodeString(parts[0])
	exp, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || err2 != nil || len(id) == 0 {
		return pending{}, false
	}
	return pending{userID: string(id), exp: parts[1], mac: parts[2], expires: exp}, true
}

func clearPending(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: PendingCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// mfaPage fills mfa-login.html.
type mfaPage struct {
	Email    string
	CSRF     string
	ReturnTo string
	Error    string
	// TOTP offers the code form; Passkey a passkey made on this host;
	// Elsewhere names the hosts the user's other passkeys work on.
	TOTP      bool
	Passkey   bool
	Elsewhere string
}

// serveSecondFactor is the login's second step: a TOTP code or a recovery
// code after the password; then the session starts, marked as having
// passed the second factor.
func (s *Service) serveSecondFactor(w http.ResponseWriter, r *http.Request) error {
	lang := web.Lang(r)
	ctx, cancel := context.WithTimeout(r.Context(), loginWorkBudget)
	defer cancel()
	var returnTo string
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		returnTo = access.SafeReturnTo(r.URL.Query().Get("return_to"))
	case http.MethodPost:
		if err := s.p.CSRF.ReadForm(w, r); err != nil {
			return err
		}
		returnTo = access.SafeReturnTo(r.PostForm.Get("return_to"))
	default:
		return web.NewProblem(http.StatusMethodNotAllowed, "bad_request").With("Allow", "GET, HEAD, POST")
	}
	u, err := s.pendingUser(ctx, r)
	if err != nil {
		s.p.logger.Error("second factor: load user", "request_id", request.From(r).ID, "err", err)
		return signInUnavailable(err)
	}
	if u == nil {
		clearPending(w)
		http.Redirect(w, r, "/_moat/login?return_to="+url.QueryEscape(returnTo), http.StatusSeeOther)
		return nil
	}
	p := mfaPage{Email: u.Email, CSRF: s.p.CSRF.Token(w, r), ReturnTo: returnTo}
	if err := s.offerSecondFactors(ctx, r, u, &p); err != nil {
		return signInUnavailable(fmt.Errorf("second factor: %w", err))
	}
	if r.Method != http.MethodPost {
		web.Render(w, r, http.StatusOK, "mfa-login.html", web.T(lang, "mfa.login.title"), p)
		return nil
	}
	info := request.From(r)
	// A browser that signed in to the account before has a budget of its
	// own for codes too.
	from := throttle.Source{Client: info.ClientIP, Device: s.p.Devices.ID(r, u.Email)}
	err = s.p.MFA.Verify(ctx, u.ID, u.Email, r.PostForm.Get("code"), from)
	var te *mfa.ThrottledError
	switch {
	case err == nil:
	case errors.As(err, &te):
		v := throttle.Verdict{Wait: te.Wait, Reason: throttle.ReasonAccount}
		if te.Locked {
			v.Reason = throttle.ReasonLocked
		}
		s.throttled(w, r, v, "mfa.throttled", "mfa.locked", func(msg string) {
			p.Error = msg
			web.Render(w, r, http.StatusTooManyRequests, "mfa-login.html", web.T(lang, "mfa.login.title"), p)
		})
		return nil
	case errors.Is(err, mfa.ErrInvalidCode):
		p.Error = web.T(lang, "mfa.invalid")
		web.Render(w, r, http.StatusUnauthorized, "mfa-login.html", web.T(lang, "mfa.login.title"), p)
		return nil
	case errors.Is(err, mfa.ErrNotEnrolled):
		// Reset by an admin meanwhile: sign in again from the start.
		clearPending(w)
		http.Redirect(w, r, "/_moat/login?return_to="+url.QueryEscape(returnTo), http.StatusSeeOther)
		return nil
	default:
		s.p.logger.Error("second factor: verify", "user", u.Email, "err", err)
		return signInUnavailable(err)
	}
	// The session is born having passed the second factor.
	next, err := s.completeSignIn(ctx, w, r, u, returnTo, "password+totp")
	if err != nil {
		return err
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}
